"""The activation lifecycle: the state matrix, money on every path, upstream faults,
expiry and early cancel with injected time, the poll cap, and concurrency."""

import pytest
from sqlalchemy import func, select

from reseller.extensions import db
from reseller.models import Activation, ActivationEvent, LedgerEntry, Provider, User
from reseller.models import ActivationStatus as S
from reseller.services import activations, catalog, settings
from reseller.services.activations import TRANSITIONS
from reseller.services.ledger import verify_ledger
from reseller.services.provider import use_upstream
from reseller.upstream.sms_activate import SmsActivateClient as GrizzlyClient
from tests.conftest import Api, api_key_of, driver_statements, run_threads
from tests.fake_grizzly import FakeGrizzly, Fault, Reply


def balance(user_id):
    db.session.expire_all()
    return db.session.get(User, user_id).balance


def refunds(activation_id=None):
    stmt = select(func.count(LedgerEntry.id)).where(LedgerEntry.kind == "refund")
    if activation_id is not None:
        stmt = stmt.where(LedgerEntry.activation_id == activation_id)
    return db.session.execute(stmt).scalar_one()


def status_of(activation_id):
    db.session.expire_all()
    return db.session.get(Activation, activation_id).status


# --- the state table, as a whole matrix ---------------------------------------------


def _activation_in(user, state: S) -> int:
    from reseller.models import LedgerKind
    from reseller.services import wallet

    activation = Activation(
        user_id=user.id,
        service="tg",
        country_id=12,
        status=state.value,
        price=5000,
        upstream_name="sandbox",
        upstream_id="1",
        phone="15550000000",
    )
    db.session.add(activation)
    db.session.flush()
    wallet.debit(user.id, 5000, kind=LedgerKind.PURCHASE, activation_id=activation.id)
    if state in activations.REFUNDING_STATES:  # a closed-with-refund row has its refund
        wallet.credit(user.id, 5000, kind=LedgerKind.REFUND, activation_id=activation.id)
    db.session.commit()
    return activation.id


@pytest.mark.parametrize("source", list(S))
@pytest.mark.parametrize("target", list(S))
def test_transition_matrix(make_user, source, target):
    user = make_user(balance="1.00")
    activation_id = _activation_in(user, source)
    before = balance(user.id)
    moved = activations._transition(activation_id, target, actor="test")
    db.session.commit()
    assert moved == (target in TRANSITIONS[source])
    assert status_of(activation_id) == (target.value if moved else source.value)
    refunded = moved and target in activations.REFUNDING_STATES
    already = 1 if source in activations.REFUNDING_STATES else 0
    assert refunds(activation_id) == (1 if refunded else already)
    assert balance(user.id) == before + (5000 if refunded else 0)
    events = db.session.execute(
        select(func.count(ActivationEvent.id)).where(ActivationEvent.activation_id == activation_id)
    ).scalar_one()
    assert events == (1 if moved else 0)
    # A second attempt at the same move never succeeds twice, so never refunds twice.
    assert (
        activations._transition(activation_id, target, actor="test") is False
        or target in TRANSITIONS[target]
    )
    db.session.commit()
    assert refunds(activation_id) == (1 if refunded else already)
    assert verify_ledger() == []


def test_terminal_states_are_terminal():
    for state in (S.COMPLETED, S.CANCELLED, S.EXPIRED, S.FAILED):
        assert TRANSITIONS[state] == frozenset()


# --- the customer-visible matrix: every setStatus in every state --------------------


def _make_state(api, clock, state):
    """Drive a sandbox activation into `state` through the API; returns its id."""
    if state in ("allocated_early", "allocated_late", "cancelled", "expired"):
        activation_id = api.json("getNumber", service="ot", country="12")["activationId"]
        if state == "allocated_late":
            clock.travel(121)
        elif state == "cancelled":
            clock.travel(121)
            assert api.text("setStatus", id=activation_id, status="8") == "ACCESS_CANCEL"
        elif state == "expired":
            clock.travel(1201)
            assert api.text("getStatus", id=activation_id) == "STATUS_CANCEL"
        return activation_id
    activation_id = api.json("getNumber", service="tg", country="12")["activationId"]
    clock.travel(6)
    assert api.text("getStatus", id=activation_id).startswith("STATUS_OK:")
    if state == "retry_wait":
        assert api.text("setStatus", id=activation_id, status="3") == "ACCESS_RETRY_GET"
    elif state == "completed":
        assert api.text("setStatus", id=activation_id, status="6") == "ACCESS_ACTIVATION"
    return activation_id


