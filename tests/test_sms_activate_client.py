"""GrizzlyClient against the fake GrizzlySMS over real HTTP."""

from __future__ import annotations

import datetime as dt
import json
import logging
import socket
import traceback
from decimal import Decimal

import pytest
import requests

from reseller.upstream import errors
from reseller.upstream.base import (
    ActiveActivation,
    CountryInfo,
    PriceEntry,
    ServiceInfo,
    SetStatusAnswer,
    StatusAnswer,
    UpstreamState,
)
from reseller.upstream.sms_activate import SmsActivateClient as GrizzlyClient
from tests.fake_grizzly import PROHIBITED_TEXT, FakeGrizzly, Fault, Reply

KEY = "sk-live-7f3a9c1e5b2d"  # distinctive, so any leak is easy to spot


@pytest.fixture
def grizzly():
    with FakeGrizzly(api_key=KEY, slow_seconds=2.0) as server:
        yield server
    assert not server.errors


@pytest.fixture
def sleeps() -> list[float]:
    return []


def make_client(url: str, sleeps: list[float], **kwargs) -> GrizzlyClient:
    # Generous enough for a loaded CI machine, well under the fake's 2 s "slow" answers.
    options = {"connect_timeout": 1.0, "read_timeout": 1.0, "retries": 2, "backoff": 0.01}
    client = GrizzlyClient(KEY, url=url, **(options | kwargs))
    client._sleep = sleeps.append
    return client


@pytest.fixture
def client(grizzly, sleeps) -> GrizzlyClient:
    return make_client(grizzly.url, sleeps)


