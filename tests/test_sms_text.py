"""The full SMS text for providers whose poll carries only the code (the SMS-Activate
protocol: GrizzlySMS, HeroSMS, …), asked with one getStatusV2 when a poll reports a new code;
and getFullSms, which serves it (issues 24 and 28)."""

from __future__ import annotations

import pytest
from markupsafe import escape
from sqlalchemy import func, select, update

from reseller.extensions import db
from reseller.models import Activation, LedgerEntry, SmsMessage, User
from reseller.models import ActivationStatus as S
from reseller.services import activations
from reseller.services.ledger import verify_ledger
from reseller.upstream.sandbox import sms_text
from tests.conftest import Api, api_key_of
from tests.fake_grizzly import Fault, Reply

FIRST = "Telegram code 11111, do not share it"
SECOND = "Telegram code 22222 <for you> & nobody else"


@pytest.fixture
def bought(gapi, fake, clock):
    """A Telegram number bought over the fake Grizzly, which delivers SMS only when told;
    its poll slot due. (activation id, upstream id)."""
    fake.code_delay = None
    activation_id = gapi.json("getNumber", service="tg", country="12")["activationId"]
    upstream_id = db.session.get(Activation, activation_id).upstream_id
    clock.travel(5)
    return activation_id, upstream_id


def messages(activation_id):
    db.session.expire_all()
    return [
        (m.seq, m.code, m.text)
        for m in db.session.execute(
            select(SmsMessage)
            .where(SmsMessage.activation_id == activation_id)
            .order_by(SmsMessage.seq)
        ).scalars()
    ]


def books(user_id):
    db.session.expire_all()
    entries = db.session.execute(
        select(func.count(LedgerEntry.id)).where(LedgerEntry.user_id == user_id)
    ).scalar_one()
    return db.session.get(User, user_id).balance, entries


def test_a_grizzly_numbers_card_and_history_show_every_sms_with_its_text(
    gapi, fake, bought, clock, auth, client
):
    """getStatus carries only the code: each new code's text comes from one getStatusV2,
    and the number's card, the history, getStatusV2, getFullSms and getHistory show it."""
    activation_id, upstream_id = bought
    assert gapi.text("getStatus", id=activation_id) == "STATUS_WAIT_CODE"
    fake.deliver_code(upstream_id, "11111", FIRST)
    clock.travel(5)
    assert gapi.text("getStatus", id=activation_id) == "STATUS_OK:11111"
    assert messages(activation_id) == [(1, "11111", FIRST)]
    assert gapi.text("getFullSms", id=activation_id) == f"FULL_SMS:{FIRST}"

    assert gapi.text("setStatus", id=activation_id, status="3") == "ACCESS_RETRY_GET"
    clock.travel(5)
    assert gapi.text("getStatus", id=activation_id) == "STATUS_WAIT_RETRY:11111"
    fake.deliver_code(upstream_id, "22222", SECOND)
    clock.travel(5)
    assert gapi.text("getStatus", id=activation_id) == "STATUS_OK:22222"
    # One getStatusV2 per new code; the polls that reported none asked nothing more.
    assert fake.count("getStatusV2") == 2
    assert messages(activation_id) == [(1, "11111", FIRST), (2, "22222", SECOND)]
    assert db.session.get(Activation, activation_id).sms_text == SECOND
    assert gapi("getStatusV2", id=activation_id).get_json()["sms"]["text"] == SECOND
    assert gapi.text("getFullSms", id=activation_id) == f"FULL_SMS:{SECOND}"
    assert gapi.json("getFullSms", id=activation_id) == {"status": "FULL_SMS", "text": SECOND}

    auth.login("buyer@example.com")
    page = client.get("/dashboard").get_data(as_text=True)
    card = page[page.index(f'id="activation-{activation_id}"') :]
    assert card.index(">11111</code>") < card.index(">22222</code>")
    assert str(escape(FIRST)) in card and str(escape(SECOND)) in card

    assert gapi.text("setStatus", id=activation_id, status="6") == "ACCESS_ACTIVATION"
    assert gapi.text("getFullSms", id=activation_id) == f"FULL_SMS:{SECOND}"
    history = client.get("/dashboard/history").get_data(as_text=True)
    row = history[history.index(f'id="activation-{activation_id}"') :]
    assert str(escape(FIRST)) in row and str(escape(SECOND)) in row
    [entry] = gapi("getHistory").get_json()
    assert entry["sms"] == [FIRST, SECOND]
    assert verify_ledger() == []