SET_STATUS_MATRIX = {
    # state: {status: expected classic answer}
    "allocated_early": {
        "1": "ACCESS_READY",
        "3": "BAD_STATUS",
        "6": "BAD_STATUS",
        "8": "EARLY_CANCEL_DENIED",
        "-1": "EARLY_CANCEL_DENIED",
    },
    "allocated_late": {
        "1": "ACCESS_READY",
        "3": "BAD_STATUS",
        "6": "BAD_STATUS",
        "8": "ACCESS_CANCEL",
        "-1": "ACCESS_CANCEL",
    },
    "code_received": {
        "1": "ACCESS_READY",
        "3": "ACCESS_RETRY_GET",
        "6": "ACCESS_ACTIVATION",
        "8": "BAD_STATUS",
        "-1": "BAD_STATUS",
    },
    "retry_wait": {
        "1": "ACCESS_READY",
        "3": "ACCESS_RETRY_GET",
        "6": "ACCESS_ACTIVATION",
        "8": "BAD_STATUS",
        "-1": "BAD_STATUS",
    },
    "completed": {
        "1": "BAD_STATUS",
        "3": "BAD_STATUS",
        "6": "ACCESS_ACTIVATION",
        "8": "BAD_STATUS",
        "-1": "BAD_STATUS",
    },
    "cancelled": {
        "1": "BAD_STATUS",
        "3": "BAD_STATUS",
        "6": "BAD_STATUS",
        "8": "ACCESS_CANCEL",
        "-1": "ACCESS_CANCEL",
    },
    "expired": {
        "1": "BAD_STATUS",
        "3": "BAD_STATUS",
        "6": "BAD_STATUS",
        "8": "ACCESS_CANCEL",
        "-1": "ACCESS_CANCEL",
    },
}


@pytest.mark.parametrize("state", list(SET_STATUS_MATRIX))
@pytest.mark.parametrize("status", ["1", "3", "6", "8", "-1"])
def test_set_status_matrix(api, customer, clock, state, status):
    activation_id = _make_state(api, clock, state)
    refunds_before = refunds(activation_id)
    balance_before = balance(customer.id)
    answer = api.text("setStatus", id=activation_id, status=status)
    assert answer == SET_STATUS_MATRIX[state][status]
    newly_refunded = state == "allocated_late" and status in ("8", "-1")
    assert refunds(activation_id) == refunds_before + (1 if newly_refunded else 0)
    assert refunds(activation_id) <= 1
    price = db.session.get(Activation, activation_id).price
    assert balance(customer.id) == balance_before + (price if newly_refunded else 0)
    assert verify_ledger() == []


def test_early_cancel_window_is_configurable(api, clock):
    from reseller.services import settings

    settings.store("early_cancel_window", "10")
    db.session.commit()
    activation_id = api.json("getNumber", service="ot", country="12")["activationId"]
    assert api.text("setStatus", id=activation_id, status="8") == "EARLY_CANCEL_DENIED"
    clock.travel(11)
    assert api.text("setStatus", id=activation_id, status="8") == "ACCESS_CANCEL"


def test_expiry_refunds_once_through_the_worker(api, customer, clock, runner):
    activation_id = api.json("getNumber", service="ot", country="12")["activationId"]
    charged = balance(customer.id)
    clock.travel(1201)
    result = runner.invoke(args=["worker", "--once"])
    assert result.exit_code == 0, result.output
    assert "expired 1" in result.output
    assert status_of(activation_id) == "expired"
    assert balance(customer.id) == charged + db.session.get(Activation, activation_id).price
    runner.invoke(args=["worker", "--once"])
    assert api.text("getStatus", id=activation_id) == "STATUS_CANCEL"
    assert refunds(activation_id) == 1
    assert runner.invoke(args=["ledger", "verify"]).exit_code == 0


def test_expiry_with_a_code_completes_without_refund(api, clock, runner):
    activation_id = api.json("getNumber", service="tg", country="12")["activationId"]
    clock.travel(6)
    api.text("getStatus", id=activation_id)
    clock.travel(1300)
    runner.invoke(args=["worker", "--once"])
    assert status_of(activation_id) == "completed"
    assert refunds(activation_id) == 0


# --- the GrizzlySMS client against the fake upstream (fixtures `fake`, `gapi`: conftest) --


def test_purchase_through_grizzly_sends_our_price_as_max_price(gapi, fake):
    body = gapi.text("getNumber", service="tg", country="12")
    assert body.startswith("ACCESS_NUMBER:")
    call = [c for c in fake.calls if c.action == "getNumberV2"][-1]
    activation = db.session.get(Activation, int(body.split(":")[1]))
    assert call.params["maxPrice"] == "0.39"  # 0.30 + 30 % — we never pay more than we charge
    assert activation.upstream_cost == 3000
    assert activation.upstream_id.isdigit()
    assert activation.upstream_id != str(activation.id)


