"""Classic-dialect answers checked against what SMS-Activate clients expect (README: "Where
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
