"""Only ACCESS_CANCEL (or the upstream reporting STATUS_CANCEL afterwards) confirms a cancel:
any other ACCESS_* answer to status 8 leaves the activation, and the money, as they were."""

from __future__ import annotations

import pytest

from reseller.extensions import db
from reseller.models import Activation
from reseller.services import activations
from reseller.services.ledger import verify_ledger
from tests.test_lifecycle import balance, refunds, status_of

NOT_A_CANCEL = ["ACCESS_ACTIVATION", "ACCESS_READY", "ACCESS_RETRY_GET"]


def ledger_ok(runner) -> None:
    assert verify_ledger() == []
    assert runner.invoke(args=["ledger", "verify"]).exit_code == 0


@pytest.fixture
def waiting(gapi, fake, clock):
    """An activation waiting for its code, past the early-cancel window: (ours, upstream)."""
    fake.code_delay = None
    activation_id = gapi.json("getNumber", service="tg", country="12")["activationId"]
    clock.travel(121)
    return activation_id, int(db.session.get(Activation, activation_id).upstream_id)


@pytest.mark.parametrize("answer", NOT_A_CANCEL)
def test_cancel_answered_with_another_access_token_is_refused(gapi, fake, runner, waiting, answer):
    activation_id, upstream_id = waiting
    charged = balance(gapi.user_id)
    fake.script("setStatus", answer, answer)  # the number stays live upstream
    assert gapi.text("setStatus", id=activation_id, status="8") == "BAD_STATUS"
    assert gapi.json("setStatus", id=activation_id, status="8") == {"error": "BAD_STATUS"}
    assert status_of(activation_id) == "allocated"
    assert refunds(activation_id) == 0 and balance(gapi.user_id) == charged
    assert fake.activations[upstream_id].state == "wait_code"
    # The next poll asks the upstream at once (a code may be why it did not cancel).
    assert db.session.get(Activation, activation_id).next_poll_at is None
    ledger_ok(runner)
    # A real cancel then goes through, refunded once.
    assert gapi.text("setStatus", id=activation_id, status="8") == "ACCESS_CANCEL"
    assert refunds(activation_id) == 1
    assert fake.activations[upstream_id].state == "cancelled"
    ledger_ok(runner)


def test_cancel_with_an_odd_answer_that_the_upstream_did_carry_out(gapi, fake, runner, waiting):
    """ACCESS_READY in answer, but the upstream then reports STATUS_CANCEL: cancelled."""
    activation_id, upstream_id = waiting
    fake.script("setStatus", "ACCESS_READY", process=True)
    assert gapi.text("setStatus", id=activation_id, status="8") == "ACCESS_CANCEL"
    assert fake.activations[upstream_id].state == "cancelled"
    assert status_of(activation_id) == "cancelled" and refunds(activation_id) == 1
    ledger_ok(runner)


@pytest.mark.parametrize("answer", NOT_A_CANCEL)
def test_expiry_answered_with_another_access_token_waits(
    gapi, fake, clock, runner, waiting, answer
):
    activation_id, upstream_id = waiting
    charged = balance(gapi.user_id)
    clock.travel(1200)
    fake.script("setStatus", answer)
    assert activations.expire(activation_id) is False
    assert status_of(activation_id) == "allocated"
    assert refunds(activation_id) == 0 and balance(gapi.user_id) == charged
    assert fake.activations[upstream_id].state == "wait_code"
    ledger_ok(runner)
    # The next worker pass cancels for real and refunds once.
    assert "expired 1" in runner.invoke(args=["worker", "--once"]).output
    assert status_of(activation_id) == "expired" and refunds(activation_id) == 1
    assert fake.activations[upstream_id].state == "cancelled"
    ledger_ok(runner)
