"""Rented numbers through the API (issue 28): SMS-Activate's rent family against the
sandbox, billed through the wallet with a ledger row per period."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from reseller.extensions import db
from reseller.models import LedgerEntry, Rental, RentPeriod, User
from reseller.services import pricing, rentals
from reseller.services.ledger import verify_ledger
from reseller.upstream import sandbox

SMS_DELAY = 6  # past the sandbox's code delay (TestConfig: 5 s)


def balance(user_id):
    db.session.expire_all()
    return db.session.get(User, user_id).balance


def rent_price(service, country_id, hours):
    offer = next(p for p in sandbox.PRICES if (p.service, p.country_id) == (service, country_id))
    from reseller.money import to_units

    cost = to_units(sandbox.rent_cost(offer.cost, hours), round_up=True)
    return pricing.rent_price(cost, service, country_id)


def test_offers_priced_from_the_providers(api):
    answer = api("getRentServicesAndCountries", rent_time="4", country="12").get_json()
    assert answer["countries"] == {"0": 12} and answer["operators"] == {"0": "any"}
    assert answer["currency"] == 840
    tg = answer["services"]["tg"]
    assert tg["quant"] == 120
    assert tg["cost"] == rent_price("tg", 12, 4) / 10_000
    assert "dr" not in answer["services"]  # out of stock
    # JSON whatever format says
    assert api.json("getRentServicesAndCountries", rent_time="4", country="12") == answer


@pytest.mark.parametrize("hours", ["1", "1345", "25", "abc", "-4", "4.5"])
def test_invalid_rent_time(api, hours):
    answer = api("getRentServicesAndCountries", rent_time=hours, country="12").get_json()
    assert answer == {"status": "error", "message": "INVALID_TIME"}
    answer = api("getRentNumber", service="tg", rent_time=hours, country="12").get_json()
    assert answer == {"status": "error", "message": "INVALID_TIME"}


def test_rent_read_sms_continue_finish(api, customer, clock):
    before = balance(customer.id)
    price = rent_price("tg", 12, 4)
    answer = api("getRentNumber", service="tg", time="4", country="12").get_json()
    assert answer["status"] == "success"
    phone = answer["phone"]
    assert phone["number"].isdigit() and isinstance(phone["id"], int)
    assert len(phone["endDate"]) == 19 and phone["endDate"][10] == "T"
    assert balance(customer.id) == before - price
    rent_id = phone["id"]

    waiting = api("getRentStatus", id=rent_id).get_json()
    assert waiting == {"status": "error", "message": "STATUS_WAIT_CODE"}
    clock.travel(30)  # the sandbox's SMS arrived (every 5 s, three); the poll slot is due
    status = api("getRentStatus", id=rent_id).get_json()
    assert status["status"] == "success" and status["quantity"] == "3"
    first, second = status["values"]["0"], status["values"]["1"]
    assert first["date"] > second["date"]  # newest first
    assert first["service"] == "tg" and "code" in first["text"]
    paged = api("getRentStatus", id=rent_id, page="1", size="1").get_json()
    assert paged["values"] == {"0": second}

    assert api("getRentList").get_json() == {
        "status": "success",
        "values": {"0": {"id": str(rent_id), "phone": phone["number"]}},
    }

    extra = rent_price("tg", 12, 24)
    quoted = api("getContinueRentPriceNumber", id=rent_id, rent_time="24").get_json()
    assert quoted == {"status": "success", "price": extra / 10_000, "currency": 840}
    info = api("continueRentInfo", id=rent_id, hours="24").get_json()
    assert info["price"] == extra / 10_000 and info["hours"] == 24
    assert list(info["history"]) == ["0"]
    continued = api("continueRentNumber", id=rent_id, rent_time="24").get_json()
    assert continued["status"] == "success" and continued["phone"]["id"] == rent_id
    assert continued["phone"]["endDate"] > phone["endDate"]
    assert balance(customer.id) == before - price - extra
    rental = db.session.get(Rental, rent_id)
    assert rental.hours == 28 and rental.price == price + extra

    # with SMS, no cancel; finish refunds nothing
    assert api("setRentStatus", id=rent_id, status="2").get_json() == {
        "status": "error",
        "message": "CANT_CANCEL",
    }
    assert api("setRentStatus", id=rent_id, status="1").get_json() == {"status": "success"}
    assert api("setRentStatus", id=rent_id, status="1").get_json()["message"] == "ALREADY_FINISH"
    assert balance(customer.id) == before - price - extra
    assert api("getRentList").get_json() == {"status": "success", "values": {}}
    assert api("getRentStatus", id=rent_id).get_json()["quantity"] == "3"  # still readable
    kinds = db.session.execute(select(LedgerEntry.kind).order_by(LedgerEntry.id)).scalars().all()
    assert kinds[-2:] == ["rent", "rent_extension"]
    assert verify_ledger() == []


def test_cancel_before_any_sms_refunds_once(api, customer):
    before = balance(customer.id)
    rent_id = api("getRentNumber", service="ot", rent_time="4", country="12").get_json()
    rent_id = rent_id["phone"]["id"]
    assert balance(customer.id) < before
    assert api("setRentStatus", id=rent_id, status="2").get_json() == {"status": "success"}
    assert balance(customer.id) == before
    assert api("setRentStatus", id=rent_id, status="2").get_json() == {
        "status": "error",
        "message": "ALREADY_CANCEL",
    }
    assert balance(customer.id) == before
    assert api("getRentStatus", id=rent_id).get_json()["message"] == "STATUS_CANCEL"
    assert api("continueRentNumber", id=rent_id, rent_time="4").get_json()["message"] == "RENT_DIE"
    refunds = db.session.execute(
        select(LedgerEntry).where(LedgerEntry.kind == "rent_refund")
    ).scalars()
    assert len(list(refunds)) == 1
    assert verify_ledger() == []


def test_cancel_after_the_window_is_refused(api, customer, clock):
    rent_id = api("getRentNumber", service="ot", rent_time="4", country="12").get_json()
    rent_id = rent_id["phone"]["id"]
    clock.travel(21 * 60)
    before = balance(customer.id)
    assert api("setRentStatus", id=rent_id, status="2").get_json()["message"] == "CANT_CANCEL"
    assert balance(customer.id) == before


def test_refusals_change_nothing(api, customer, client, make_user):
    from tests.conftest import Api, api_key_of

    before = balance(customer.id)
    for params, token in (
        ({"service": "nosuch"}, "BAD_SERVICE"),
        ({"service": "tg", "country": "nowhere"}, "BAD_COUNTRY"),
        ({"service": "dr", "country": "12"}, "NO_NUMBERS"),
    ):
        answer = api("getRentNumber", rent_time="4", **params).get_json()
        assert answer == {"status": "error", "message": token}
    assert balance(customer.id) == before
    assert db.session.execute(select(Rental)).first() is None

    poor = Api(client, api_key_of(make_user(email="poor@example.com", balance="0.10")))
    answer = poor("getRentNumber", service="tg", rent_time="4", country="12").get_json()
    assert answer == {"status": "error", "message": "NO_BALANCE"}
    assert db.session.execute(select(Rental)).first() is None


def test_another_customers_rent_is_no_id_rent(api, client, make_user):
    from tests.conftest import Api, api_key_of

    rent_id = api("getRentNumber", service="tg", rent_time="4", country="12").get_json()
    rent_id = rent_id["phone"]["id"]
    other = Api(client, api_key_of(make_user(email="other@example.com", balance="5")))
    for action, params in (
        ("getRentStatus", {}),
        ("setRentStatus", {"status": "2"}),
        ("continueRentNumber", {"rent_time": "4"}),
        ("getContinueRentPriceNumber", {}),
    ):
        answer = other(action, id=str(rent_id), **params).get_json()
        assert answer == {"status": "error", "message": "NO_ID_RENT"}, action
    for bad in ("", "x", "99999999999"):
        assert api("getRentStatus", id=bad).get_json()["message"] == "NO_ID_RENT"
    assert api("setRentStatus", id=rent_id, status="3").get_json()["message"] == "INCORECT_STATUS"
    assert db.session.get(Rental, rent_id).status == "active"


def test_bad_key_stays_the_plain_token(client, stocked):
    from tests.conftest import Api

    assert Api(client, "nope").text("getRentList") == "BAD_KEY"


def test_parameter_names_with_whitespace(api, customer):
    response = api.client.get(
        api.path,
        query_string={
            "api_key": api.key,
            "action": "getRentNumber",
            "service ": "tg",
            "time ": "24",
            "country ": "12",
        },
    )
    answer = response.get_json()
    assert answer["status"] == "success", answer
    assert db.session.get(Rental, answer["phone"]["id"]).hours == 24
    periods = db.session.execute(select(RentPeriod)).scalars().all()
    assert [p.hours for p in periods] == [24]
    # HeroSMS's name for the length
    answer = api("getRentNumber", service="tg", duration="48", country="12").get_json()
    assert db.session.get(Rental, answer["phone"]["id"]).hours == 48


def test_ledger_verify_checks_rent_periods(api, customer):
    from reseller.models import LedgerKind
    from reseller.services import wallet

    rent_id = api("getRentNumber", service="tg", rent_time="4", country="12").get_json()
    rent_id = rent_id["phone"]["id"]
    assert verify_ledger() == []
    period = db.session.execute(select(RentPeriod)).scalar_one()
    # a refund for a rent that was never cancelled
    wallet.credit(customer.id, period.price, kind=LedgerKind.RENT_REFUND, rent_period_id=period.id)
    db.session.commit()
    problems = verify_ledger()
    assert any(f"rental {rent_id} period 1: confirmed but refunded" in p for p in problems)
    # a rent row that names no period
    wallet.debit(customer.id, 100, kind=LedgerKind.RENT)
    db.session.commit()
    assert any("a rent row names no rent period" in p for p in verify_ledger())


@pytest.mark.parametrize("source", list(rentals.R))
def test_the_state_table_is_the_only_way_a_rental_moves(app, make_user, source):
    """Every (source, target) pair: the guarded move wins exactly when TRANSITIONS allows."""
    user = make_user(balance="5")
    for target in rentals.R:
        rental = Rental(
            user_id=user.id,
            service="tg",
            country_id=12,
            status=source.value,
            hours=4,
            price=0,
            upstream_name="sandbox",
        )
        db.session.add(rental)
        db.session.commit()
        moved = rentals._move(rental.id, target, note="matrix")
        db.session.commit()
        assert moved == rentals.allowed(source, target), (source, target)
        assert db.session.get(Rental, rental.id).status == (target if moved else source).value