@pytest.mark.parametrize(
    "answer, classic",
    [
        ("NO_NUMBERS", "NO_NUMBERS"),
        ("NO_BALANCE", "NO_NUMBERS"),
        ("BAD_SERVICE", "BAD_SERVICE"),
        (Fault.PROHIBITED, "NO_NUMBERS"),
        ("BANNED:'2026-11-25 10-00-00'", "ERROR_SQL"),
        ("USERS_IP_IS_NOT_ALLOWED", "ERROR_SQL"),
    ],
)
def test_definite_purchase_failures_refund_at_once(gapi, fake, answer, classic):
    fake.script("getNumberV2", answer)
    assert gapi.text("getNumber", service="tg", country="12") == classic
    activation = db.session.execute(select(Activation)).scalar_one()
    assert activation.status == "failed"
    assert balance(gapi.user_id) == 100_000
    assert refunds(activation.id) == 1
    assert verify_ledger() == []


def test_upstream_price_rise_answers_wrong_max_price_and_refunds(gapi, fake):
    fake.script("getNumberV2", "WRONG_MAX_PRICE:0.50")
    assert gapi.text("getNumber", service="tg", country="12") == "WRONG_MAX_PRICE:0.65"
    assert balance(gapi.user_id) == 100_000
    # The cache learnt the new cost: the next purchase is quoted at the new price.
    body = gapi.text("getNumber", service="tg", country="12", maxPrice="0.65")
    assert body.startswith("ACCESS_NUMBER:")
    assert verify_ledger() == []


@pytest.mark.parametrize(
    "fault", [Fault.SLOW, Fault.HTTP_500, Fault.GARBAGE, Fault.TRUNCATED_JSON, Fault.DROP]
)
def test_unknown_purchase_outcome_keeps_the_hold_until_settled(gapi, fake, clock, runner, fault):
    fake.code_delay = None
    fake.script("getNumberV2", fault, process=True)
    assert gapi.text("getNumber", service="tg", country="12") == "ERROR_SQL"
    activation = db.session.execute(select(Activation)).scalar_one()
    assert activation.status == "unknown"
    assert balance(gapi.user_id) == 100_000 - activation.price  # held, not refunded
    assert verify_ledger() == []
    # The upstream did sell a number that nobody holds: the worker settles both sides.
    upstream_active = [
        a for a in fake.activations.values() if a.state not in ("cancelled", "finished")
    ]
    assert len(upstream_active) == 1
    clock.travel(120)
    # First pass: the purchase is refunded; the orphan is noted, not yet cancelled, in
    # case a late answer is still on its way to a web worker.
    result = runner.invoke(args=["worker", "--once"])
    assert "settled 1" in result.output and "orphans cancelled 0" in result.output, result.output
    clock.travel(120)
    result = runner.invoke(args=["worker", "--once"])
    assert "settled 0" in result.output and "orphans cancelled 1" in result.output, result.output
    assert status_of(activation.id) == "failed"
    assert balance(gapi.user_id) == 100_000
    assert all(a.state == "cancelled" for a in fake.activations.values())
    assert runner.invoke(args=["ledger", "verify"]).exit_code == 0


def test_unknown_outcome_when_nothing_was_bought(gapi, fake, clock, runner):
    fake.script("getNumberV2", Fault.HTTP_500, process=False)
    assert gapi.text("getNumber", service="tg", country="12") == "ERROR_SQL"
    assert fake.activations == {}
    clock.travel(200)
    result = runner.invoke(args=["worker", "--once"])
    assert "settled 1" in result.output and "orphans cancelled 0" in result.output
    assert balance(gapi.user_id) == 100_000
    assert runner.invoke(args=["ledger", "verify"]).exit_code == 0


def test_connection_refused_refunds_at_once(app, client, make_user):
    from tests.conftest import Api

    dead = GrizzlyClient(
        "k",
        url="http://127.0.0.1:9/stubs/handler_api.php",
        connect_timeout=0.3,
        read_timeout=0.3,
        retries=0,
    )
    with FakeGrizzly() as fake:
        live = GrizzlyClient("test-key", url=fake.url)
        catalog.refresh(live)
    use_upstream(app, dead)
    user = make_user(balance="10.00")
    api = Api(client, api_key_of(user))
    assert api.text("getNumber", service="tg", country="12") == "ERROR_SQL"
    assert db.session.execute(select(Activation.status)).scalar_one() == "failed"
    assert balance(user.id) == 100_000


