"""The worker's settlement of purchases whose answer never came, and its orphan sweep,
against the fake GrizzlySMS: stale holds are refunded whatever the upstream's active list
says, and only numbers that can be tied to one of our lost purchases are cancelled."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from reseller.extensions import db
from reseller.models import Activation, ActivationEvent
from reseller.services import settings, worker
from reseller.services.ledger import verify_ledger
from reseller.upstream.sms_activate import SmsActivateClient as GrizzlyClient
from tests.fake_grizzly import Fault
from tests.test_lifecycle import balance, refunds, status_of


def run_worker(runner) -> str:
    """One worker pass; its summary (the exit code is 1 when a step reported an error)."""
    result = runner.invoke(args=["worker", "--once"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.output


def ledger_ok(runner) -> None:
    assert verify_ledger() == []
    assert runner.invoke(args=["ledger", "verify"]).exit_code == 0


def only_activation() -> Activation:
    db.session.expire_all()
    return db.session.execute(select(Activation)).scalar_one()


def admin_page(client, make_user, auth, url: str) -> str:
    make_user(email="boss@example.com", is_admin=True)
    auth.login("boss@example.com")
    response = client.get(url)
    assert response.status_code == 200
    return response.get_data(as_text=True)


# --- item 1: stale holds do not wait for the active list --------------------------------


def test_stale_hold_is_refunded_when_the_active_list_is_unavailable(
    gapi, fake, clock, runner, client, make_user, auth
):
    """HTTP 500 with nothing bought, then getActiveActivations answers BAD_ACTION: the hold
    is still refunded, after the longer grace, and recorded as unconfirmed."""
    fake.script("getNumberV2", Fault.HTTP_500, process=False)
    assert gapi.text("getNumber", service="tg", country="12") == "ERROR_SQL"
    activation = only_activation()
    assert activation.status == "unknown"
    held = balance(gapi.user_id)
    assert held == 100_000 - activation.price
    fake.script("getActiveActivations", *["BAD_ACTION"] * 2)

    clock.travel(worker.settle_after() + 1)
    output = run_worker(runner)
    assert "settled 0" in output and "active activations: BAD_ACTION" in output, output
    assert status_of(activation.id) == "unknown" and balance(gapi.user_id) == held
    ledger_ok(runner)

    clock.travel(settings.get("activation_lifetime"))
    output = run_worker(runner)
    assert "settled 1 (1 without upstream confirmation)" in output, output
    settled = only_activation()
    assert settled.status == "failed"
    assert settled.settlement == "unconfirmed"
    assert balance(gapi.user_id) == 100_000
    assert refunds(activation.id) == 1
    note = db.session.execute(
        select(ActivationEvent.note).where(
            ActivationEvent.activation_id == activation.id, ActivationEvent.to_status == "failed"
        )
    ).scalar_one()
    assert "without upstream confirmation" in note and "BAD_ACTION" in note
    ledger_ok(runner)
    # A further pass changes nothing.
    assert "settled 0" in run_worker(runner)
    assert refunds(activation.id) == 1
    ledger_ok(runner)

    # The console shows it: a notice on the overview, a filter and a badge in the list.
    overview = admin_page(client, make_user, auth, "/admin")
    assert "1 purchase(s) settled without upstream confirmation" in overview
    listed = client.get("/admin/activations?settlement=unconfirmed").get_data(as_text=True)
    assert f"#{activation.id}" in listed and ">unconfirmed<" in listed
    assert "No activations match." in client.get("/admin/activations?settlement=listed").get_data(
        as_text=True
    )
    detail = client.get(f"/admin/activations/{activation.id}").get_data(as_text=True)
    assert "settled without upstream confirmation" in detail


def test_stale_hold_is_refunded_at_once_when_the_list_returns(gapi, fake, clock, runner):
    """A list that is unavailable for one pass only delays the refund to the next pass."""
    fake.script("getNumberV2", Fault.HTTP_500, process=False)
    assert gapi.text("getNumber", service="tg", country="12") == "ERROR_SQL"
    fake.script("getActiveActivations", Fault.GARBAGE)
    clock.travel(worker.settle_after() + 1)
    assert "settled 0" in run_worker(runner)
    output = run_worker(runner)
    assert "settled 1," in output, output
    assert only_activation().settlement == "listed"
    assert balance(gapi.user_id) == 100_000
    ledger_ok(runner)


def test_blind_settlement_of_a_number_actually_bought(gapi, fake, clock, runner):
    """The risk the longer grace takes: a number was bought, its answer lost, and the list
    stays unreadable. The customer is refunded once, when the number's lifetime has run out
    upstream, which then refunds us by itself (nothing delivered a code)."""
    fake.code_delay = None
    upstream_balance = fake.balance
    fake.script("getNumberV2", Fault.DROP, process=True)
    assert gapi.text("getNumber", service="tg", country="12") == "ERROR_SQL"
    assert len(fake.activations) == 1 and fake.balance < upstream_balance
    fake.script("getActiveActivations", *["BAD_ACTION"] * 2)
    clock.travel(worker.settle_after() + 1)
    assert "settled 0" in run_worker(runner)
    clock.travel(settings.get("activation_lifetime"))
    fake.advance(fake.lifetime)
    assert "settled 1 (1 without upstream confirmation)" in run_worker(runner)
    assert balance(gapi.user_id) == 100_000 and refunds(only_activation().id) == 1
    ledger_ok(runner)
    # The list is back: the number is gone upstream; nothing to release, nothing foreign.
    output = run_worker(runner)
    assert "orphans cancelled 0, foreign 0" in output and "errors" not in output, output
    assert fake.balance == upstream_balance
    ledger_ok(runner)


# --- item 2: the orphan sweep cancels only what it can tie to our lost purchases --------


def operator_buys(fake, service="tg", country=12) -> str:
    """A purchase on the same upstream key that is not ours (web interface, staging)."""
    client = GrizzlyClient("test-key", url=fake.url, retries=0)
    return client.get_number(service, country).upstream_id


def test_numbers_we_did_not_buy_are_left_alone_and_listed_as_foreign(
    gapi, fake, clock, runner, client, make_user, auth
):
    fake.code_delay = None
    mine = gapi.json("getNumber", service="tg", country="12")["activationId"]
    theirs = operator_buys(fake)
    for _ in range(3):
        clock.travel(worker.settle_after() + 1)
        output = run_worker(runner)
    assert "orphans cancelled 0" in output and "foreign 1" in output, output
    assert fake.activations[int(theirs)].state == "wait_code"
    assert status_of(mine) == "allocated"
    ledger_ok(runner)
    listed = admin_page(client, make_user, auth, "/admin/activations")
    assert "Foreign upstream activations" in listed and theirs in listed
    assert "1 foreign upstream activation(s)" in client.get("/admin").get_data(as_text=True)


def test_only_the_number_bought_for_a_lost_purchase_is_cancelled(gapi, fake, clock, runner):
    """Our lost purchase tg/12, and the operator's numbers: tg/12 bought before it, wa/12 and
    tg/16 bought in its window. Only ours is released."""
    fake.code_delay = None
    before = operator_buys(fake, "tg", 12)
    run_worker(runner)  # reads the list: `before` was there before our purchase
    clock.travel(10)
    fake.script("getNumberV2", Fault.DROP, process=True)
    assert gapi.text("getNumber", service="tg", country="12") == "ERROR_SQL"
    ours = max(fake.activations)
    other_service = operator_buys(fake, "wa", 12)
    other_country = operator_buys(fake, "tg", 16)
    clock.travel(worker.settle_after() + 1)
    output = run_worker(runner)
    assert "settled 1," in output and "orphans cancelled 0" in output, output
    assert balance(gapi.user_id) == 100_000
    clock.travel(worker.settle_after() + 1)
    output = run_worker(runner)
    assert "orphans cancelled 1" in output and "foreign 3" in output, output
    assert fake.activations[ours].state == "cancelled"
    for upstream_id in (before, other_service, other_country):
        assert fake.activations[int(upstream_id)].state == "wait_code", upstream_id
    lost = only_activation()
    assert lost.upstream_id == str(ours) and lost.status == "failed"
    assert refunds(lost.id) == 1
    foreign, _ = worker.foreign_activations()
    assert {f.upstream_id for f in foreign} == {before, other_service, other_country}
    # Later passes cancel nothing more and never refund again.
    clock.travel(worker.settle_after() + 1)
    assert "orphans cancelled 0" in run_worker(runner)
    assert refunds(lost.id) == 1
    ledger_ok(runner)


def test_no_more_numbers_are_cancelled_than_purchases_were_lost(gapi, fake, clock, runner):
    fake.code_delay = None
    run_worker(runner)
    fake.script("getNumberV2", Fault.DROP, process=True)
    assert gapi.text("getNumber", service="tg", country="12") == "ERROR_SQL"
    operator_buys(fake, "tg", 12)  # same service and country, same window
    for _ in range(2):
        clock.travel(worker.settle_after() + 1)
        output = run_worker(runner)
    assert "orphans cancelled 1" in output and "foreign 1" in output, output
    states = sorted(a.state for a in fake.activations.values())
    assert states == ["cancelled", "wait_code"]
    ledger_ok(runner)


@pytest.mark.parametrize("answer", ["EARLY_CANCEL_DENIED", Fault.HTTP_500])
def test_a_tied_number_whose_cancel_fails_is_released_on_a_later_pass(
    gapi, fake, clock, runner, answer
):
    """GrizzlySMS refuses a cancel in its first minutes: the tie is kept and the release
    is retried, never tied to a second number or refunded twice."""
    fake.code_delay = None
    fake.script("getNumberV2", Fault.DROP, process=True)
    assert gapi.text("getNumber", service="tg", country="12") == "ERROR_SQL"
    clock.travel(worker.settle_after() + 1)
    run_worker(runner)
    fake.script("setStatus", answer)
    clock.travel(worker.settle_after() + 1)
    output = run_worker(runner)
    assert "orphans cancelled 0" in output and "foreign 0" in output, output
    (bought,) = fake.activations.values()
    assert bought.state == "wait_code"
    assert only_activation().upstream_id == str(bought.id)
    output = run_worker(runner)
    assert "orphans cancelled 1" in output, output
    assert bought.state == "cancelled"
    assert refunds(only_activation().id) == 1
    ledger_ok(runner)
