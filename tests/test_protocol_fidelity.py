"""Classic-dialect answers checked against what SMS-Activate clients expect (docs/api.md: "Where
we differ from SMS-Activate" lists what is left and why)."""

from __future__ import annotations


def _rows(api) -> dict[str, dict]:
    data = api("getActiveActivations").get_json()
    assert data["status"] == "success", data
    return {row["activationId"]: row for row in data["activeActivations"]}


def test_classic_active_activations_send_the_list_of_codes(api, clock):
    waiting = api.text("getNumber", service="ot", country="12").split(":")[1]
    coded = api.text("getNumber", service="tg", country="12").split(":")[1]
    assert _rows(api)[coded]["smsCode"] is None  # before any code: null, not []
    clock.travel(6)
    first = api.text("getStatus", id=coded).split(":", 1)[1]
    rows = _rows(api)
    assert rows[coded]["smsCode"] == [first]
    assert rows[coded]["smsCode"][0] == first  # what clients do with it
    assert rows[waiting]["smsCode"] is None

    assert api.text("setStatus", id=coded, status="3") == "ACCESS_RETRY_GET"
    assert _rows(api)[coded]["smsCode"] == [first]  # waiting for the next: the codes so far
    clock.travel(6)
    second = api.text("getStatus", id=coded).split(":", 1)[1]
    assert second != first
    assert _rows(api)[coded]["smsCode"] == [first, second]


def test_json_active_activations_keep_the_documented_code_string(api, clock):
    coded = api.json("getNumber", service="tg", country="12")["activationId"]
    clock.travel(6)
    code = api.json("getStatus", id=coded)["code"]
    (row,) = api.json("getActiveActivations")["activations"]
    assert row["code"] == code and isinstance(row["code"], str)


def _hero_rows(api, **paging) -> list[dict]:
    data = api("getActiveActivations", start="0", limit="100", **paging).get_json()
    assert data["status"] == "success", data
    return data["data"]


def test_herosms_paging_form_sends_the_latest_code_as_a_string(api, clock):
    """HeroSMS's client pages getActiveActivations with `start` and `limit` and validates
    `smsCode` as a string (or null): that form gets HeroSMS's shape, the rest the list."""
    waiting = api.text("getNumber", service="ot", country="12").split(":")[1]
    coded = api.text("getNumber", service="tg", country="12").split(":")[1]
    rows = {row["activationId"]: row for row in _hero_rows(api)}
    assert rows[coded]["smsCode"] is None and rows[waiting]["smsCode"] is None
    clock.travel(6)
    first = api.text("getStatus", id=coded).split(":", 1)[1]
    assert api.text("setStatus", id=coded, status="3") == "ACCESS_RETRY_GET"
    clock.travel(6)
    second = api.text("getStatus", id=coded).split(":", 1)[1]
    rows = {row["activationId"]: row for row in _hero_rows(api)}
    assert rows[coded]["smsCode"] == second and isinstance(second, str)
    assert rows[waiting]["smsCode"] is None
    assert set(rows[coded]) >= {"activationId", "serviceCode", "phoneNumber", "activationCost"}
    assert _rows(api)[coded]["smsCode"] == [first, second]  # SMS-Activate's form: the list


def test_herosms_paging_form_pages(api):
    ids = [api.text("getNumber", service="ot", country="12").split(":")[1] for _ in range(3)]
    everything = [row["activationId"] for row in _hero_rows(api)]
    assert sorted(everything) == sorted(ids)
    page = api("getActiveActivations", start="1", limit="1").get_json()["data"]
    assert [row["activationId"] for row in page] == everything[1:2]
    only_limit = api("getActiveActivations", limit="2").get_json()["data"]
    assert [row["activationId"] for row in only_limit] == everything[:2]
    past_the_end = api("getActiveActivations", start="3", limit="10").get_json()
    assert past_the_end == {"status": "error", "error": "NO_ACTIVATIONS"}


def test_herosms_paging_form_without_activations(api):
    answer = api("getActiveActivations", start="0", limit="100")
    assert answer.mimetype == "application/json"
    assert answer.get_json() == {"status": "error", "error": "NO_ACTIVATIONS"}


def test_malformed_paging_is_a_protocol_error(api):
    api.text("getNumber", service="ot", country="12")
    for start, limit in (("-1", "10"), ("0", "0"), ("x", "10"), ("0", "²"), ("0", "1" * 12)):
        assert api.text("getActiveActivations", start=start, limit=limit) == "BAD_PARAMETER"


def test_paging_parameters_change_no_other_answer(api, clock):
    """Only getActiveActivations has a HeroSMS shape; other actions answer the same."""
    paging = {"start": "0", "limit": "100"}
    assert api.text("getBalance", **paging) == api.text("getBalance")
    number = api.text("getNumber", service="tg", country="12", **paging)
    assert number.startswith("ACCESS_NUMBER:")
    clock.travel(6)
    activation_id = number.split(":")[1]
    assert api.text("getStatus", id=activation_id, **paging).startswith("STATUS_OK:")