# Room for the client's retry after a slow answer (2 s read timeout): the default 2 s web
# budget would end the poll there instead (tests/test_poll_budget.py).
@pytest.mark.parametrize("config_overrides", [{"WEB_POLL_BUDGET": 10}])
def test_poll_faults_change_nothing(gapi, fake, clock):
    fake.code_delay = None
    activation_id = gapi.json("getNumber", service="tg", country="12")["activationId"]
    for fault, tries in (
        (Fault.SLOW, 2),
        (Fault.HTTP_500, 2),
        (Fault.DROP, 2),  # transport: retried once
        (Fault.GARBAGE, 1),
        (Fault.PROHIBITED, 1),
    ):
        fake.script("getStatus", *[fault] * tries)
        clock.travel(4)
        assert gapi.text("getStatus", id=activation_id) == "STATUS_WAIT_CODE"
        assert status_of(activation_id) == "allocated"
    fake.deliver_code(db.session.get(Activation, activation_id).upstream_id, "0042")
    clock.travel(4)
    assert gapi.text("getStatus", id=activation_id) == "STATUS_OK:0042"
    assert verify_ledger() == []


def test_cancel_refused_upstream_means_no_refund(gapi, fake, clock):
    fake.code_delay = None
    activation_id = gapi.json("getNumber", service="tg", country="12")["activationId"]
    clock.travel(121)
    for answer, expected in (
        ("EARLY_CANCEL_DENIED", "EARLY_CANCEL_DENIED"),
        ("STATUS_ALREADY_CHANGED", "BAD_STATUS"),
        (Fault.PROHIBITED, "BAD_STATUS"),
        (Fault.HTTP_500, "ERROR_SQL"),
        (Fault.SLOW, "ERROR_SQL"),
        (Fault.GARBAGE, "BAD_STATUS"),
    ):
        fake.script("setStatus", answer)
        assert gapi.text("setStatus", id=activation_id, status="8") == expected, answer
        assert status_of(activation_id) == "allocated"
        assert refunds(activation_id) == 0
    assert gapi.text("setStatus", id=activation_id, status="8") == "ACCESS_CANCEL"
    assert refunds(activation_id) == 1
    assert verify_ledger() == []


def test_cancel_right_after_the_purchase_asks_the_upstream_once(gapi, fake):
    """No poll before the cancel in the first poll interval: one upstream call, one refund."""
    settings.store("early_cancel_window", "0")
    fake.code_delay = None
    activation_id = gapi.json("getNumber", service="tg", country="12")["activationId"]
    upstream_id = db.session.get(Activation, activation_id).upstream_id
    assert gapi.text("setStatus", id=activation_id, status="8") == "ACCESS_CANCEL"
    assert fake.count("getStatus", activation_id=upstream_id) == 0
    assert fake.count("setStatus", activation_id=upstream_id) == 1
    assert refunds(activation_id) == 1
    assert verify_ledger() == []


def test_cancel_when_upstream_already_cancelled(gapi, fake, clock):
    fake.code_delay = None
    activation_id = gapi.json("getNumber", service="tg", country="12")["activationId"]
    upstream_id = db.session.get(Activation, activation_id).upstream_id
    fake._cancel(fake.activations[int(upstream_id)])
    clock.travel(121)
    fake.script("setStatus", "ALREADY_CANCEL")
    assert gapi.text("setStatus", id=activation_id, status="8") == "ACCESS_CANCEL"
    assert refunds(activation_id) == 1


def test_code_arriving_at_cancel_time_wins_over_the_refund(gapi, fake, clock):
    fake.code_delay = None
    activation_id = gapi.json("getNumber", service="tg", country="12")["activationId"]
    upstream_id = db.session.get(Activation, activation_id).upstream_id
    clock.travel(121)
    fake.deliver_code(upstream_id, "777111")
    assert gapi.text("setStatus", id=activation_id, status="8") == "BAD_STATUS"
    assert gapi.text("getStatus", id=activation_id) == "STATUS_OK:777111"
    assert refunds(activation_id) == 0


def test_code_after_our_expiry_is_delivered_not_refunded(gapi, fake, clock, runner):
    fake.code_delay = None
    activation_id = gapi.json("getNumber", service="tg", country="12")["activationId"]
    upstream_id = db.session.get(Activation, activation_id).upstream_id
    clock.travel(1201)
    fake.deliver_code(upstream_id, "123456")  # the upstream delivers at minute 21
    runner.invoke(args=["worker", "--once"])
    assert status_of(activation_id) in ("code_received", "completed")
    assert refunds(activation_id) == 0
    assert gapi.text("getStatus", id=activation_id) == "STATUS_OK:123456"