@pytest.mark.parametrize(
    "answer",
    [
        Fault.GARBAGE,
        Fault.TRUNCATED_JSON,
        Fault.HTTP_500,
        Fault.DROP,
        "BAD_ACTION",
        '{"verificationType": 0, "sms": null, "call": null}',
        '{"verificationType": 0, "sms": {"code": "99999", "text": "another SMS"}, "call": null}',
        '{"verificationType": 0, "sms": {"code": "11111", "text": {"a": 1}}, "call": null}',
        Reply("not found", status=404),
    ],
)
def test_a_garbled_text_answer_keeps_the_code_without_text(gapi, fake, bought, clock, answer):
    """A failed or garbled getStatusV2 leaves the text empty and changes nothing else: the
    code is recorded, the money and the provider's standing untouched; the next SMS gets
    its text."""
    activation_id, upstream_id = bought
    before = books(gapi.user_id)
    fake.deliver_code(upstream_id, "11111", FIRST)
    fake.script("getStatusV2", answer)
    assert gapi.text("getStatus", id=activation_id) == "STATUS_OK:11111"
    assert fake.count("getStatusV2") == 1  # asked once, not retried
    assert messages(activation_id) == [(1, "11111", None)]
    activation = db.session.get(Activation, activation_id)
    assert (activation.status, activation.code, activation.sms_text) == (
        S.CODE_RECEIVED,
        "11111",
        None,
    )
    assert books(gapi.user_id) == before
    assert gapi.text("getFullSms", id=activation_id) == "FULL_SMS:11111"  # the code instead
    assert gapi.json("getFullSms", id=activation_id) == {"status": "FULL_SMS", "text": "11111"}

    assert gapi.text("setStatus", id=activation_id, status="3") == "ACCESS_RETRY_GET"
    fake.deliver_code(upstream_id, "22222", SECOND)
    clock.travel(5)
    assert gapi.text("getStatus", id=activation_id) == "STATUS_OK:22222"
    assert messages(activation_id) == [(1, "11111", None), (2, "22222", SECOND)]
    assert gapi.text("getFullSms", id=activation_id) == f"FULL_SMS:{SECOND}"
    assert verify_ledger() == []


def test_a_text_sent_with_numbers_for_strings_is_kept(gapi, fake, bought):
    activation_id, upstream_id = bought
    fake.deliver_code(upstream_id, "11111", FIRST)
    fake.script(
        "getStatusV2",
        '{"verificationType": "0", "sms": {"dateTime": null, "code": 11111, "text": "Code 11111"}}',
    )
    assert gapi.text("getStatus", id=activation_id) == "STATUS_OK:11111"
    assert messages(activation_id) == [(1, "11111", "Code 11111")]


def test_the_worker_poll_stores_the_text_too(gapi, fake, bought, runner):
    activation_id, upstream_id = bought
    fake.deliver_code(upstream_id, "11111", FIRST)
    assert runner.invoke(args=["worker", "--once"]).exit_code == 0
    assert messages(activation_id) == [(1, "11111", FIRST)]


def test_a_code_found_at_expiry_is_stored_with_its_text(gapi, fake, bought, clock):
    """Expiry's last look at the provider finds a code that came at the last moment: it is
    recorded with its text, as a poll records it."""
    activation_id, upstream_id = bought
    fake.deliver_code(upstream_id, "11111", FIRST)
    clock.travel(3600)
    assert activations.expire(activation_id) is False  # a code came: not expired
    assert messages(activation_id) == [(1, "11111", FIRST)]
    assert db.session.get(Activation, activation_id).status == S.CODE_RECEIVED


