"""The sandbox upstream: catalog, purchase, the code timeline, setStatus rules, expiry,
balance, and state shared between app instances (standing for worker processes)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from reseller import create_app
from reseller.extensions import db
from reseller.upstream import errors
from reseller.upstream.base import (
    CountryInfo,
    PriceEntry,
    ServiceInfo,
    SetStatusAnswer,
    StatusAnswer,
    Upstream,
    UpstreamState,
)
from reseller.upstream.sandbox import (
    COUNTRIES,
    PRICES,
    SERVICES,
    STARTING_BALANCE,
    SandboxUpstream,
    sms_code,
    sms_text,
)
from tests.conftest import make_config

DELAY = 10
LIFETIME = 1200
EARLY = 120

WAIT = StatusAnswer(UpstreamState.WAIT_CODE)
CANCELLED = StatusAnswer(UpstreamState.CANCELLED)


@pytest.fixture
def sandbox(app):
    return SandboxUpstream(code_delay=DELAY, lifetime=LIFETIME, early_cancel=EARLY)


def buy(sandbox, service="tg", country_id=12, max_price=None):
    return sandbox.get_number(service, country_id, max_price)


def code_ok(code, service="tg"):
    """A delivered code, with the full SMS text the sandbox words for it."""
    return StatusAnswer(UpstreamState.CODE, code, text=sms_text(service, code))


# -- catalog -------------------------------------------------------------------------


def test_is_an_upstream_named_sandbox(sandbox):
    assert isinstance(sandbox, Upstream)
    assert sandbox.name == "sandbox"


def test_countries_and_services(sandbox):
    countries = sandbox.get_countries()
    assert CountryInfo(12, "USA (virtual)") in countries
    assert {c.id for c in countries} >= {0, 12, 16, 43, 187}
    services = sandbox.get_services()
    assert ServiceInfo("ot", "Any other") in services
    assert {s.code for s in services} >= {"tg", "wa", "go", "ds", "ig", "dr", "ot"}


def test_prices_catalog_and_filters(sandbox):
    prices = sandbox.get_prices()
    assert prices == list(PRICES)
    assert all(isinstance(p.cost, Decimal) for p in prices)
    assert all(p.country_id in COUNTRIES and p.service in SERVICES for p in prices)
    assert PriceEntry(12, "ds", Decimal("0.0545"), 640) in prices  # sub-cent cost
    assert any(p.count == 0 for p in prices)  # out of stock, listed with count 0

    tg = sandbox.get_prices(service="tg")
    assert tg and all(p.service == "tg" for p in tg)
    uk = sandbox.get_prices(country_id=16)
    assert uk and all(p.country_id == 16 for p in uk)
    assert sandbox.get_prices(service="tg", country_id=187) == [
        PriceEntry(187, "tg", Decimal("1.30"), 606)
    ]
    assert sandbox.get_prices(service="nope") == []


# -- purchase ------------------------------------------------------------------------


def test_purchase(sandbox, clock):
    before = clock.utcnow()
    bought = buy(sandbox, "tg", 12)
    after = clock.utcnow()
    assert bought.upstream_id.isdigit()
    assert bought.phone.isdigit() and bought.phone.startswith("1555") and len(bought.phone) == 11
    assert bought.cost == Decimal("0.25")
    assert bought.country_id == 12
    assert before <= bought.activation_time <= after
    assert (bought.activation_end - bought.activation_time).total_seconds() == LIFETIME
    assert sandbox.get_status(bought.upstream_id) == WAIT


def test_phones_are_plausible_and_unique(sandbox):
    uk = [buy(sandbox, "go", 16).phone for _ in range(3)]
    us = [buy(sandbox, "go", 187).phone for _ in range(3)]
    assert all(p.startswith("447") and len(p) == 12 for p in uk)
    assert all(p.startswith("1555") and len(p) == 11 for p in us)
    assert all(p.isdigit() for p in uk + us)
    assert len(set(uk + us)) == 6


def test_no_numbers(sandbox):
    with pytest.raises(errors.NoNumbers):
        buy(sandbox, "dr", 12)  # listed, count 0
    with pytest.raises(errors.NoNumbers):
        buy(sandbox, "ds", 16)  # not sold in that country at all


def test_bad_service_and_country(sandbox):
    with pytest.raises(errors.BadService):
        buy(sandbox, "zz", 12)
    with pytest.raises(errors.BadCountry):
        buy(sandbox, "tg", 999)


def test_wrong_max_price(sandbox):
    with pytest.raises(errors.WrongMaxPrice) as info:
        buy(sandbox, "ds", 12, max_price=Decimal("0.05"))
    assert info.value.min_price == "0.0545"
    assert str(info.value) == "WRONG_MAX_PRICE:0.0545"
    assert buy(sandbox, "ds", 12, max_price=Decimal("0.0545")).cost == Decimal("0.0545")


# -- the code timeline -----------------------------------------------------------------


def test_code_arrives_after_delay_with_leading_zero(sandbox, clock):
    bought = buy(sandbox)
    assert bought.upstream_id == "1"
    clock.travel(DELAY - 1)
    assert sandbox.get_status("1") == WAIT
    clock.travel(1)
    answer = sandbox.get_status("1")
    assert answer.state is UpstreamState.CODE
    assert answer.code == sms_code(1, 1)
    assert len(answer.code) == 6 and answer.code.isdigit() and answer.code.startswith("0")


def test_another_sms(sandbox, clock):
    upstream_id = buy(sandbox).upstream_id
    clock.travel(DELAY)
    first = sandbox.get_status(upstream_id).code
    assert sandbox.set_status(upstream_id, 1) == SetStatusAnswer.READY
    assert sandbox.set_status(upstream_id, 3) == SetStatusAnswer.RETRY_GET
    assert sandbox.get_status(upstream_id) == StatusAnswer(UpstreamState.WAIT_RETRY, first)
    # repeating 3 while the SMS is on its way does not reschedule it
    clock.travel(DELAY / 2)
    assert sandbox.set_status(upstream_id, 3) == SetStatusAnswer.RETRY_GET
    clock.travel(DELAY / 2)
    second = sandbox.get_status(upstream_id)
    assert second == code_ok(sms_code(int(upstream_id), 2))
    assert second.code != first
    assert sandbox.set_status(upstream_id, 6) == SetStatusAnswer.ACTIVATION
    assert sandbox.get_status(upstream_id) == second


def test_retry_and_finish_need_a_code(sandbox):
    upstream_id = buy(sandbox).upstream_id
    with pytest.raises(errors.BadStatus):
        sandbox.set_status(upstream_id, 3)
    with pytest.raises(errors.BadStatus):
        sandbox.set_status(upstream_id, 6)


def test_finish_after_code(sandbox, clock):
    upstream_id = buy(sandbox).upstream_id
    clock.travel(DELAY)
    code = sandbox.get_status(upstream_id).code
    assert sandbox.set_status(upstream_id, 6) == SetStatusAnswer.ACTIVATION
    assert sandbox.get_status(upstream_id) == code_ok(code)
    assert sandbox.get_active_activations() == []
    for status in (1, 3, 6, 8):
        with pytest.raises(errors.NoActivation):
            sandbox.set_status(upstream_id, status)


def test_finish_while_waiting_for_another_sms(sandbox, clock):
    upstream_id = buy(sandbox).upstream_id
    clock.travel(DELAY)
    first = sandbox.get_status(upstream_id).code
    sandbox.set_status(upstream_id, 3)
    assert sandbox.set_status(upstream_id, 6) == SetStatusAnswer.ACTIVATION
    clock.travel(DELAY)
    assert sandbox.get_status(upstream_id) == code_ok(first)  # the second SMS never came


# -- cancel and expiry -------------------------------------------------------------------


def test_early_cancel_denied_then_allowed(sandbox, clock):
    upstream_id = buy(sandbox, "ot").upstream_id
    with pytest.raises(errors.EarlyCancelDenied):
        sandbox.set_status(upstream_id, 8)
    clock.travel(EARLY - 1)
    with pytest.raises(errors.EarlyCancelDenied):
        sandbox.set_status(upstream_id, -1)
    clock.travel(1)
    assert sandbox.set_status(upstream_id, 8) == SetStatusAnswer.CANCEL
    assert sandbox.get_status(upstream_id) == CANCELLED
    assert sandbox.get_active_activations() == []
    # a repeated cancel answers the same; anything else finds no activation
    assert sandbox.set_status(upstream_id, -1) == SetStatusAnswer.CANCEL
    for status in (1, 3, 6):
        with pytest.raises(errors.NoActivation):
            sandbox.set_status(upstream_id, status)


def test_cancel_stops_the_code(sandbox, clock):
    sandbox = SandboxUpstream(code_delay=300, lifetime=LIFETIME, early_cancel=EARLY)
    upstream_id = buy(sandbox).upstream_id
    clock.travel(EARLY)
    assert sandbox.set_status(upstream_id, 8) == SetStatusAnswer.CANCEL
    clock.travel(300)
    assert sandbox.get_status(upstream_id) == CANCELLED


def test_cancel_after_code_refused(sandbox, clock):
    upstream_id = buy(sandbox).upstream_id
    clock.travel(EARLY)
    assert sandbox.get_status(upstream_id).state is UpstreamState.CODE
    for status in (8, -1):
        with pytest.raises(errors.BadStatus):
            sandbox.set_status(upstream_id, status)


def test_expiry_without_code_counts_as_cancelled(sandbox, clock):
    upstream_id = buy(sandbox, "ot").upstream_id
    clock.travel(LIFETIME - 1)
    assert sandbox.get_status(upstream_id) == WAIT
    assert [a.upstream_id for a in sandbox.get_active_activations()] == [upstream_id]
    clock.travel(1)
    assert sandbox.get_status(upstream_id) == CANCELLED
    assert sandbox.get_active_activations() == []
    assert sandbox.get_balance() == STARTING_BALANCE  # refunded
    with pytest.raises(errors.NoActivation):
        sandbox.set_status(upstream_id, 1)
    assert sandbox.set_status(upstream_id, 8) == SetStatusAnswer.CANCEL


def test_expiry_after_code_counts_as_finished(app, clock):
    sandbox = SandboxUpstream(code_delay=700, lifetime=LIFETIME, early_cancel=EARLY)
    upstream_id = buy(sandbox).upstream_id
    clock.travel(700)
    code = sandbox.get_status(upstream_id).code
    sandbox.set_status(upstream_id, 3)  # the second SMS would be due after the end
    clock.travel(LIFETIME - 700 - 1)
    assert sandbox.get_status(upstream_id) == StatusAnswer(UpstreamState.WAIT_RETRY, code)
    assert len(sandbox.get_active_activations()) == 1
    clock.travel(1)
    assert sandbox.get_status(upstream_id) == code_ok(code)
    assert sandbox.get_active_activations() == []
    clock.travel(700)
    assert sandbox.get_status(upstream_id) == code_ok(code)
    with pytest.raises(errors.NoActivation):
        sandbox.set_status(upstream_id, 6)


def test_other_service_never_gets_a_code(sandbox, clock):
    upstream_id = buy(sandbox, "ot", 0).upstream_id
    for _ in range(4):
        clock.travel(LIFETIME / 5)
        assert sandbox.get_status(upstream_id) == WAIT
    with pytest.raises(errors.BadStatus):
        sandbox.set_status(upstream_id, 6)


# -- errors on ids and statuses ------------------------------------------------------------


@pytest.mark.parametrize("upstream_id", ["999", "abc", "", "-1", "1.5", "²", "9" * 30])
def test_unknown_ids(sandbox, upstream_id):
    buy(sandbox)
    with pytest.raises(errors.NoActivation):
        sandbox.get_status(upstream_id)
    with pytest.raises(errors.NoActivation):
        sandbox.set_status(upstream_id, 1)


@pytest.mark.parametrize("status", [0, 2, 4, 5, 7, 9, "x"])
def test_unknown_status_values(sandbox, status):
    upstream_id = buy(sandbox).upstream_id
    with pytest.raises(errors.BadStatus):
        sandbox.set_status(upstream_id, status)


# -- listing, balance, shared state ------------------------------------------------------


def test_active_activations(sandbox, clock):
    first = buy(sandbox, "tg", 12)
    second = buy(sandbox, "wa", 187)
    clock.travel(DELAY)
    sandbox.set_status(second.upstream_id, 3)
    third = buy(sandbox, "ot", 43)
    active = {a.upstream_id: a for a in sandbox.get_active_activations()}
    assert list(active) == [first.upstream_id, second.upstream_id, third.upstream_id]
    a = active[first.upstream_id]
    assert (a.phone, a.service, a.country_id, a.status) == (first.phone, "tg", 12, "2")
    assert a.code == sms_code(int(first.upstream_id), 1)
    assert active[second.upstream_id].status == "3"
    assert active[second.upstream_id].code == sms_code(int(second.upstream_id), 1)
    assert (active[third.upstream_id].status, active[third.upstream_id].code) == ("4", None)


def test_balance(sandbox, clock):
    assert sandbox.get_balance() == Decimal("1000.00")
    kept = buy(sandbox, "ds", 12)  # 0.0545, gets a code
    cancelled = buy(sandbox, "ot", 187)  # 0.80, cancelled
    assert sandbox.get_balance() == Decimal("999.1455")
    clock.travel(EARLY)
    sandbox.set_status(cancelled.upstream_id, 8)
    assert sandbox.get_balance() == Decimal("999.9455")
    sandbox.set_status(kept.upstream_id, 6)
    clock.travel(LIFETIME)
    assert sandbox.get_balance() == Decimal("999.9455")  # no refund once a code came


def test_callers_session_untouched(sandbox, clock):
    upstream_id = buy(sandbox).upstream_id
    sandbox.get_status(upstream_id)
    sandbox.get_active_activations()
    sandbox.get_balance()
    assert not db.session().in_transaction()


def test_state_shared_between_app_instances(app, tmp_path, clock):
    """Two apps on one database stand for two worker processes."""
    sandbox = SandboxUpstream(code_delay=DELAY, lifetime=LIFETIME, early_cancel=EARLY)
    bought = buy(sandbox, "go", 43)
    first_engine = db.engine
    other = create_app(make_config(tmp_path))
    assert other.config["SQLALCHEMY_DATABASE_URI"] == app.config["SQLALCHEMY_DATABASE_URI"]
    try:
        with other.app_context():
            assert db.engine is not first_engine  # its own connection pool
            peer = SandboxUpstream(code_delay=DELAY, lifetime=LIFETIME, early_cancel=EARLY)
            assert peer.get_status(bought.upstream_id) == WAIT
            clock.travel(DELAY)
            code = peer.get_status(bought.upstream_id).code
            assert peer.set_status(bought.upstream_id, 3) == SetStatusAnswer.RETRY_GET
            [active] = peer.get_active_activations()
            assert active.phone == bought.phone
        assert sandbox.get_status(bought.upstream_id) == StatusAnswer(
            UpstreamState.WAIT_RETRY, code
        )
    finally:
        with other.app_context():
            db.engine.dispose()


def test_concurrent_status_changes_apply_once(app, sandbox, clock):
    """Racing requests for another SMS schedule one SMS (the row is locked per call)."""
    from concurrent.futures import ThreadPoolExecutor

    upstream_id = buy(sandbox).upstream_id
    clock.travel(DELAY)

    def request_another():
        with app.app_context():
            return sandbox.set_status(upstream_id, 3)

    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda _: request_another(), range(8)))
    assert answers == [SetStatusAnswer.RETRY_GET] * 8
    clock.travel(DELAY)
    assert sandbox.get_status(upstream_id) == code_ok(sms_code(int(upstream_id), 2))