def test_expiry_waits_for_the_upstream_to_confirm(gapi, fake, clock, runner):
    fake.code_delay = None
    activation_id = gapi.json("getNumber", service="tg", country="12")["activationId"]
    clock.travel(1201)
    fake.script("getStatus", *[Fault.HTTP_500] * 8)  # the upstream cannot be asked
    runner.invoke(args=["worker", "--once"])
    assert status_of(activation_id) == "allocated"
    assert refunds(activation_id) == 0
    fake.script("setStatus", "BAD_STATUS")
    clock.travel(5)
    runner.invoke(args=["worker", "--once"])
    assert refunds(activation_id) == 0
    clock.travel(5)
    runner.invoke(args=["worker", "--once"])
    assert status_of(activation_id) == "expired"
    assert refunds(activation_id) == 1
    assert runner.invoke(args=["ledger", "verify"]).exit_code == 0


def test_poll_cap_many_polls_few_upstream_calls(gapi, fake, clock):
    fake.code_delay = None
    activation_id = gapi.json("getNumber", service="tg", country="12")["activationId"]
    upstream_id = db.session.get(Activation, activation_id).upstream_id
    for _ in range(50):  # the first interval after the purchase: answered from our side
        assert gapi.text("getStatus", id=activation_id) == "STATUS_WAIT_CODE"
    assert fake.count("getStatus", activation_id=upstream_id) == 0
    for expected in (1, 2):
        clock.travel(3)
        for _ in range(50):
            assert gapi.text("getStatus", id=activation_id) == "STATUS_WAIT_CODE"
        assert fake.count("getStatus", activation_id=upstream_id) == expected
    fake.deliver_code(upstream_id, "5555")
    clock.travel(3)
    assert gapi.text("getStatus", id=activation_id) == "STATUS_OK:5555"
    clock.travel(30)
    for _ in range(20):
        gapi.text("getStatus", id=activation_id)
    assert fake.count("getStatus", activation_id=upstream_id) == 3  # never again once in


# --- concurrency ----------------------------------------------------------------------


def test_parallel_purchases_never_overdraw(app, make_user, stocked):
    user = make_user(email="rush@example.com", balance="0.80")  # ot/12 sells at 0.16: 5 fit
    key, user_id = api_key_of(user), user.id
    db.session.remove()

    def buy(i):
        client = app.test_client()
        return client.get(
            "/stubs/handler_api.php",
            query_string={"api_key": key, "action": "getNumber", "service": "ot", "country": "12"},
        ).get_data(as_text=True)

    results = run_threads(20, buy)
    assert sum(r.startswith("ACCESS_NUMBER:") for r in results) == 5, results
    assert results.count("NO_BALANCE") == 15
    assert balance(user_id) == 0
    assert verify_ledger() == []


def test_parallel_cancels_refund_once(app, make_user, stocked, clock):
    user = make_user(email="twice@example.com", balance="1.00")
    key, user_id = api_key_of(user), user.id
    api = Api(app.test_client(), key)
    activation_id = api.json("getNumber", service="ot", country="12")["activationId"]
    clock.travel(121)
    db.session.remove()

    def cancel(i):
        return (
            app.test_client()
            .get(
                "/stubs/handler_api.php",
                query_string={
                    "api_key": key,
                    "action": "setStatus",
                    "id": activation_id,
                    "status": "8",
                },
            )
            .get_data(as_text=True)
        )

    results = run_threads(8, cancel)
    assert all(r == "ACCESS_CANCEL" for r in results), results
    assert refunds(activation_id) == 1
    assert balance(user_id) == 10_000
    assert verify_ledger() == []


def test_two_workers_do_not_double_process(app, make_user, stocked, clock):
    from reseller.services import worker

    user = make_user(email="w@example.com", balance="5.00")
    user_id = user.id
    api = Api(app.test_client(), api_key_of(user))
    ids = [api.json("getNumber", service="ot", country="12")["activationId"] for _ in range(6)]
    clock.travel(1201)
    db.session.remove()

    def run(i):
        with app.app_context():
            try:
                return worker.run_once().expired
            finally:
                db.session.remove()

    expired = run_threads(2, run)
    assert sum(expired) == 6
    for activation_id in ids:
        assert refunds(activation_id) == 1
    assert balance(user_id) == 50_000
    assert verify_ledger() == []


_ = Reply


@pytest.mark.parametrize("status, answer", [("6", "ACCESS_ACTIVATION"), ("3", "ACCESS_RETRY_GET")])
def test_set_status_right_after_the_code_without_a_poll(api, clock, status, answer):
    """A client that gets the code elsewhere (e.g. a webhook) may finish without polling."""
    activation_id = api.json("getNumber", service="tg", country="12")["activationId"]
    clock.travel(6)
    assert api.text("setStatus", id=activation_id, status=status) == answer
    assert refunds(activation_id) == 0