def test_a_provider_that_sends_the_text_is_not_asked_again(api, clock, monkeypatch):
    """The sandbox (like 5sim) sends the text with the code: no second call."""
    from reseller.upstream.sandbox import SandboxUpstream

    asked = []
    monkeypatch.setattr(SandboxUpstream, "get_sms_text", lambda *args: asked.append(args))
    activation_id = api.json("getNumber", service="tg", country="12")["activationId"]
    clock.travel(6)
    code = api.text("getStatus", id=activation_id).removeprefix("STATUS_OK:")
    assert messages(activation_id) == [(1, code, sms_text("tg", code))]
    assert asked == []


# --- getFullSms -------------------------------------------------------------------------------


def _full_sms(api, activation_id):
    return api.text("getFullSms", id=activation_id), api.json("getFullSms", id=activation_id)


def _set(activation_id, **values):
    db.session.execute(update(Activation).where(Activation.id == activation_id).values(**values))
    db.session.commit()


def test_get_full_sms_in_every_state(api, clock, client, make_user):
    waiting = {"status": "STATUS_WAIT_CODE"}
    cancelled = {"status": "STATUS_CANCEL"}
    coded = api.json("getNumber", service="tg", country="12")["activationId"]
    assert _full_sms(api, coded) == ("STATUS_WAIT_CODE", waiting)
    clock.travel(6)
    code = api.text("getStatus", id=coded).removeprefix("STATUS_OK:")
    text = sms_text("tg", code)
    assert _full_sms(api, coded) == (f"FULL_SMS:{text}", {"status": "FULL_SMS", "text": text})
    assert api.text("setStatus", id=coded, status="3") == "ACCESS_RETRY_GET"
    # Waiting for another SMS: the latest one received.
    assert _full_sms(api, coded) == (f"FULL_SMS:{text}", {"status": "FULL_SMS", "text": text})
    clock.travel(6)
    new = api.text("getFullSms", id=coded)  # polls as getStatus does
    assert new.startswith("FULL_SMS:") and new != f"FULL_SMS:{text}"
    assert api.text("setStatus", id=coded, status="6") == "ACCESS_ACTIVATION"
    assert api.text("getFullSms", id=coded) == new
    _set(coded, sms_text=None)  # a code kept without its text: the code
    latest = db.session.get(Activation, coded).code
    assert _full_sms(api, coded) == (
        f"FULL_SMS:{latest}",
        {"status": "FULL_SMS", "text": latest},
    )

    quiet = api.json("getNumber", service="ot", country="12")["activationId"]
    clock.travel(121)
    assert api.text("setStatus", id=quiet, status="8") == "ACCESS_CANCEL"
    assert _full_sms(api, quiet) == ("STATUS_CANCEL", cancelled)
    for status in (S.EXPIRED, S.FAILED):
        _set(quiet, status=status.value)
        assert _full_sms(api, quiet) == ("STATUS_CANCEL", cancelled), status
    for status in (S.PENDING, S.UNKNOWN, S.ALLOCATED):
        _set(quiet, status=status.value)
        assert _full_sms(api, quiet) == ("STATUS_WAIT_CODE", waiting), status

    # Another customer's id, an unknown one and a malformed one are no activation.
    intruder = Api(client, api_key_of(make_user(email="intruder@example.com", balance="1.00")))
    for raw_id in (coded, quiet, 999999, "abc"):
        assert intruder.text("getFullSms", id=raw_id) == "NO_ACTIVATION"
        assert intruder.json("getFullSms", id=raw_id) == {"error": "ACTIVATION_NOT_FOUND"}
    assert Api(client, "no-such-key").text("getFullSms", id=coded) == "BAD_KEY"
    assert Api(client, "no-such-key").json("getFullSms", id=coded) == {"error": "BAD_KEY"}
