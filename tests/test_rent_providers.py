"""Rent against a provider over HTTP (the fake GrizzlySMS speaking SMS-Activate's rent
family, and GrizzlySMS's `error` variant), and the worker's part: polling each rented
number's SMS into webhook events, expiry, and settling a rent whose answer was lost."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from reseller.extensions import db
from reseller.models import Rental, RentMessage, RentPeriod, User, WebhookEndpoint, WebhookEvent
from reseller.services import webhooks, worker
from reseller.services.accounts import seal
from reseller.services.ledger import verify_ledger
from reseller.upstream import errors as up
from reseller.upstream.sms_activate import SmsActivateClient
from tests.fake_grizzly import FakeGrizzly, Fault, Reply


def balance(user_id):
    db.session.expire_all()
    return db.session.get(User, user_id).balance


def rent(gapi, **params):
    params = {"service": "tg", "rent_time": "4", "country": "12", **params}
    return gapi("getRentNumber", **params).get_json()


@pytest.mark.parametrize("key", ["message", "error"])
def test_the_client_reads_both_error_forms(key):
    with FakeGrizzly(rent_error_key=key) as fake:
        client = SmsActivateClient("test-key", url=fake.url, retries=0)
        with pytest.raises(up.NoNumbers):
            client.rent_number("ds", 0, 4)  # no stock
        with pytest.raises(up.InvalidTime):
            client.get_rent_offers(12, 1)
        with pytest.raises(up.NoIdRent):
            client.get_rent_status("123")
        number = client.rent_number("tg", 12, 4)
        assert number.phone.isdigit() and number.ends_at is not None
        assert client.get_rent_status(number.upstream_id).messages == ()
        fake.deliver_rent_sms(number.upstream_id, "Code 111")
        fake.deliver_rent_sms(number.upstream_id, "Code 222")
        status = client.get_rent_status(number.upstream_id)
        assert [m.text for m in status.messages] == ["Code 111", "Code 222"]  # oldest first
        assert [r.upstream_id for r in client.get_rent_list()] == [number.upstream_id]
        with pytest.raises(up.CantCancel):
            client.set_rent_status(number.upstream_id, 2)
        client.set_rent_status(number.upstream_id, 1)
        with pytest.raises(up.AlreadyFinish):
            client.set_rent_status(number.upstream_id, 1)
        assert client.get_rent_list() == []
        assert not fake.errors


@pytest.fixture
def fake():
    from tests.fake_grizzly import FakeGrizzly

    with FakeGrizzly(early_cancel_seconds=0, rent_error_key="error") as server:
        yield server
    assert not server.errors


def test_a_refused_rent_is_refunded_and_names_the_refusal(gapi, fake):
    before = balance(gapi.user_id)
    fake.script("getRentNumber", Reply('{"status":"error","error":"NO_NUMBERS"}'))
    assert rent(gapi) == {"status": "error", "message": "NO_NUMBERS"}
    assert balance(gapi.user_id) == before
    assert db.session.execute(select(Rental.status)).scalar_one() == "failed"
    assert verify_ledger() == []


def test_rent_sms_polled_by_the_worker_become_webhook_events(gapi, fake, clock):
    endpoint = WebhookEndpoint(
        user_id=gapi.user_id, url="https://hooks.example.com/sms", secret_encrypted=seal("s")
    )
    db.session.add(endpoint)
    db.session.commit()
    answer = rent(gapi)
    rent_id, upstream_id = answer["phone"]["id"], db.session.get(Rental, answer["phone"]["id"])
    upstream_id = upstream_id.upstream_id
    fake.deliver_rent_sms(upstream_id, "Your code 123456", sender="Telegram")
    clock.travel(31)
    report = worker.run_once()
    assert report.rent_sms == 1
    clock.travel(31)
    assert worker.run_once().rent_sms == 0  # already kept
    [message] = db.session.execute(select(RentMessage)).scalars().all()
    assert (message.rental_id, message.text, message.sender) == (
        rent_id,
        "Your code 123456",
        "Telegram",
    )
    [event] = (
        db.session.execute(select(WebhookEvent).where(WebhookEvent.kind == "rent_sms"))
        .scalars()
        .all()
    )
    body = webhooks.payload(event, None)
    assert body["event"] == "rent_sms" and body["rentId"] == rent_id
    assert body["text"] == "Your code 123456" and body["phoneFrom"] == "Telegram"
    assert body["number"] == answer["phone"]["number"] and body["service"] == "tg"
    status = gapi("getRentStatus", id=rent_id).get_json()
    assert status["values"]["0"]["text"] == "Your code 123456"


def test_expiry_closes_without_refund(gapi, fake, clock):
    rent_id = rent(gapi)["phone"]["id"]
    after_charge = balance(gapi.user_id)
    clock.travel(4 * 3600 + 1)
    assert worker.run_once().rentals_expired == 1
    assert db.session.get(Rental, rent_id).status == "expired"
    assert balance(gapi.user_id) == after_charge
    assert gapi("getRentStatus", id=rent_id).get_json()["message"] == "STATUS_FINISH"
    assert gapi("continueRentNumber", id=rent_id).get_json()["message"] == "RENT_DIE"
    assert verify_ledger() == []


def test_a_lost_rent_answer_is_held_then_settled(gapi, fake, clock):
    before = balance(gapi.user_id)
    fake.script("getRentNumber", Fault.DROP, process=True)  # rented upstream, answer lost
    assert rent(gapi) == {"status": "error", "message": "ERROR_SQL"}
    rental = db.session.execute(select(Rental)).scalar_one()
    assert rental.status == "unknown" and balance(gapi.user_id) < before
    assert worker.run_once().rentals_settled == 0  # its answer may still be on its way
    clock.travel(worker.settle_after() + 1)
    assert worker.run_once().rentals_settled == 1
    db.session.expire_all()
    rental = db.session.get(Rental, rental.id)
    assert rental.status == "failed" and rental.settlement == "listed"
    assert balance(gapi.user_id) == before
    assert [r.state for r in fake.rents.values()] == ["cancelled"]  # given back upstream
    assert verify_ledger() == []


def test_a_refused_continue_gives_its_period_back(gapi, fake):
    rent_id = rent(gapi)["phone"]["id"]
    charged = balance(gapi.user_id)
    fake.script("continueRentNumber", Reply('{"status":"error","error":"RENT_DIE"}'))
    answer = gapi("continueRentNumber", id=rent_id, rent_time="24").get_json()
    assert answer == {"status": "error", "message": "RENT_DIE"}
    assert balance(gapi.user_id) == charged
    periods = db.session.execute(select(RentPeriod.status)).scalars().all()
    assert periods == ["confirmed", "refunded"]
    assert verify_ledger() == []
    # a continue the provider accepts is charged
    assert gapi("continueRentNumber", id=rent_id, rent_time="24").get_json()["status"] == "success"
    assert balance(gapi.user_id) < charged
    assert verify_ledger() == []