def test_a_purchase_takes_two_transactions_and_answers_from_the_second(
    grizzly, fake, stocked, make_user
):
    """Hold, then outcome: buy_number returns the activation read inside the committed
    outcome transaction (no read-back transaction). Other loaded objects, like the buyer's
    balance, are expired as after any commit."""
    from sqlalchemy import event

    user = make_user(email="buyer@example.com", balance="10.00")
    before = user.balance
    db.session.commit()  # the purchase starts with no transaction open
    begun, statements = [], []
    on_begin = lambda *args: begun.append(1)  # noqa: E731
    on_execute = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(db.engine, "begin", on_begin)
    event.listen(db.engine, "before_cursor_execute", on_execute)
    try:
        activation = activations.buy_number(
            user, activations.PurchaseRequest(service="tg", country="12")
        )
        assert len(begun) == 2
        statements.clear()
        assert activation.status == "allocated" and activation.phone and activation.id
        assert statements == []  # loaded: answering the customer needs no query
        assert user.balance == before - activation.price  # expired, so read afresh
        selects = [s for s in statements if s.startswith("SELECT")]
        assert len(selects) == 1 and "FROM users" in selects[0]
    finally:
        event.remove(db.engine, "begin", on_begin)
        event.remove(db.engine, "before_cursor_execute", on_execute)


def _reads_in_transactions(found: list[str]):
    """Record the SELECTs the driver runs inside a transaction, whoever sends them
    (SQLAlchemy's execution, db_reads.InSession on the session's connection); the reads
    outside any transaction (db_reads.HotRead, in autocommit) are left out."""

    def record(sql: str, in_transaction: bool) -> None:
        if in_transaction and sql.lstrip().upper().startswith("SELECT"):
            found.append(sql)

    return driver_statements(record)


def test_a_purchase_and_a_cancel_take_three_transactions_all_of_them_writes(gapi, fake):
    """getNumber + setStatus 8 (an upstream that keeps its state to itself): the hold, the
    allocation and the cancel with its refund are the only transactions; every read before
    them (the key, the offer, the settings, the activation, the seller's row) is taken
    outside any transaction. And every statement of theirs runs on the driver's cursor
    (db_reads.InSession), none through SQLAlchemy's per-execution machinery."""
    from sqlalchemy import event

    settings.store("early_cancel_window", "0")
    db.session.commit()
    settings.forget()
    fake.code_delay = None  # no code comes: the cancel is refunded
    assert gapi.text("getBalance") == "ACCESS_BALANCE:10.00"  # (its activity noted)
    db.session.commit()
    begun, through_sqlalchemy, reads = [], [], []
    on_begin = lambda *args: begun.append(1)  # noqa: E731
    on_execute = lambda *args: through_sqlalchemy.append(args[2].split()[0].upper())  # noqa: E731
    event.listen(db.engine, "begin", on_begin)
    event.listen(db.engine, "before_cursor_execute", on_execute)
    try:
        with _reads_in_transactions(reads):
            activation_id = gapi.json("getNumber", service="tg", country="12")["activationId"]
            assert len(begun) == 2
            assert gapi.text("setStatus", id=activation_id, status="8") == "ACCESS_CANCEL"
            assert len(begun) == 3
    finally:
        event.remove(db.engine, "begin", on_begin)
        event.remove(db.engine, "before_cursor_execute", on_execute)
    # In the hold, the candidates and the active count for the cap; no other read.
    assert len(reads) == 2, reads
    assert "FROM providers" in reads[0] and "count(*)" in reads[1]
    # SQLite's BEGIN IMMEDIATE is the one statement SQLAlchemy sends (reseller.sqlite).
    assert set(through_sqlalchemy) <= {"BEGIN"}, through_sqlalchemy
    assert refunds(activation_id) == 1 and verify_ledger() == []


# --- the hot path's Core statements agree with the ORM --------------------------------