@pytest.fixture
def closed_url() -> str:
    """A URL on a local port that nobody listens on: connection refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/stubs/handler_api.php"


def raw_json(data) -> Reply:
    return Reply(json.dumps(data))


# -- happy paths ---------------------------------------------------------------------------


def test_get_balance(client, grizzly):
    assert client.get_balance() == Decimal("100.00")
    assert grizzly.calls[0].action == "getBalance"
    assert "api_key" not in grizzly.calls[0].params


def test_get_prices(client):
    prices = client.get_prices()
    assert PriceEntry(country_id=12, service="tg", cost=Decimal("0.3"), count=606) in prices
    assert PriceEntry(country_id=0, service="ds", cost=Decimal("0.1"), count=0) in prices
    assert len(prices) == 16


def test_get_prices_sends_filters(client, grizzly):
    prices = client.get_prices(service="wa", country_id=16)
    assert prices == [PriceEntry(country_id=16, service="wa", cost=Decimal("1.1"), count=30)]
    assert grizzly.calls[0].params == {"action": "getPrices", "service": "wa", "country": "16"}


def test_get_prices_accepts_strings_service_first_nesting_and_skips_junk(client, grizzly):
    grizzly.script(
        "getPrices",
        raw_json(
            {
                "tg": {"12": {"cost": "0.35", "count": "7"}, "16": {"cost": "oops", "count": 1}},
                "wa": {"0": {"count": 3}, "187": "n/a"},
            }
        ),
        raw_json({"12": {"tg": {"cost": 1, "count": 2}, "go": None}, "x": [1]}),
    )
    assert client.get_prices() == [
        PriceEntry(country_id=12, service="tg", cost=Decimal("0.35"), count=7)
    ]
    assert client.get_prices() == [
        PriceEntry(country_id=12, service="tg", cost=Decimal("1"), count=2)
    ]


def test_get_countries_map_keyed_by_id(client):
    countries = client.get_countries()
    assert CountryInfo(id=12, name="USA (virtual)") in countries
    assert {c.id for c in countries} == {0, 12, 16, 187}


def test_get_countries_list_of_objects(client, grizzly):
    grizzly.script(
        "getCountries",
        raw_json(
            [
                {"id": 0, "rus": "Россия", "eng": " Russia ", "chn": "俄罗斯"},
                {"id": "16", "rus": "Англия", "eng": ""},
                {"eng": "no id"},
            ]
        ),
    )
    assert client.get_countries() == [
        CountryInfo(id=0, name="Russia"),
        CountryInfo(id=16, name="Англия"),
    ]


def test_get_countries_single_object(client, grizzly):
    grizzly.script("getCountries", raw_json({"id": 187, "eng": "USA\n", "rus": "США"}))
    assert client.get_countries() == [CountryInfo(id=187, name="USA")]


def test_get_services(client):
    services = client.get_services()
    assert ServiceInfo(code="tg", name="Telegram") in services
    assert len(services) == 4


@pytest.mark.parametrize(
    "body",
    [
        {"status": "success", "services": [{"code": " tg", "name": " Telegram \t"}, {"x": 1}]},
        [{"code": "tg", "name": "Telegram  "}, "junk"],
    ],
)
def test_get_services_both_shapes_strip_whitespace(client, grizzly, body):
    grizzly.script("getServicesList", raw_json(body))
    assert client.get_services() == [ServiceInfo(code="tg", name="Telegram")]


def test_get_number(client, grizzly):
    number = client.get_number("tg", 12)
    assert number.upstream_id.isdigit() and number.phone.isdigit()
    assert number.cost == Decimal("0.3")
    assert number.country_id == 12
    assert isinstance(number.activation_time, dt.datetime)
    assert number.activation_end - number.activation_time == dt.timedelta(minutes=20)
    assert int(number.upstream_id) in grizzly.activations
    assert grizzly.balance == Decimal("99.70")
    assert grizzly.calls[0].params == {"action": "getNumberV2", "service": "tg", "country": "12"}


@pytest.mark.parametrize(
    ("max_price", "sent"),
    [(Decimal("0.50"), "0.50"), (Decimal("1E+1"), "10"), (Decimal("3.5E-1"), "0.35")],
)
def test_get_number_sends_max_price_as_plain_decimal(client, grizzly, max_price, sent):
    client.get_number("tg", 12, max_price=max_price)
    assert grizzly.calls[0].params["maxPrice"] == sent


def test_get_number_ids_and_amounts_as_strings(client, grizzly):
    grizzly.script(
        "getNumberV2",
        raw_json(
            {
                "activationId": "635468024",
                "phoneNumber": 15551234567,
                "activationCost": "0.25",
                "countryCode": "12",
                "canGetAnotherSms": "",
                "activationTime": "2026-11-25 14:30:57",
            }
        ),
    )
    number = client.get_number("tg", 12)
    assert number.upstream_id == "635468024"
    assert number.phone == "15551234567"
    assert number.cost == Decimal("0.25")
    assert number.activation_time == dt.datetime(2026, 11, 25, 14, 30, 57)
    assert number.activation_end is None


def test_get_number_ids_as_numbers(client, grizzly):
    grizzly.script(
        "getNumberV2",
        raw_json({"activationId": 635468024, "phoneNumber": "+15551234567", "activationCost": 1}),
    )
    number = client.get_number("tg", 12)
    assert (number.upstream_id, number.phone, number.cost) == ("635468024", "15551234567", 1)
    assert number.country_id is None and number.activation_time is None


def test_get_number_accepts_classic_answer(client, grizzly):
    grizzly.script("getNumberV2", "ACCESS_NUMBER:635468024:15551234567")
    number = client.get_number("tg", 12)
    assert (number.upstream_id, number.phone, number.cost) == ("635468024", "15551234567", None)


def test_status_lifecycle_with_code(client, grizzly):
    number = client.get_number("wa", 16)
    code = client.get_status(number.upstream_id)
    assert code.state is UpstreamState.CODE and code.code
    assert client.set_status(number.upstream_id, 3) is SetStatusAnswer.RETRY_GET
    second = client.get_status(number.upstream_id)  # code_delay 0: the next SMS is there
    assert second.state is UpstreamState.CODE and second.code not in (None, code.code)
    assert client.set_status(number.upstream_id, 6) is SetStatusAnswer.ACTIVATION


def test_status_retry_keeps_last_code(client, grizzly):
    grizzly.code_delay = None
    number = client.get_number("tg", 12)
    grizzly.deliver_code(number.upstream_id, "004217")
    assert client.set_status(number.upstream_id, 3) is SetStatusAnswer.RETRY_GET
    assert client.get_status(number.upstream_id) == StatusAnswer(UpstreamState.WAIT_RETRY, "004217")


def test_cancel_before_code_refunds(client, grizzly):
    grizzly.code_delay = None
    number = client.get_number("tg", 0)
    assert client.get_status(number.upstream_id) == StatusAnswer(UpstreamState.WAIT_CODE)
    assert client.set_status(number.upstream_id, 1) is SetStatusAnswer.READY
    assert client.set_status(number.upstream_id, 8) is SetStatusAnswer.CANCEL
    assert client.get_status(number.upstream_id) == StatusAnswer(UpstreamState.CANCELLED)
    assert client.get_balance() == Decimal("100.00")
    with pytest.raises(errors.AlreadyCancel):
        client.set_status(number.upstream_id, 8)


def test_cancel_after_code_is_refused(client):
    number = client.get_number("tg", 0)
    assert client.get_status(number.upstream_id).state is UpstreamState.CODE
    with pytest.raises(errors.BadStatus):
        client.set_status(number.upstream_id, 8)


def test_early_cancel_denied(client, grizzly):
    grizzly.early_cancel_seconds = 120
    grizzly.code_delay = None
    number = client.get_number("tg", 0)
    with pytest.raises(errors.EarlyCancelDenied):
        client.set_status(number.upstream_id, 8)
    grizzly.advance(121)
    assert client.set_status(number.upstream_id, 8) is SetStatusAnswer.CANCEL


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("STATUS_OK:0042", StatusAnswer(UpstreamState.CODE, "0042")),
        ("STATUS_OK:12:34:56", StatusAnswer(UpstreamState.CODE, "12:34:56")),
        ("  STATUS_OK:007\n", StatusAnswer(UpstreamState.CODE, "007")),
        ("STATUS_WAIT_RETRY:00:99", StatusAnswer(UpstreamState.WAIT_RETRY, "00:99")),
        ("STATUS_WAIT_RESEND", StatusAnswer(UpstreamState.WAIT_RESEND)),
        ("STATUS_CANCEL", StatusAnswer(UpstreamState.CANCELLED)),
    ],
)
def test_status_codes_keep_leading_zeros_and_colons(client, grizzly, body, expected):
    grizzly.script("getStatus", body)
    assert client.get_status("635468024") == expected


@pytest.mark.parametrize("body", ["STATUS_OK", "STATUS_OK:", "STATUS_GREAT", "OK", ""])
def test_unknown_status_answer_is_an_error(client, grizzly, body):
    grizzly.script("getStatus", body)
    with pytest.raises(errors.UpstreamError):
        client.get_status("635468024")


def test_sms_text_of_the_code_a_poll_reported(client, grizzly):
    """getStatus carries only the code; getStatusV2 carries the latest SMS's full text,
    given for that code only."""
    grizzly.code_delay = None
    number = client.get_number("tg", 12)
    assert client.get_sms_text(number.upstream_id, "11111") is None  # no SMS yet
    grizzly.deliver_code(number.upstream_id, "011111", "Telegram code 011111, keep it")
    assert client.get_status(number.upstream_id) == StatusAnswer(UpstreamState.CODE, "011111")
    assert client.get_sms_text(number.upstream_id, "011111") == "Telegram code 011111, keep it"
    assert client.get_sms_text(number.upstream_id, "11111") is None  # another code's text
    assert grizzly.calls[-1].params == {"action": "getStatusV2", "id": number.upstream_id}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"verificationType": 0, "sms": {"code": "4217", "text": " Code 4217 \n"}}, "Code 4217"),
        ({"verificationType": "0", "sms": {"code": 4217, "text": "Code 4217"}}, "Code 4217"),
        ({"sms": {"dateTime": None, "code": " 4217 ", "text": "Code 4217"}}, "Code 4217"),
        ({"verificationType": 0, "sms": None, "call": None}, None),
        ({"verificationType": 0, "sms": {"code": "9999", "text": "Code 9999"}}, None),
        ({"sms": {"code": "4217"}}, None),
        ({"sms": {"code": "4217", "text": ""}}, None),
        ({"sms": {"code": "4217", "text": ["Code 4217"]}}, None),
        ({"sms": {"code": "4217", "text": 4217}}, None),
        ({"sms": {"code": "4217", "text": "Code\u0000 4217"}}, None),
        ({"sms": {"code": True, "text": "Code 4217"}}, None),
        ({"sms": {"text": "Code 4217"}}, None),
        ({"sms": "Code 4217"}, None),
        ([{"code": "4217", "text": "Code 4217"}], None),
        ({"status": "error", "error": "NO_ACTIVATION"}, None),
    ],
)
def test_sms_text_answers_are_read_tolerantly(client, grizzly, body, expected):
    grizzly.script("getStatusV2", raw_json(body))
    assert client.get_sms_text("635468024", "4217") == expected


@pytest.mark.parametrize(
    "answer",
    [
        "STATUS_CANCEL",
        "BAD_ACTION",
        PROHIBITED_TEXT,
        '{"sms": {"code": "4217", "text": "Code',
        Fault.GARBAGE,
        Fault.TRUNCATED_JSON,
        Fault.HTTP_500,
        Fault.RATE_LIMIT,
        Fault.DROP,
        Fault.SLOW,
        Reply("not found", status=404),
    ],
)
def test_sms_text_is_none_for_any_failure_and_asked_once(client, grizzly, sleeps, answer):
    """A text that cannot be had is no text: never an error, never retried (the code is
    recorded without it rather than late)."""
    grizzly.script("getStatusV2", answer)
    assert client.get_sms_text("635468024", "4217") is None
    assert grizzly.count("getStatusV2") == 1 and sleeps == []


def test_get_active_activations(client, grizzly):
    number = client.get_number("go", 187)
    [row] = client.get_active_activations()
    assert row == ActiveActivation(
        upstream_id=number.upstream_id,
        phone=number.phone,
        service="go",
        country_id=187,
        status=row.status,
        code=client.get_status(number.upstream_id).code,
    )
    assert isinstance(row.status, str)


def test_get_active_activations_ids_as_numbers_and_code_lists(client, grizzly):
    rows = [
        {"activationId": 1, "phoneNumber": 15550001, "serviceCode": "tg", "countryCode": 12,
         "activationStatus": 4, "smsCode": ["111", "0222"]},
        {"activationId": "2", "phoneNumber": "15550002", "smsCode": None},
        {"phoneNumber": "no id"},
    ]  # fmt: skip
    grizzly.script(
        "getActiveActivations", raw_json({"status": "success", "activeActivations": rows})
    )
    assert client.get_active_activations() == [
        ActiveActivation("1", "15550001", "tg", 12, "4", "0222"),
        ActiveActivation("2", "15550002", None, None, None, None),
    ]


@pytest.mark.parametrize(
    "answer", [None, "NO_ACTIVATIONS", raw_json({"status": "success", "activeActivations": []})]
)
def test_no_activations_is_an_empty_list(client, grizzly, answer):
    if answer is not None:
        grizzly.script("getActiveActivations", answer)
    assert client.get_active_activations() == []


# -- protocol errors -----------------------------------------------------------------------

TOKENS = [
    ("BAD_KEY", errors.BadKey),
    ("NO_KEY", errors.NoKey),
    ("BAD_ACTION", errors.BadAction),
    ("BAD_SERVICE", errors.BadService),
    ("BAD_COUNTRY", errors.BadCountry),
    ("BAD_STATUS", errors.BadStatus),
    ("NO_ACTIVATION", errors.NoActivation),
    ("WRONG_ACTIVATION_ID", errors.WrongActivationId),
    ("NO_NUMBERS", errors.NoNumbers),
    ("NO_BALANCE", errors.NoBalance),
    ("ERROR_SQL", errors.ErrorSql),
    ("EARLY_CANCEL_DENIED", errors.EarlyCancelDenied),
    ("ORDER_ALREADY_EXISTS", errors.OrderAlreadyExists),
    ("ACCOUNT_INACTIVE", errors.AccountInactive),
    ("SERVICE_UNAVAILABLE_REGION", errors.ServiceUnavailableRegion),
    ("USERS_IP_IS_NOT_ALLOWED", errors.IpNotAllowed),
    ("ALREADY_CANCEL", errors.AlreadyCancel),
    ("STATUS_ALREADY_CHANGED", errors.StatusAlreadyChanged),
    ("ACTION_NOT_AVAILABLE", errors.ActionNotAvailable),
    ("WRONG_MAX_PRICE:0.25", errors.WrongMaxPrice),
    ("BANNED:'2026-1-5 10-00-00'", errors.Banned),
]


@pytest.mark.parametrize(("token", "cls"), TOKENS)
def test_each_token_raises_its_class(client, grizzly, token, cls):
    grizzly.script("getNumberV2", token)
    grizzly.script("setStatus", token)
    grizzly.script("getBalance", token)
    with pytest.raises(cls):
        client.get_number("tg", 12)
    with pytest.raises(cls):
        client.set_status("635468024", 8)
    with pytest.raises(cls):
        client.get_balance()
    assert grizzly.count("getNumberV2") == 1
    assert not grizzly.activations


def test_json_error_answer_raises_its_class(client, grizzly):
    grizzly.script("getNumberV2", raw_json({"status": "error", "error": "NO_NUMBERS"}))
    grizzly.script("getPrices", raw_json({"status": "error", "error": "BAD_KEY"}))
    with pytest.raises(errors.NoNumbers):
        client.get_number("tg", 12)
    with pytest.raises(errors.BadKey):
        client.get_prices()


def test_wrong_key(grizzly, sleeps):
    client = make_client(grizzly.url, sleeps)
    client._api_key = "not-the-key"
    with pytest.raises(errors.BadKey):
        client.get_balance()


def test_fake_refusals(client, grizzly):
    with pytest.raises(errors.NoNumbers):
        client.get_number("ds", 0)
    with pytest.raises(errors.BadService):
        client.get_number("zz", 0)
    with pytest.raises(errors.NoActivation):
        client.get_status("1")
    grizzly.balance = Decimal("0.10")
    with pytest.raises(errors.NoBalance):
        client.get_number("tg", 12)


def test_wrong_max_price_carries_the_minimum(client, grizzly):
    with pytest.raises(errors.WrongMaxPrice) as caught:
        client.get_number("wa", 12, max_price=Decimal("1.00"))
    assert caught.value.min_price == "1.30"
    assert not grizzly.activations


def test_free_text_is_rejected_not_success(client, grizzly):
    grizzly.script("getNumberV2", Fault.PROHIBITED)
    grizzly.script("getBalance", Fault.PROHIBITED)
    grizzly.script("setStatus", "ACCESS_GRANTED")
    with pytest.raises(errors.UpstreamRejected) as caught:
        client.get_number("tg", 12)
    assert caught.value.text == PROHIBITED_TEXT
    with pytest.raises(errors.UpstreamRejected):
        client.get_balance()
    with pytest.raises(errors.UpstreamRejected):
        client.set_status("635468024", 6)


@pytest.mark.parametrize(
    ("body", "cls"),
    [
        (PROHIBITED_TEXT, errors.RefusedInWords),
        (PROHIBITED_TEXT.lower() + ".", errors.RefusedInWords),
        ("Internal error, please try later", errors.UpstreamRejected),
        ('{"status": "error", "error": "' + PROHIBITED_TEXT + '"}', errors.RefusedInWords),
        ('{"status": "error", "message": "Database timeout"}', errors.UpstreamRejected),
    ],
)
def test_only_a_known_sentence_is_a_refusal_in_words(client, grizzly, body, cls):
    """Free text at purchase: the sentences a provider is known to refuse with (nothing
    sold) apart from any other text (what it means for the purchase is unknown)."""
    grizzly.script("getNumberV2", body)
    with pytest.raises(errors.UpstreamRejected) as caught:
        client.get_number("tg", 12)
    assert type(caught.value) is cls


@pytest.mark.parametrize("body", ["ACCESS_BALANCE:", "ACCESS_BALANCE:lots", "BALANCE:1.00"])
def test_bad_balance_answer(client, grizzly, body):
    grizzly.script("getBalance", body)
    with pytest.raises(errors.UpstreamRejected):
        client.get_balance()


# -- rate limits ---------------------------------------------------------------------------


def test_read_honours_retry_after(client, grizzly, sleeps):
    grizzly.retry_after = 2
    grizzly.script("getBalance", Fault.RATE_LIMIT)
    assert client.get_balance() == Decimal("100.00")
    assert sleeps == [2.0]
    assert grizzly.count("getBalance") == 2


def test_read_rate_limited_when_retries_run_out(client, grizzly, sleeps):
    grizzly.script("getPrices", *[Fault.RATE_LIMIT] * 3)
    with pytest.raises(errors.RateLimited) as caught:
        client.get_prices()
    assert caught.value.retry_after == 1.0
    assert sleeps == [1.0, 1.0]
    assert grizzly.count("getPrices") == 3


def test_read_rate_limited_when_retry_after_too_long(client, grizzly, sleeps):
    grizzly.script("getStatus", Reply("slow down", status=429, headers={"Retry-After": "60"}))
    with pytest.raises(errors.RateLimited) as caught:
        client.get_status("1")
    assert caught.value.retry_after == 60
    assert sleeps == []


def test_rate_limit_without_retry_after_backs_off(client, grizzly, sleeps):
    grizzly.script("getCountries", Reply("", status=429))
    assert client.get_countries()
    assert sleeps == [0.01]


def test_purchase_rate_limited_is_not_retried(client, grizzly, sleeps):
    grizzly.script("getNumberV2", Fault.RATE_LIMIT)
    with pytest.raises(errors.RateLimited):
        client.get_number("tg", 12)
    assert grizzly.count("getNumberV2") == 1
    assert not grizzly.activations and sleeps == []


# -- transport failures --------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault", [Fault.SLOW, Fault.HTTP_500, Fault.DROP, Fault.TRUNCATED_BODY, Reply(status=503)]
)
def test_reads_are_retried(client, grizzly, sleeps, fault):
    grizzly.script("getServicesList", fault)
    assert client.get_services()
    assert grizzly.count("getServicesList") == 2
    assert sleeps == [0.01]


@pytest.mark.parametrize("fault", [Fault.SLOW, Fault.HTTP_500, Fault.DROP])
def test_reads_give_up_after_retries(client, grizzly, sleeps, fault):
    grizzly.script("getActiveActivations", *[fault] * 3)
    with pytest.raises(errors.UpstreamUnavailable) as caught:
        client.get_active_activations()
    assert not isinstance(caught.value, errors.RateLimited)
    assert grizzly.count("getActiveActivations") == 3
    assert sleeps == [0.01, 0.02]


@pytest.mark.parametrize(
    "fault",
    [
        Fault.SLOW,
        Fault.HTTP_500,
        Fault.DROP,
        Fault.GARBAGE,
        Fault.TRUNCATED_JSON,
        Fault.TRUNCATED_BODY,
        Reply(status=502),
        Reply("<html><body>Bad gateway</body></html>"),
        "",
        "ACCESS_NUMBER:635468024",
        raw_json({"activationId": "abc", "phoneNumber": "15551234567"}),
    ],
)
def test_lost_purchase_answer_is_unknown_outcome(client, grizzly, sleeps, fault):
    grizzly.script("getNumberV2", fault)
    with pytest.raises(errors.UnknownOutcome):
        client.get_number("tg", 12)
    assert grizzly.count("getNumberV2") == 1
    assert sleeps == []


@pytest.mark.parametrize("fault", [Fault.DROP, Fault.SLOW, Fault.HTTP_500, Fault.TRUNCATED_JSON])
def test_lost_purchase_can_be_found_in_active_activations(client, grizzly, fault):
    grizzly.script("getNumberV2", fault, process=True)
    with pytest.raises(errors.UnknownOutcome):
        client.get_number("tg", 12)
    [bought] = grizzly.activations.values()
    [row] = client.get_active_activations()
    assert (row.upstream_id, row.phone) == (str(bought.id), bought.phone)


def test_connection_refused(closed_url, sleeps):
    client = make_client(closed_url, sleeps)
    with pytest.raises(errors.UpstreamUnavailable) as caught:
        client.get_number("tg", 12)
    assert not isinstance(caught.value, errors.UnknownOutcome)
    with pytest.raises(errors.UpstreamUnavailable):
        client.get_balance()
    assert sleeps == [0.01, 0.02]
    with pytest.raises(errors.UpstreamUnavailable):
        client.set_status("1", 8)


def test_connect_timeout_means_nothing_was_sent(client, monkeypatch):
    def connect_timeout(*args, **kwargs):
        raise requests.exceptions.ConnectTimeout(f"timed out: https://x/?api_key={KEY}")

    monkeypatch.setattr(client._session, "send", connect_timeout)
    with pytest.raises(errors.UpstreamUnavailable) as caught:
        client.get_number("tg", 12)
    assert not isinstance(caught.value, errors.UnknownOutcome)
    assert KEY not in str(caught.value)


@pytest.mark.parametrize("fault", [Fault.SLOW, Fault.HTTP_500, Fault.DROP, Fault.GARBAGE])
def test_set_status_is_never_retried(client, grizzly, sleeps, fault):
    number = client.get_number("tg", 12)
    grizzly.script("setStatus", fault)
    with pytest.raises(errors.UpstreamError) as caught:
        client.set_status(number.upstream_id, 6)
    expected = errors.UpstreamRejected if fault is Fault.GARBAGE else errors.UpstreamUnavailable
    assert isinstance(caught.value, expected)
    assert grizzly.count("setStatus", number.upstream_id) == 1
    assert sleeps == []


# -- the API key stays secret --------------------------------------------------------------


def test_repr_hides_the_key(client):
    assert KEY not in repr(client) and KEY not in str(vars(client).get("url"))


LEAK_SCENARIOS = [
    ("getNumberV2", Fault.SLOW, lambda c: c.get_number("tg", 12)),
    ("getNumberV2", Fault.DROP, lambda c: c.get_number("tg", 12)),
    ("getNumberV2", Fault.GARBAGE, lambda c: c.get_number("tg", 12)),
    ("getNumberV2", Fault.TRUNCATED_BODY, lambda c: c.get_number("tg", 12)),
    ("getNumberV2", Reply(f"Unknown key {KEY}"), lambda c: c.get_number("tg", 12)),
    ("getNumberV2", Fault.RATE_LIMIT, lambda c: c.get_number("tg", 12)),
    ("getBalance", Fault.HTTP_500, lambda c: c.get_balance()),
    ("getBalance", Fault.SLOW, lambda c: c.get_balance()),
    ("getPrices", Fault.TRUNCATED_JSON, lambda c: c.get_prices()),
    ("getPrices", Reply(f'{{"error": "bad key {KEY}"}}'), lambda c: c.get_prices()),
    ("setStatus", Fault.DROP, lambda c: c.set_status("1", 8)),
    ("setStatus", Reply(f"ERR {KEY}"), lambda c: c.set_status("1", 8)),
    ("getStatus", Reply(status=404), lambda c: c.get_status("1")),
]


@pytest.mark.parametrize(("action", "fault", "call"), LEAK_SCENARIOS)
def test_key_never_leaks(client, grizzly, caplog, action, fault, call):
    caplog.set_level(logging.DEBUG)
    grizzly.script(action, *[fault] * 3)
    with pytest.raises(errors.UpstreamError) as caught:
        call(client)
    rendered = "".join(traceback.format_exception(caught.value))
    assert KEY not in rendered and KEY not in repr(caught.value)
    assert KEY not in caplog.text
    assert f"grizzly {action}" in caplog.text  # our debug line: action and duration


def test_key_never_leaks_on_connection_refused(closed_url, sleeps, caplog):
    caplog.set_level(logging.DEBUG)
    client = make_client(closed_url, sleeps)
    for call in (lambda: client.get_number("tg", 12), client.get_balance):
        with pytest.raises(errors.UpstreamUnavailable) as caught:
            call()
        assert KEY not in "".join(traceback.format_exception(caught.value))
    assert KEY not in caplog.text


def test_urllib3_request_log_is_redacted(client, caplog):
    caplog.set_level(logging.DEBUG)
    client.get_balance()
    assert "api_key=***" in caplog.text
    assert KEY not in caplog.text


def test_proxy_settings_come_from_the_environment_read_once(monkeypatch, grizzly):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.setenv("no_proxy", "")
    behind_proxy = GrizzlyClient("k", url="https://api.grizzlysms.com/stubs/handler_api.php")
    assert behind_proxy._session.proxies["https"] == "http://proxy.example:3128"
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    direct = GrizzlyClient(KEY, url=grizzly.url, retries=0)
    assert "http" not in direct._session.proxies  # NO_PROXY covers the fake
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # later changes are not re-read
    assert direct.get_balance() == Decimal(grizzly.balance)


def test_a_refused_connection_is_described_by_host_and_port_only():
    import socket

    import requests

    from reseller.upstream.transport import describe_failure, nothing_sent

    with socket.socket() as spare:  # a port nothing listens on
        spare.bind(("127.0.0.1", 0))
        port = spare.getsockname()[1]
    try:
        requests.get(f"http://user:pw@127.0.0.1:{port}/stubs/handler_api.php?api_key=SECRET")
    except requests.RequestException as exc:
        text = describe_failure(exc)
    assert text == f"connection refused at 127.0.0.1:{port}"
    assert nothing_sent(text) and not nothing_sent(f"read timeout from 127.0.0.1:{port}")
