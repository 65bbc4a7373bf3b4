"""`orderId`: taken only by a purchase that was charged and not refunded as failed, so that
the retry the protocol invites after NO_NUMBERS or WRONG_MAX_PRICE goes through, while
concurrent purchases with one id still buy at most once."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from reseller.extensions import db
from reseller.models import Activation, ActivationEvent, LedgerEntry
from reseller.services import worker
from reseller.services.ledger import verify_ledger
from tests.conftest import api_key_of, run_threads
from tests.fake_grizzly import Fault
from tests.test_lifecycle import balance


def ledger_ok(runner) -> None:
    assert verify_ledger() == []
    assert runner.invoke(args=["ledger", "verify"]).exit_code == 0


def charges() -> int:
    return db.session.execute(
        select(func.count(LedgerEntry.id)).where(LedgerEntry.kind == "purchase")
    ).scalar_one()


@pytest.mark.parametrize("refusal", ["NO_NUMBERS", "NO_BALANCE", Fault.PROHIBITED])
def test_a_refused_purchase_gives_its_order_id_back(gapi, fake, runner, refusal):
    fake.script("getNumberV2", refusal)
    assert gapi.json("getNumberV2", service="tg", country="12", orderId="o-1") == {
        "error": "NO_NUMBERS"
    }
    failed = db.session.execute(select(Activation)).scalar_one()
    assert failed.status == "failed" and failed.order_id is None
    note = db.session.execute(
        select(ActivationEvent.note).where(ActivationEvent.to_status == "failed")
    ).scalar_one()
    assert "orderId o-1 released" in note
    retry = gapi.json("getNumberV2", service="tg", country="12", orderId="o-1")
    assert "activationId" in retry, retry
    # Taken now: the bought number keeps it.
    again = gapi.json("getNumberV2", service="tg", country="12", orderId="o-1")
    assert again == {"error": "ORDER_ALREADY_EXISTS"}
    assert (
        balance(gapi.user_id) == 100_000 - db.session.get(Activation, retry["activationId"]).price
    )
    ledger_ok(runner)


def test_retry_with_a_higher_max_price_after_wrong_max_price(gapi, fake, runner):
    fake.script("getNumberV2", "WRONG_MAX_PRICE:0.50")
    assert (
        gapi.text("getNumberV2", service="tg", country="12", orderId="o-2", maxPrice="0.39")
        == "WRONG_MAX_PRICE:0.65"
    )
    body = gapi("getNumberV2", service="tg", country="12", orderId="o-2", maxPrice="0.65")
    assert body.get_json()["activationId"], body.get_data(as_text=True)
    assert gapi.text("getNumberV2", service="tg", country="12", orderId="o-2") == (
        "ORDER_ALREADY_EXISTS"
    )
    ledger_ok(runner)


def test_a_lost_purchase_keeps_its_order_id_until_settled(gapi, fake, clock, runner):
    """Its outcome is unknown: a retry could buy twice, so the id stays taken until the
    worker refunds it as failed."""
    fake.script("getNumberV2", Fault.HTTP_500, process=False)
    assert gapi.text("getNumberV2", service="tg", country="12", orderId="o-3") == "ERROR_SQL"
    assert gapi.text("getNumberV2", service="tg", country="12", orderId="o-3") == (
        "ORDER_ALREADY_EXISTS"
    )
    clock.travel(worker.settle_after() + 1)
    assert "settled 1," in runner.invoke(args=["worker", "--once"]).output
    retry = gapi.json("getNumberV2", service="tg", country="12", orderId="o-3")
    assert "activationId" in retry, retry
    ledger_ok(runner)


def test_cancelled_purchase_keeps_its_order_id(gapi, fake, clock, runner):
    """Cancelled is not failed: the purchase happened, its id stays taken."""
    fake.code_delay = None
    activation_id = gapi.json("getNumberV2", service="tg", country="12", orderId="o-4")[
        "activationId"
    ]
    clock.travel(121)
    assert gapi.text("setStatus", id=activation_id, status="8") == "ACCESS_CANCEL"
    assert gapi.text("getNumberV2", service="tg", country="12", orderId="o-4") == (
        "ORDER_ALREADY_EXISTS"
    )
    ledger_ok(runner)


def _concurrent_purchases(app, key: str, n: int, *, retries: int = 0) -> list[str]:
    """`n` threads buy with orderId "same", each retrying up to `retries` times while the
    answer is ORDER_ALREADY_EXISTS (as a client does whose first attempt timed out)."""
    db.session.remove()

    def buy(i):
        client = app.test_client()
        for _attempt in range(retries + 1):
            answer = client.get(
                "/stubs/handler_api.php",
                query_string={
                    "api_key": key,
                    "action": "getNumberV2",
                    "service": "tg",
                    "country": "12",
                    "orderId": "same",
                },
            ).get_data(as_text=True)
            if answer != "ORDER_ALREADY_EXISTS":
                break
            time.sleep(0.02)
        return answer

    return run_threads(n, buy)


def test_concurrent_purchases_with_one_order_id_buy_once(app, gapi, fake, runner):
    results = _concurrent_purchases(app, gapi.key, 8)
    bought = [r for r in results if r.startswith("{")]
    assert len(bought) == 1, results
    assert results.count("ORDER_ALREADY_EXISTS") == 7, results
    assert fake.count("getNumberV2") == 1
    assert charges() == 1
    assert balance(gapi.user_id) == 100_000 - db.session.execute(select(Activation.price)).scalar()
    ledger_ok(runner)


def test_concurrent_purchases_after_a_refusal_buy_once(app, gapi, fake, runner):
    """The first purchase to hold the id is refused upstream and gives it back while the
    others keep retrying: exactly one of them then buys, once."""
    fake.code_delay = None
    fake.latency = 0.1  # keep the refused one in flight while the others retry
    fake.script("getNumberV2", "NO_NUMBERS")
    results = _concurrent_purchases(app, gapi.key, 8, retries=40)
    bought = [r for r in results if r.startswith("{")]
    assert len(bought) == 1, results
    assert results.count("NO_NUMBERS") == 1, results
    assert results.count("ORDER_ALREADY_EXISTS") == 6, results
    assert fake.count("getNumberV2") == 2
    assert [a.state for a in fake.activations.values()] == ["wait_code"]
    assert charges() == 2  # the refused one, refunded, and the bought one
    held = db.session.execute(select(Activation).where(Activation.order_id == "same")).scalar_one()
    assert held.status == "allocated"
    assert balance(gapi.user_id) == 100_000 - held.price
    ledger_ok(runner)


def test_order_ids_stay_per_customer_when_released(app, client, gapi, fake, make_user):
    from tests.conftest import Api

    other = make_user(email="other@example.com", balance="10.00")
    fake.script("getNumberV2", "NO_NUMBERS")
    assert gapi.text("getNumberV2", service="tg", country="12", orderId="x") == "NO_NUMBERS"
    theirs = Api(client, api_key_of(other)).json(
        "getNumberV2", service="tg", country="12", orderId="x"
    )
    assert "activationId" in theirs
    assert "activationId" in gapi.json("getNumberV2", service="tg", country="12", orderId="x")