def test_the_core_statements_of_the_money_path_agree_with_the_orm(make_user):
    """activations reads an activation's state (and whether it was charged) and counts the
    active ones with Core statements built at import; the ORM must say the same. Purchases
    and events written by Core read back through the ORM as written."""
    from reseller.models import LedgerKind
    from reseller.services import wallet

    user = make_user(email="core@example.com", balance="100.00")
    other = make_user(email="other@example.com", balance="100.00")
    ids = [_activation_in(user, state) for state in S]
    free = Activation(
        user_id=user.id,
        service="tg",
        country_id=12,
        status="allocated",
        price=0,
        upstream_name="sandbox",
        order_id="order-7",
    )
    db.session.add(free)
    db.session.commit()
    ids.append(free.id)
    ids.append(_activation_in(other, S.ALLOCATED))
    db.session.expire_all()
    for activation_id in ids + [10**6]:
        row = db.session.execute(activations._STATE_OF, {"activation": activation_id}).one_or_none()
        activation = db.session.get(Activation, activation_id)
        if activation is None:
            assert row is None
            continue
        charged = db.session.execute(
            select(func.count(LedgerEntry.id)).where(
                LedgerEntry.activation_id == activation_id,
                LedgerEntry.kind == LedgerKind.PURCHASE.value,
            )
        ).scalar_one()
        assert (row.status, row.user_id, row.price, row.order_id, bool(row.charged)) == (
            activation.status,
            activation.user_id,
            activation.price,
            activation.order_id,
            charged == 1,
        )
    for who in (user, other):
        orm_count = db.session.execute(
            select(func.count(Activation.id)).where(
                Activation.user_id == who.id,
                Activation.status.in_([s.value for s in activations.ACTIVE_STATES]),
            )
        ).scalar_one()
        core_count = db.session.execute(activations._ACTIVE_COUNT, {"user": who.id}).scalar_one()
        assert core_count == orm_count
    # Rows inserted by Core read back through the ORM as given, with the models' defaults.
    posting = wallet.debit(user.id, 700, kind=LedgerKind.ADJUSTMENT, note="core")
    activations._record_event(ids[0], "pending", S.ALLOCATED, note="core", actor="test")
    db.session.commit()
    entry = db.session.get(LedgerEntry, posting.id)
    assert (entry.user_id, entry.amount, entry.kind, entry.balance_after, entry.note) == (
        user.id,
        -700,
        "adjustment",
        posting.balance_after,
        "core",
    )
    assert entry.created_at is not None and entry.balance_after == balance(user.id)
    event = (
        db.session.execute(
            select(ActivationEvent)
            .where(ActivationEvent.activation_id == ids[0])
            .order_by(ActivationEvent.id.desc())
        )
        .scalars()
        .first()
    )
    assert (event.from_status, event.to_status, event.note, event.actor) == (
        "pending",
        "allocated",
        "core",
        "test",
    )
    assert event.created_at is not None
    assert verify_ledger() == []


def test_a_move_from_a_known_status_does_what_the_read_then_move_does(make_user):
    """`_move(expected=…)` (one UPDATE … RETURNING, with the owner's webhook and whether the
    activation was charged) and the general move (the state read, then the UPDATE) leave the
    same activation, events, refunds and webhook events, and answer the same row, for every
    allowed move but to FAILED, for owners with and without a webhook, charged or free; a
    stale `expected` falls back to the read. `_MOVE_FROM`'s extra columns agree with
    `_STATE_OF`'s."""
    from reseller.models import WebhookEndpoint, WebhookEvent
    from reseller.services import webhooks

    hooked = make_user(email="hooked@example.com", balance="1000.00")
    plain = make_user(email="plain@example.com", balance="1000.00")
    endpoint = WebhookEndpoint(user_id=hooked.id, url="https://h.example/x", secret_encrypted="s")
    db.session.add(endpoint)
    db.session.commit()
    skipped = {"id", "created_at", "closed_at"}  # the row's own id, and the moment of the move

    def outcome(activation_id, row):
        answered = {
            c.key: getattr(row, c.key) for c in Activation.__table__.columns if c.key not in skipped
        }
        db.session.expire_all()
        stored = db.session.get(Activation, activation_id)
        assert answered == {k: getattr(stored, k) for k in answered}  # answers as committed
        events = db.session.execute(
            select(ActivationEvent.from_status, ActivationEvent.to_status, ActivationEvent.note)
            .where(ActivationEvent.activation_id == activation_id)
            .order_by(ActivationEvent.id)
        ).all()
        money = db.session.execute(
            select(LedgerEntry.kind, LedgerEntry.amount)
            .where(LedgerEntry.activation_id == activation_id)
            .order_by(LedgerEntry.id)
        ).all()
        hooks = db.session.execute(
            select(WebhookEvent.kind, WebhookEvent.endpoint_id).where(
                WebhookEvent.activation_id == activation_id
            )
        ).all()
        return answered, events, money, hooks

    compared = 0
    for owner in (hooked, plain):
        for source, targets in TRANSITIONS.items():
            for target in sorted(targets - {S.FAILED}):
                results = []
                for expected in (source, None, S.COMPLETED):  # known, read, stale
                    if owner is hooked:
                        activation_id = _activation_in(owner, source)
                    else:  # a free activation: never charged, never refunded
                        free = Activation(
                            user_id=owner.id,
                            service="tg",
                            country_id=12,
                            status=source.value,
                            price=0,
                            upstream_name="sandbox",
                        )
                        db.session.add(free)
                        db.session.commit()
                        activation_id = free.id
                    state = db.session.execute(
                        activations._STATE_OF, {"activation": activation_id}
                    ).one()
                    before = balance(owner.id)
                    row = activations._move(
                        activation_id, target, actor="test", note="n", expected=expected
                    )
                    db.session.commit()
                    if expected is source:  # answered by _MOVE_FROM
                        assert row.webhook_endpoint_id == state.webhook_endpoint_id
                        assert bool(row.charged) == bool(state.charged)
                    results.append((*outcome(activation_id, row), balance(owner.id) - before))
                assert results[0] == results[1] == results[2]
                answered, events, money, hooks, change = results[0]
                assert answered["status"] == target.value and events[-1][:2] == (source, target)
                refunded = target in activations.REFUNDING_STATES and owner is hooked
                assert (money[-1:] == [("refund", 5000)]) == refunded
                assert change == (5000 if refunded else 0)
                sent = owner is hooked and target in webhooks.EVENT_OF_STATUS
                assert hooks == ([(webhooks.EVENT_OF_STATUS[target], endpoint.id)] if sent else [])
                compared += 1
    assert compared > 10
    assert verify_ledger() == []


def test_the_set_status_read_agrees_with_the_orm(make_user):
    """setStatus's one read (Core, outside any transaction) finds what get_for_user,
    provider.by_name and the settings find: the customer's activation only, with every
    column; its seller's row (none when the seller is unknown); the stored settings."""
    from reseller.services import provider as provider_accounts
    from reseller.services.errors import ActivationNotFound

    provider_accounts.all_providers()  # the environment's sandbox row
    settings.store("early_cancel_window", "7")
    db.session.commit()
    settings.forget()
    user = make_user(email="reader@example.com", balance="100.00")
    other = make_user(email="else@example.com", balance="100.00")
    mine = [_activation_in(user, state) for state in (S.ALLOCATED, S.CANCELLED)]
    orphan = Activation(user_id=user.id, service="tg", country_id=12, price=0, upstream_name="gone")
    db.session.add(orphan)
    db.session.commit()
    theirs = _activation_in(other, S.ALLOCATED)
    activation_columns = [c.key for c in Activation.__table__.columns]
    provider_columns = [c.key for c in Provider.__table__.columns]
    for activation_id in [*mine, orphan.id, theirs, 10**6]:
        row = activations._FOR_SET_STATUS.first(id=activation_id, user_id=user.id)
        try:
            orm = activations.get_for_user(user, activation_id)
        except ActivationNotFound:
            assert row is None
            continue
        assert [getattr(row, c) for c in activation_columns] == [
            getattr(orm, c) for c in activation_columns
        ]
        seller = provider_accounts.by_name(orm.upstream_name)
        if seller is None:
            assert all(getattr(row, "seller_" + c) is None for c in provider_columns)
            with pytest.raises(provider_accounts.UnknownProvider):
                activations._seller(row)
        else:
            assert [getattr(row, "seller_" + c) for c in provider_columns] == [
                getattr(seller, c) for c in provider_columns
            ]
            assert activations._seller(row).name == seller.name
        texts = {spec.key: getattr(row, "setting_" + spec.key) for spec in settings.SPECS}
        assert texts == settings._stored_texts()
        assert texts["early_cancel_window"] == "7"


def test_a_worker_pass_leaves_no_transaction_open(app, api, customer, clock):
    """`flask worker` sleeps between passes: a transaction left open would keep, on SQLite,
    the database's write lock (every purchase, cancel and due poll waited out the sleep),
    on PostgreSQL an idle-in-transaction session. After a pass another connection writes at
    once."""
    from sqlalchemy import text

    from reseller.services import worker

    api.text("getNumber", service="tg", country="0")
    clock.travel(6)  # a poll is due
    db.session.commit()
    worker.run_once()
    assert not db.session().in_transaction()
    if db.engine.dialect.name == "sqlite" and db.engine.url.database not in (None, "", ":memory:"):
        with db.engine.connect() as other:
            other.exec_driver_sql("PRAGMA busy_timeout=0")  # no waiting: locked is an error
            other.execute(text("UPDATE users SET updated_at = updated_at WHERE id = 0"))
            other.commit()
        db.session.rollback()
