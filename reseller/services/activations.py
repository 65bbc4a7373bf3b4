"""The activation lifecycle and its money.

The state table `TRANSITIONS` is the only place that says which status may follow which;
every change goes through `_transition`, a status-guarded UPDATE that only one caller can
win, recorded as an `ActivationEvent`. Refunds ride on such a transition in the same
transaction, and the ledger's unique (activation, kind) makes a second refund impossible.

No upstream call happens inside a database transaction: commit the hold, call out,
commit the outcome.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import namedtuple
from dataclasses import dataclass, replace
from decimal import Decimal

from flask import current_app
from sqlalchemy import and_, bindparam, exists, func, insert, literal, or_, select, update
from sqlalchemy.exc import IntegrityError

from .. import db_reads, metrics
from ..extensions import db
from ..models import (
    Activation,
    ActivationEvent,
    LedgerEntry,
    LedgerKind,
    Provider,
    Settlement,
    SmsMessage,
    User,
    utcnow,
)
from ..models import ActivationStatus as S
from ..money import to_decimal, to_units
from ..transactions import writing
from ..upstream import deadline
from ..upstream import errors as up
from ..upstream.base import SetStatusAnswer, StatusAnswer, UpstreamState
from . import catalog, pricing, refusals, routing, settings, telegram, wallet, webhooks
from . import errors as err
from .accounts import CALLER_COLUMNS, ApiCaller
from .provider import OutsideTransaction, guarded, session_holds_work, upstream

log = logging.getLogger(__name__)

# Whose activations: a signed-in User, or the narrow row the customer API reads per call.
# Only `.id` is used.
Customer = User | ApiCaller

TRANSITIONS: dict[S, frozenset[S]] = {
    S.PENDING: frozenset({S.ALLOCATED, S.FAILED, S.UNKNOWN}),
    S.UNKNOWN: frozenset({S.ALLOCATED, S.FAILED}),
    S.ALLOCATED: frozenset({S.CODE_RECEIVED, S.CANCELLED, S.EXPIRED}),
    S.CODE_RECEIVED: frozenset({S.RETRY_WAIT, S.COMPLETED}),
    S.RETRY_WAIT: frozenset({S.CODE_RECEIVED, S.COMPLETED}),
    S.COMPLETED: frozenset(),
    S.CANCELLED: frozenset(),
    S.EXPIRED: frozenset(),
    S.FAILED: frozenset(),
}
REFUNDING_STATES = frozenset({S.CANCELLED, S.EXPIRED, S.FAILED})
ACTIVE_STATES = frozenset({S.PENDING, S.UNKNOWN, S.ALLOCATED, S.CODE_RECEIVED, S.RETRY_WAIT})
WAITING_STATES = frozenset({S.ALLOCATED, S.RETRY_WAIT})  # the upstream is polled for these
HAS_CODE_STATES = frozenset({S.CODE_RECEIVED, S.RETRY_WAIT, S.COMPLETED})


def allowed(source: S, target: S) -> bool:
    return target in TRANSITIONS[source]


def _values(states) -> list[str]:
    return [s.value for s in states]


_activations = Activation.__table__
_ledger = LedgerEntry.__table__
# The hot path's statements, built once at import from table columns (Core twins of the ORM
# reads they replace; tests/test_lifecycle.py checks they agree). Whether the activation was
# charged rides on the status read, so a refund needs no read of its own.
_STATE_OF = select(
    _activations.c.status,
    _activations.c.user_id,
    _activations.c.price,
    _activations.c.order_id,
    webhooks.OWNER_ENDPOINT,
    exists()
    .where(
        _ledger.c.activation_id == _activations.c.id,
        _ledger.c.kind == LedgerKind.PURCHASE.value,
    )
    .label("charged"),
).where(_activations.c.id == bindparam("activation"))
# The status-guarded move itself. The columns it sets are the execution's parameters
# (other than `activation` and `expected`); it answers with the activation's row as the move
# left it, so that answering the caller needs no read. `_MOVE_FROM` is the move from a
# status the caller already knows (`_move(expected=…)`): it also answers what `_STATE_OF`
# would have (the owner's webhook, whether it was charged), one statement instead of two.
_MOVE = (
    update(_activations)
    .where(_activations.c.id == bindparam("activation"))
    .where(_activations.c.status == bindparam("expected"))
    .returning(*_activations.c)
)
_MOVE_FROM = _MOVE.returning(
    webhooks.OWNER_ENDPOINT_OF,  # (by the bind parameter: see there why)
    exists()
    .where(
        _ledger.c.activation_id == bindparam("activation"),
        _ledger.c.kind == LedgerKind.PURCHASE.value,
    )
    .label("charged"),
)
_NEW_EVENT = insert(ActivationEvent.__table__)
_NEW_ACTIVATION = insert(_activations).returning(_activations.c.id)
_ACTIVE_COUNT = select(func.count()).where(
    _activations.c.user_id == bindparam("user"),
    # literal() values, not a list: an IN of bound constants, which InSession can compile
    _activations.c.status.in_([literal(s.value) for s in sorted(ACTIVE_STATES)]),
)
# The purchase's and the cancel's statements run on the driver's cursor in the session's
# transaction (db_reads.InSession: the same SQL, compiled by SQLAlchemy once).
_HOT_STATE_OF = db_reads.InSession(_STATE_OF)
_HOT_MOVE = db_reads.InSession(_MOVE)
_HOT_MOVE_FROM = db_reads.InSession(_MOVE_FROM)
_HOT_NEW_EVENT = db_reads.InSession(_NEW_EVENT)
_HOT_NEW_ACTIVATION = db_reads.InSession(_NEW_ACTIVATION)
_HOT_ACTIVE_COUNT = db_reads.InSession(_ACTIVE_COUNT)


def _record_event(
    activation_id: int, source: str | None, target: S, *, note: str | None, actor: str
) -> None:
    """The activation's history row for a move (append-only; one INSERT, no flush)."""
    _HOT_NEW_EVENT.run(
        {
            "activation_id": activation_id,
            "from_status": source,
            "to_status": target.value,
            "note": note,
            "actor": actor,
        }
    )


def _transition(
    activation_id: int, target: S, *, actor: str, note: str | None = None, **values
) -> bool:
    """Move the activation to `target` if its current status allows it. No commit.

    Returns False (and changes nothing) when another caller moved it first or the state
    table forbids the move. A move into a refunding state credits the price back; a failed
    purchase also gives its `orderId` back, so that the customer's retry may use it.
    """
    return _move(activation_id, target, actor=actor, note=note, **values) is not None


def _move(
    activation_id: int,
    target: S,
    *,
    actor: str,
    note: str | None = None,
    expected: S | None = None,
    **values,
):
    """`_transition`, answering with the activation's row as the move left it (the
    Activation's column names), or None when it did not move. No commit.

    `expected`: the status the caller has just seen (not for a move to FAILED, which needs
    the order id the read gives); the move is then tried from that status first, with one
    statement, and only if the activation has moved on meanwhile is its status read.
    """
    moved = source = None
    if expected is not None and target in TRANSITIONS[expected] and target != S.FAILED:
        moved = _HOT_MOVE_FROM.first(
            {"activation": activation_id, "expected": expected.value, "status": target.value}
            | values
        )
        source = expected.value
        endpoint_id = moved.webhook_endpoint_id if moved is not None else None
        charged = moved.charged if moved is not None else False
    if moved is None:
        sources = [s for s, targets in TRANSITIONS.items() if target in targets]
        row = _HOT_STATE_OF.first({"activation": activation_id})
        if row is None or S(row.status) not in sources:
            return None
        if target == S.FAILED and row.order_id is not None:
            values["order_id"] = None
            released = f"orderId {row.order_id} released"
            note = f"{note}; {released}"[:300] if note else released
        moved = _HOT_MOVE.first(
            {"activation": activation_id, "expected": row.status, "status": target.value} | values
        )
        if moved is None:
            return None
        source, endpoint_id, charged = row.status, row.webhook_endpoint_id, row.charged
    _record_event(activation_id, source, target, note=note, actor=actor)
    webhooks.record_transition(endpoint_id, activation_id, target, values)
    telegram.record_transition(activation_id, moved.user_id, target)
    if target in REFUNDING_STATES and moved.price > 0 and charged:
        wallet.credit(
            moved.user_id,
            moved.price,
            kind=LedgerKind.REFUND,
            activation_id=activation_id,
            note=note,
        )
    db.session.flush()
    _forget_loaded(activation_id)
    return moved


def _forget_loaded(activation_id: int) -> None:
    """Expire the session's instance of the activation, if it holds one: a Core statement
    changed its row, and the next access must read it again."""
    existing = db.session.identity_map.get((Activation, (activation_id,), None))
    if existing is not None:
        db.session.expire(existing)


def _commit() -> None:
    try:
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise


# --- customer queries ---------------------------------------------------------------


_MAX_ID = 2**31 - 1  # the id column is an INTEGER


def _parse_id(raw_id) -> int:
    """Our activation id from a request's text. Raises ActivationNotFound for anything that
    cannot be one: not ASCII digits (not '²' or '١٢'), or beyond what the id column holds
    (PostgreSQL would refuse the comparison as out of range)."""
    text = str(raw_id or "").strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 10 or int(text) > _MAX_ID:
        raise err.ActivationNotFound()
    return int(text)


def get_for_user(user: Customer, raw_id) -> Activation:
    """The user's activation by our id. Raises ActivationNotFound (also for others' ids)."""
    activation = db.session.execute(
        select(Activation).where(Activation.id == _parse_id(raw_id), Activation.user_id == user.id)
    ).scalar_one_or_none()
    if activation is None:
        raise err.ActivationNotFound()
    return activation


# The poll's read, built once at import: the Core twin of get_for_user (tests check both
# agree). Its row has the Activation's column names.
_USERS_ACTIVATION = db_reads.HotRead(
    select(Activation.__table__).where(
        Activation.id == bindparam("id"), Activation.user_id == bindparam("user_id")
    )
)


_users = User.__table__


def _with_caller(caller_columns, columns, *joins) -> db_reads.HotRead:
    """One statement for the account behind an API key's digest (`key_hash`) and `columns`
    of its activation by `id` (and of the tables `joins` adds to it, (table, on) pairs), all
    NULL when the caller has no activation by this id. One row when the key exists."""
    joined = _users.outerjoin(
        _activations,
        and_(_activations.c.id == bindparam("id"), _activations.c.user_id == _users.c.id),
    )
    for table, on in joins:
        joined = joined.outerjoin(table, on)
    return db_reads.HotRead(
        select(*caller_columns, *columns)
        .select_from(joined)
        .where(_users.c.api_key_hash == bindparam("key_hash"))
    )


# The API's getStatus reads the account behind the key and the activation with one
# statement: the caller's columns (accounts.CALLER_COLUMNS, the twin of
# accounts._CALLER_BY_KEY_HASH) and the activation's, labelled `activation_<name>` (the twin
# of `_USERS_ACTIVATION`). tests/test_db_reads.py checks it against the two reads and the ORM.
_ActivationRow = namedtuple("ActivationRow", [c.key for c in _activations.c])  # noqa: PYI024
_CALLER_AND_ACTIVATION = _with_caller(
    CALLER_COLUMNS, [column.label("activation_" + column.key) for column in _activations.c]
)


def poll_id(raw_id) -> int | None:
    """The activation id for `caller_and_status_row`, as `_parse_id` reads it. None when it
    cannot be one: the caller then checks the key first and answers the id after it."""
    try:
        return _parse_id(raw_id)
    except err.ActivationNotFound:
        return None


def caller_and_status_row(digest: str, activation_id: int) -> tuple[ApiCaller | None, tuple | None]:
    """The account behind an API key's digest (as accounts.api_caller_by_digest) and its
    activation by `activation_id` (from `poll_id`) as stored (as `_USERS_ACTIVATION`: a row
    with the Activation's column names), read with one statement outside any transaction.
    (None, None) for an unknown key; (caller, None) when the caller has no such activation.
    The row goes on to `status_from_row`."""
    row = _CALLER_AND_ACTIVATION.first(key_hash=digest, id=activation_id)
    if row is None:
        return None, None
    caller = ApiCaller(*(getattr(row, name) for name in ApiCaller._fields))
    if row.activation_id is None:
        return caller, None
    return caller, _ActivationRow(
        *(getattr(row, "activation_" + key) for key in _ActivationRow._fields)
    )


def status_for_user(user: Customer, raw_id, budget: PollBudget | None = None):
    """getStatus: the user's activation as stored, read with one statement outside any
    transaction (a tight polling loop takes no lock), unless its upstream poll is due: then
    brought up to date by `refresh_status` within `budget`. Raises ActivationNotFound.

    Returns an Activation, or a row with the same column names."""
    row = _USERS_ACTIVATION.first(id=_parse_id(raw_id), user_id=user.id)
    return status_from_row(user, row, budget)


def status_from_row(user: Customer, row, budget: PollBudget | None = None):
    """`status_for_user` for the user's activation row already read (None: there is none,
    ActivationNotFound), e.g. by `caller_and_status_row`."""
    if row is None:
        raise err.ActivationNotFound()
    if not _poll_due(row) or (budget is not None and budget.spent):
        return row
    return refresh_status(row, budget=budget, as_row=True)


def active_for_user(user: Customer) -> list[Activation]:
    return list(
        db.session.execute(
            select(Activation)
            .where(
                Activation.user_id == user.id,
                Activation.status.in_(_values(ACTIVE_STATES - {S.PENDING, S.UNKNOWN})),
            )
            .order_by(Activation.id.desc())
        ).scalars()
    )


# --- purchase -----------------------------------------------------------------------


@dataclass(frozen=True)
class PurchaseRequest:
    service: str
    country: str
    max_price: str | None = None
    order_id: str | None = None


def _parse_max_price(raw: str | None) -> int | None:
    if raw is None or str(raw).strip() == "":
        return None
    try:
        value = to_units(str(raw).strip())
    except ValueError:
        raise err.BadParameter("maxPrice is not a number") from None
    if value < 0:
        raise err.BadParameter("maxPrice is negative")
    return value


def buy_number(user: Customer, request: PurchaseRequest) -> Activation:
    """Charge the retail price and buy a number upstream.

    Raises BadService, BadCountry, NoNumbers, WrongMaxPrice, NoBalance,
    TooManyActivations, OrderAlreadyExists, BadParameter and ServiceUnavailable (the
    latter also when the outcome is unknown: the hold stays until reconciliation).
    """
    service_code = (request.service or "").strip()
    if (request.country or "").strip():
        try:
            country_id = catalog.parse_country(request.country)
        except catalog.UnknownCountry:
            country_id = None
    else:  # SMS-Activate clients leave `country` out for its default
        country_id = settings.get("default_country")
    # The service, the country and the price with one read (the service is judged first).
    offer = pricing.offer(service_code, country_id) if country_id is not None else None
    if offer is None:
        service = catalog.service(service_code)  # no such service, or an unknown country
        if service is None or not service.enabled:
            raise err.BadService()
        raise err.BadCountry()
    if not offer.service_enabled:
        raise err.BadService()
    if not offer.country_enabled:
        raise err.BadCountry()
    max_price = _parse_max_price(request.max_price)
    order_id = (request.order_id or "").strip() or None
    if order_id is not None and len(order_id) > 100:
        raise err.BadParameter("orderId is too long")

    quote = offer.quote
    if quote is None or quote.count <= 0:
        raise err.NoNumbers()
    if max_price is not None and max_price < quote.price:
        raise err.WrongMaxPrice(quote.price)
    # Providers able to serve now, in the policy's order, within what the customer pays
    # (unless the operator serves at a loss rather than lose the order).
    at_loss = settings.get("serve_at_loss") == "yes"
    route = routing.candidates(service_code, country_id, None if at_loss else quote.price)
    if not route:
        raise err.NoNumbers()

    if order_id is not None:
        exists = db.session.execute(
            select(Activation.id).where(
                Activation.user_id == user.id, Activation.order_id == order_id
            )
        ).first()
        if exists:
            raise err.OrderAlreadyExists()

    activation_id = _hold(user, service_code, country_id, quote.price, order_id, route[0].name)
    return _purchase_upstream(activation_id, service_code, country_id, quote.price, route)


def _hold(
    user: Customer,
    service: str,
    country_id: int,
    price: int,
    order_id: str | None,
    provider_name: str,
) -> int:
    """Commit the activation as pending with its price debited. Returns its id."""
    user_id = user.id
    try:
        activation_id = _HOT_NEW_ACTIVATION.scalar(
            {
                "user_id": user_id,
                "service": service,
                "country_id": country_id,
                "status": S.PENDING.value,
                "price": price,
                "upstream_name": provider_name,
                "order_id": order_id,
            }
        )
        # The debit locks the user's row (PostgreSQL) or the database (SQLite) until commit,
        # so the cap below counts consistently under concurrency.
        if price > 0:
            wallet.debit(user_id, price, kind=LedgerKind.PURCHASE, activation_id=activation_id)
        active = _HOT_ACTIVE_COUNT.scalar({"user": user_id})
        if active > settings.get("max_active_activations"):
            raise err.TooManyActivations()
        _record_event(
            activation_id, None, S.PENDING, note=f"charged {to_decimal(price)}", actor="customer"
        )
        db.session.commit()
        return activation_id
    except wallet.InsufficientFunds:
        db.session.rollback()
        raise err.NoBalance() from None
    except IntegrityError:
        db.session.rollback()
        if order_id is not None:
            raise err.OrderAlreadyExists() from None
        raise
    except Exception:
        db.session.rollback()
        raise


# When every provider refused, the customer hears the most useful of their answers.
_REFUSAL_RANK = (err.WrongMaxPrice, err.NoNumbers, err.BadService, err.BadCountry)


def _definite_error(exc: up.UpstreamError) -> type[err.ServiceError] | None:
    """The customer's error for a purchase refusal that sold nothing; None when the
    outcome is unknown (`refusals`)."""
    return refusals.definite_refusal(exc, refusals.PURCHASE_REFUSALS)


def _switch_provider(activation_id: int, name: str) -> bool:
    """Record that the pending purchase now goes to `name` (before calling it, so that a
    lost answer is settled with the right provider). Commits."""
    result = db.session.execute(
        update(Activation)
        .where(Activation.id == activation_id, Activation.status == S.PENDING.value)
        .values(upstream_name=name)
        .execution_options(synchronize_session=False)
    )
    _commit()
    return result.rowcount == 1


def _purchase_upstream(
    activation_id: int, service: str, country_id: int, price: int, route: list
) -> Activation:
    """Buy from the routed providers in turn: the next one only after a definite refusal,
    one attempt each. A lost answer keeps the hold with that provider (reconciliation
    settles it there). Raises the customer-facing error when none sold."""
    refused: list[err.ServiceError] = []
    at_loss = settings.get("serve_at_loss") == "yes"
    for attempt, candidate in enumerate(route):
        # The hold named the first; a later one is recorded before it is called.
        if attempt and not _switch_provider(activation_id, candidate.name):
            raise err.ServiceUnavailable()  # settled meanwhile
        provider = candidate.client
        max_price = None if at_loss else candidate.max_price(price)
        try:
            number = provider.get_number(service, country_id, max_price=max_price)
        except up.WrongMaxPrice as exc:
            # The provider's cost rose above what we charge: learn it, try the next.
            log.info("purchase %s: %s dearer now (%s)", activation_id, candidate.name, exc)
            metrics.PURCHASES.labels(candidate.name, "price_refused").inc()
            routing.learn_cost(candidate.name, service, country_id, exc.min_price)
            catalog.rebuild_offer(service, country_id)
            refused.append(err.WrongMaxPrice(price))
            continue
        except up.UpstreamError as exc:
            mapped = _definite_error(exc)
            if mapped is None:  # perhaps sold: settled with this provider, never failed over
                metrics.PURCHASES.labels(candidate.name, "unknown").inc()
                log.warning(
                    "purchase %s: unknown outcome at %s (%s)", activation_id, candidate.name, exc
                )
                if _transition(activation_id, S.UNKNOWN, actor="system", note=str(exc)[:300]):
                    _commit()
                raise err.ServiceUnavailable() from None
            log.info("purchase %s refused by %s: %s", activation_id, candidate.name, exc.token)
            metrics.PURCHASES.labels(candidate.name, "refused").inc()
            refused.append(mapped())
            continue
        except Exception:
            metrics.PURCHASES.labels(candidate.name, "unknown").inc()
            log.exception("purchase %s: unexpected failure; keeping the hold", activation_id)
            db.session.rollback()
            if _transition(activation_id, S.UNKNOWN, actor="system", note="unexpected error"):
                _commit()
            raise err.ServiceUnavailable() from None
        metrics.PURCHASES.labels(candidate.name, "sold").inc()
        return _allocate(activation_id, provider, number, candidate.rate)

    _fail(activation_id, "refused by " + ", ".join(f"{c.name}" for c in route))
    raise _best_refusal(refused, service, country_id)


def _best_refusal(refusals: list[err.ServiceError], service: str, country_id: int):
    for cls in _REFUSAL_RANK:
        for refusal in refusals:
            if isinstance(refusal, cls):
                if cls is err.WrongMaxPrice:
                    quote = pricing.quote(service, country_id)
                    if quote is None:
                        return err.NoNumbers()
                    return err.WrongMaxPrice(quote.price)
                return refusal
    return refusals[0] if refusals else err.NoNumbers()


def _allocate(activation_id: int, provider, number, rate: Decimal) -> Activation:
    now = utcnow()
    lifetime = settings.get("activation_lifetime")
    cost = to_units(number.cost * rate, round_up=True) if number.cost is not None else None
    # The first poll is one interval away: no code arrives in the instant after a purchase,
    # and a cancel or poll right away need not ask the upstream first.
    first_poll = now + dt.timedelta(seconds=settings.get("poll_interval"))
    activation = _move(
        activation_id,
        S.ALLOCATED,
        actor="system",
        note=f"{provider.name} #{number.upstream_id}",
        expected=S.PENDING,  # as the hold left it, unless reconciliation settled it
        upstream_id=number.upstream_id,
        phone=number.phone,
        upstream_cost=cost,
        allocated_at=now,
        expires_at=now + dt.timedelta(seconds=lifetime),
        next_poll_at=first_poll,
    )
    _commit()
    if activation is None:
        # Reconciliation settled (refunded) this purchase meanwhile: release the number.
        log.warning("purchase %s settled before its answer arrived; cancelling", activation_id)
        try:
            provider.set_status(number.upstream_id, 8)
        except up.UpstreamError as exc:
            log.warning("could not cancel orphan %s: %s", number.upstream_id, exc.token)
        raise err.ServiceUnavailable()
    return activation


def _fail(activation_id: int, note: str) -> None:
    if _transition(activation_id, S.FAILED, actor="system", note=note, closed_at=utcnow()):
        _commit()
    else:
        db.session.rollback()


def settle_lost_purchase(activation_id: int, *, unconfirmed: str | None = None) -> bool:
    """Refund a purchase whose answer never came (pending or unknown past the settle delay).

    `unconfirmed` says why the upstream's active list could not be read: the refund is then
    recorded as settled without upstream confirmation. Commits; True when it moved.
    """
    if unconfirmed is None:
        settlement, note = Settlement.LISTED, "purchase answer never arrived; refunded"
    else:
        settlement = Settlement.UNCONFIRMED
        note = f"refunded without upstream confirmation ({unconfirmed})"
    moved = _transition(
        activation_id,
        S.FAILED,
        actor="worker",
        note=note[:300],
        closed_at=utcnow(),
        settlement=settlement.value,
    )
    _commit()
    return moved


def tie_upstream_number(activation_id: int, upstream_id: str, phone: str | None) -> bool:
    """Record that the upstream number `upstream_id` was bought by this settled purchase.

    Only a purchase the worker settled (failed, refunded, no number) takes one number, and
    only once: the number is then held by a failed activation, which the worker releases
    upstream. Moves no money. Commits; True when it tied.
    """
    result = db.session.execute(
        update(Activation)
        .where(
            Activation.id == activation_id,
            Activation.status == S.FAILED.value,
            Activation.settlement.is_not(None),
            Activation.upstream_id.is_(None),
        )
        .values(upstream_id=upstream_id, phone=phone)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount == 1:
        db.session.add(
            ActivationEvent(
                activation_id=activation_id,
                from_status=S.FAILED.value,
                to_status=S.FAILED.value,
                note=f"upstream #{upstream_id} bought in this purchase's window "
                "(same service and country): released upstream",
                actor="worker",
            )
        )
    _commit()
    return result.rowcount == 1


# --- status -------------------------------------------------------------------------


# A due poll's claim: one guarded UPDATE … RETURNING, run on its own outside any transaction
# (db_reads.HotRead in autocommit): on SQLite it holds the write lock only while it runs (in
# a session's transaction, BEGIN IMMEDIATE took it before and COMMIT let it go after, with a
# threaded worker's GIL waits in between, and every poller of a due activation queued on
# it), and a claim another poller won first finds nothing to change and takes no write lock
# at all; on PostgreSQL it saves the BEGIN and COMMIT round trips. Run again after a dropped
# connection it changes nothing: the slot is then taken.
_CLAIM_POLL = db_reads.HotRead(
    update(_activations)
    .where(
        _activations.c.id == bindparam("id"),
        or_(*(_activations.c.status == state.value for state in sorted(WAITING_STATES))),
        or_(
            _activations.c.next_poll_at.is_(None),
            _activations.c.next_poll_at <= bindparam("now"),
        ),
    )
    .values(next_poll_at=bindparam("next_poll_at"))
    .returning(
        _activations.c.upstream_id,
        _activations.c.status,
        _activations.c.expires_at,
        _activations.c.upstream_name,
    )
)


def _claim_poll(activation_id: int):
    """Take this activation's upstream poll slot; at most one per poll interval anywhere.
    Returns what the poll needs of the activation as the claim left it (`upstream_id`,
    `status`, `expires_at`, `upstream_name`: read by the claim itself), or None when the
    slot was not free. Commits what the session holds first: the claim runs outside it, and
    no transaction stays open while the caller goes on to the upstream."""
    interval = dt.timedelta(seconds=settings.get("poll_interval"))
    if session_holds_work():
        _commit()
    now = utcnow()
    return _CLAIM_POLL.first(id=activation_id, now=now, next_poll_at=now + interval)


def _fresh(activation_id: int) -> Activation:
    """The activation as committed now, through the session (an instance the session
    already holds is read again)."""
    _forget_loaded(activation_id)
    return db.session.get(Activation, activation_id)


def _poll_due(activation) -> bool:
    """Whether the upstream may be asked about this activation now (it waits for a code and
    its poll slot has come)."""
    if S(activation.status) not in WAITING_STATES:
        return False
    return activation.next_poll_at is None or activation.next_poll_at <= utcnow()


class PollBudget:
    """The total time a caller lets status polls wait on the upstream: a web request gets a
    couple of seconds (`WEB_POLL_BUDGET`), a worker pass `WORKER_POLL_BUDGET`. Once spent,
    `refresh_status` answers from the database and leaves the poll to the worker."""

    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds

    @property
    def spent(self) -> bool:
        return time.monotonic() >= self.deadline


def web_poll_budget() -> PollBudget:
    """A fresh budget for one web request's status polls (the dashboard, its feed, the API)."""
    return PollBudget(current_app.config["WEB_POLL_BUDGET"])


def refresh_status(
    activation: Activation,
    *,
    actor: str = "customer",
    budget: PollBudget | None = None,
    as_row: bool = False,
) -> Activation:
    """Bring the activation up to date with the upstream when its poll slot is due, waiting
    on the upstream no longer than `budget` allows (None: the provider's own timeouts).
    `activation`: an Activation, or a row with its column names (getStatus's read).

    Answers from the database otherwise. Never raises for upstream trouble. With `as_row`
    (getStatus), an activation read again is a row with the Activation's column names, read
    outside any transaction (`_USERS_ACTIVATION`), not an instance loaded in the session's
    (which, on SQLite, would begin IMMEDIATE and hold the write lock to the request's end).
    """
    if not _poll_due(activation) or (budget is not None and budget.spent):
        return activation  # (the claim below decides when it looks due): no write
    activation_id = activation.id

    def reread():
        if as_row:
            return _USERS_ACTIVATION.first(id=activation_id, user_id=activation.user_id)
        return _fresh(activation_id)

    claimed = _claim_poll(activation_id)  # committed: no transaction is open while we call out
    if claimed is None:
        return reread()
    upstream_id, status, expires_at = claimed.upstream_id, S(claimed.status), claimed.expires_at
    seller = claimed.upstream_name
    with deadline.within(budget.deadline if budget else None):
        try:
            answer = upstream(seller).get_status(upstream_id)
        except up.UpstreamError as exc:
            log.info("poll %s: %s", activation_id, exc.token)
            answer = None
        if answer is not None:
            answer = _with_sms_text(seller, upstream_id, answer)  # within the same budget
            _apply_status(activation_id, status, answer, actor=actor)
        still_waiting = answer is None or answer.state in (
            UpstreamState.WAIT_CODE,
            UpstreamState.WAIT_RESEND,
        )
        if still_waiting and status == S.ALLOCATED and expires_at and utcnow() >= expires_at:
            expire(activation_id, actor=actor)
    return reread()


def _with_sms_text(seller: str, upstream_id: str, answer: StatusAnswer) -> StatusAnswer:
    """A poll's answer with the SMS text of the code it reports, asked of the provider
    when its answer carries only the code (the SMS-Activate protocol's getStatus). Called
    only for polls of an activation waiting for a code, so a code reported is a new one;
    outside any transaction, before the code is recorded (with its text, for the webhook
    and the bot). Without a text the answer stays as it was."""
    if answer.state != UpstreamState.CODE or answer.code is None or answer.text is not None:
        return answer
    text = upstream(seller).get_sms_text(upstream_id, answer.code)
    return replace(answer, text=text) if text else answer


def _record_code(
    activation_id: int, code: str, text: str | None, actor: str, delivered: int | None = None
) -> bool:
    """Record a new code. `delivered`: how many SMS the provider says it has delivered,
    when it says (a provider that lists every SMS repeats the last one until another
    comes); an answer we have already recorded changes nothing."""
    now = utcnow()
    seq = (
        db.session.execute(
            select(func.count(SmsMessage.id)).where(SmsMessage.activation_id == activation_id)
        ).scalar_one()
        + 1
    )
    if delivered is not None and delivered < seq:
        return False
    won = _transition(
        activation_id,
        S.CODE_RECEIVED,
        actor=actor,
        note=f"code #{seq}",
        code=code,
        sms_text=text,
        code_at=now,
    )
    if won:
        db.session.add(
            SmsMessage(activation_id=activation_id, seq=seq, code=code, text=text, received_at=now)
        )
    return won


@writing()  # also from a page view's poll
def _apply_status(activation_id: int, status: S, answer, actor: str) -> None:
    try:
        if answer.state == UpstreamState.CODE and answer.code is not None:
            _record_code(activation_id, answer.code, answer.text, actor, answer.messages)
        elif answer.state == UpstreamState.CANCELLED and status == S.ALLOCATED:
            _transition(
                activation_id,
                S.EXPIRED,
                actor=actor,
                note="upstream reports the activation cancelled",
                closed_at=utcnow(),
            )
        _commit()
    except IntegrityError:
        db.session.rollback()  # a concurrent poller recorded the same code first


# --- setStatus ------------------------------------------------------------------------

STATUS_READY = 1
STATUS_RETRY = 3
STATUS_COMPLETE = 6
STATUS_CANCEL = 8


def parse_status(raw) -> int:
    text = str(raw if raw is not None else "").strip()
    if text == "-1":
        return STATUS_CANCEL
    if text not in ("1", "3", "6", "8"):
        raise err.BadStatus()
    return int(text)


# setStatus's one read, built once at import, outside any transaction: the customer's
# activation (the twin of get_for_user, as `_USERS_ACTIVATION`), its seller's provider row
# (columns `seller_<name>`, the twin of provider.by_name) and the settings
# (settings.STORED_TEXTS). tests/test_lifecycle.py checks it against the ORM.
_providers = Provider.__table__
_Seller = namedtuple("_Seller", [c.key for c in _providers.c])  # noqa: PYI024
_FOR_SET_STATUS = db_reads.HotRead(
    select(
        _activations,
        *(column.label("seller_" + column.key) for column in _providers.c),
        *settings.STORED_TEXTS,
    )
    .select_from(
        _activations.outerjoin(_providers, _providers.c.name == _activations.c.upstream_name)
    )
    .where(_activations.c.id == bindparam("id"), _activations.c.user_id == bindparam("user_id"))
)


# The API's setStatus reads the caller behind the key with the rest, in one statement (as
# getStatus does, `_CALLER_AND_ACTIVATION`): the caller's columns labelled `caller_<name>`
# (the twin of accounts._CALLER_BY_KEY_HASH), then `_FOR_SET_STATUS`'s columns under their
# own names. tests/test_db_reads.py checks it against the two reads.
_CALLER_FOR_SET_STATUS = _with_caller(
    [column.label("caller_" + column.key) for column in CALLER_COLUMNS],
    _FOR_SET_STATUS.statement.selected_columns,
    (_providers, _providers.c.name == _activations.c.upstream_name),
)


def caller_and_set_status_row(
    digest: str, activation_id: int
) -> tuple[ApiCaller | None, tuple | None]:
    """The account behind an API key's digest (as accounts.api_caller_by_digest) and what
    setStatus reads of its activation by `activation_id` (from `poll_id`), as
    `_FOR_SET_STATUS` reads it, with one statement outside any transaction. (None, None)
    for an unknown key; (caller, None) when the caller has no such activation. The row goes
    on to `set_status_from_row`."""
    row = _CALLER_FOR_SET_STATUS.first(key_hash=digest, id=activation_id)
    if row is None:
        return None, None
    caller = ApiCaller(*(getattr(row, "caller_" + name) for name in ApiCaller._fields))
    return caller, (row if row.id is not None else None)


def _seller(activation) -> OutsideTransaction:
    """The guarded client of the activation's seller: built from the provider row setStatus
    read with it, when it carries one; else the row is read by name. Raises
    UnknownProvider."""
    if getattr(activation, "seller_name", None) is None:
        return upstream(activation.upstream_name)
    return guarded(_Seller(*(getattr(activation, "seller_" + key) for key in _Seller._fields)))


def set_status(user: Customer, raw_id, raw_status) -> tuple[SetStatusAnswer, Activation]:
    """Apply a customer's setStatus. Raises ActivationNotFound, BadStatus,
    EarlyCancelDenied, ServiceUnavailable."""
    status = parse_status(raw_status)
    return _set_status(_FOR_SET_STATUS.first(id=_parse_id(raw_id), user_id=user.id), status)


def set_status_from_row(row, raw_status) -> tuple[SetStatusAnswer, Activation]:
    """`set_status` for the caller's activation as `caller_and_set_status_row` read it
    (None: there is none): the same answers, the same errors in the same order."""
    return _set_status(row, parse_status(raw_status))


def _set_status(activation, status: int) -> tuple[SetStatusAnswer, Activation]:
    if activation is None:
        raise err.ActivationNotFound()
    settings.adopt(activation)
    if status == STATUS_READY:
        if S(activation.status) not in ACTIVE_STATES - {S.PENDING, S.UNKNOWN}:
            raise err.BadStatus()
        return SetStatusAnswer.READY, activation
    if status == STATUS_CANCEL:
        return SetStatusAnswer.CANCEL, cancel(activation)
    if status == STATUS_RETRY:
        return SetStatusAnswer.RETRY_GET, request_another_sms(activation)
    return SetStatusAnswer.ACTIVATION, complete(activation)


def cancel(activation: Activation, *, actor: str = "customer") -> Activation:
    """Cancel before any code; refund only when the upstream confirms."""
    activation = refresh_status(activation, actor=actor)
    status = S(activation.status)
    if status in (S.CANCELLED, S.EXPIRED):
        return activation  # already closed and refunded: cancelling again is harmless
    if status != S.ALLOCATED:
        raise err.BadStatus()
    window = settings.get("early_cancel_window")
    if utcnow() < activation.allocated_at + dt.timedelta(seconds=window):
        raise err.EarlyCancelDenied()
    activation_id, upstream_id = activation.id, activation.upstream_id
    seller = activation.upstream_name
    try:
        provider = _seller(activation)
    except up.UpstreamUnavailable:  # no such provider any more
        raise err.ServiceUnavailable() from None
    try:  # (the guarded client ends any open transaction before it calls out)
        answer = provider.set_status(upstream_id, STATUS_CANCEL)
    except (up.AlreadyCancel, up.NoActivation, up.WrongActivationId):
        answer = None  # perhaps cancelled already: the status below decides
    except up.EarlyCancelDenied:
        raise err.EarlyCancelDenied() from None
    except (up.UpstreamUnavailable, up.UnknownOutcome, up.RateLimited):
        raise err.ServiceUnavailable() from None
    except up.UpstreamError as exc:
        log.info("cancel %s refused upstream: %s", activation_id, exc.token)
        _poll_now(activation_id)  # perhaps a code arrived meanwhile: let the next poll see it
        raise err.BadStatus() from None
    if not _cancel_confirmed(seller, upstream_id, answer):
        log.warning("cancel %s: upstream answered %s, not a cancel", activation_id, answer)
        _poll_now(activation_id)
        raise err.BadStatus()
    moved = _move(
        activation_id,
        S.CANCELLED,
        actor=actor,
        note="cancelled",
        expected=status,
        closed_at=utcnow(),
    )
    _commit()
    if moved is not None:
        return moved
    activation = db.session.get(Activation, activation_id)  # moved on meanwhile
    if S(activation.status) not in (S.CANCELLED, S.EXPIRED):
        raise err.BadStatus()
    return activation


def _cancel_confirmed(seller: str, upstream_id: str, answer: SetStatusAnswer | None) -> bool:
    """Whether the seller cancelled: it answered status 8 with ACCESS_CANCEL, or (after
    any other answer) reports the activation cancelled or gone. ACCESS_READY, ACCESS_RETRY_GET
    or ACCESS_ACTIVATION in answer to a cancel are no cancel."""
    return answer == SetStatusAnswer.CANCEL or _upstream_says_cancelled(seller, upstream_id)


def _poll_now(activation_id: int) -> None:
    db.session.execute(
        update(Activation).where(Activation.id == activation_id).values(next_poll_at=None)
    )
    _commit()


def _upstream_says_cancelled(seller: str, upstream_id: str) -> bool:
    try:
        answer = upstream(seller).get_status(upstream_id)
    except (up.NoActivation, up.WrongActivationId):
        return True  # the upstream no longer holds it
    except up.UpstreamError:
        return False
    return answer.state == UpstreamState.CANCELLED


def request_another_sms(activation: Activation, *, actor: str = "customer") -> Activation:
    activation = refresh_status(activation, actor=actor)  # the code may be in upstream only
    status = S(activation.status)
    if status == S.RETRY_WAIT:
        return activation
    if status != S.CODE_RECEIVED:
        raise err.BadStatus()
    activation_id, upstream_id = activation.id, activation.upstream_id
    seller = activation.upstream_name
    db.session.commit()
    try:
        upstream(seller).set_status(upstream_id, STATUS_RETRY)
    except (up.UpstreamUnavailable, up.UnknownOutcome):
        raise err.ServiceUnavailable() from None
    except up.UpstreamError:
        raise err.BadStatus() from None
    if _transition(
        activation_id,
        S.RETRY_WAIT,
        actor=actor,
        note="another SMS requested",
        next_poll_at=utcnow(),
    ):
        _commit()
    return db.session.get(Activation, activation_id)


def complete(activation: Activation, *, actor: str = "customer") -> Activation:
    activation = refresh_status(activation, actor=actor)  # the code may be in upstream only
    status = S(activation.status)
    if status == S.COMPLETED:
        return activation
    if status not in (S.CODE_RECEIVED, S.RETRY_WAIT):
        raise err.BadStatus()
    activation_id, upstream_id = activation.id, activation.upstream_id
    seller = activation.upstream_name
    db.session.commit()
    _finish_upstream(seller, upstream_id)
    if _transition(activation_id, S.COMPLETED, actor=actor, note="completed", closed_at=utcnow()):
        _commit()
    return db.session.get(Activation, activation_id)


def _finish_upstream(seller: str, upstream_id: str | None) -> None:
    """Tell the seller we are done (best effort: the money is final once a code came)."""
    if not upstream_id:
        return
    try:
        upstream(seller).set_status(upstream_id, STATUS_COMPLETE)
    except up.UpstreamError as exc:
        log.info("finish %s upstream: %s (ignored)", upstream_id, exc.token)


# --- expiry ---------------------------------------------------------------------------


@writing()  # also from a page view's poll
def expire(activation_id: int, *, actor: str = "worker") -> bool:
    """Close an overdue activation. Without a code: cancel upstream, refund once on the
    upstream's confirmation. With a code: complete. Returns True when it closed."""
    activation = db.session.get(Activation, activation_id)
    if activation is None or activation.expires_at is None or utcnow() < activation.expires_at:
        return False
    status = S(activation.status)
    upstream_id, seller = activation.upstream_id, activation.upstream_name
    db.session.commit()
    if status in (S.CODE_RECEIVED, S.RETRY_WAIT):
        _finish_upstream(seller, upstream_id)
        done = _transition(
            activation_id, S.COMPLETED, actor=actor, note="lifetime over", closed_at=utcnow()
        )
        _commit()
        return done
    if status != S.ALLOCATED:
        return False
    # Last look: a code may have arrived at the last moment.
    try:
        answer = upstream(seller).get_status(upstream_id)
    except (up.NoActivation, up.WrongActivationId):
        answer = None
    except up.UpstreamError:
        return False
    if answer is not None and answer.state == UpstreamState.CODE:
        _apply_status(activation_id, status, _with_sms_text(seller, upstream_id, answer), actor)
        return False
    if answer is None or answer.state != UpstreamState.CANCELLED:
        try:
            cancelled = upstream(seller).set_status(upstream_id, STATUS_CANCEL)
        except (up.AlreadyCancel, up.NoActivation, up.WrongActivationId):
            cancelled = None
        except up.UpstreamError as exc:
            log.info("expire %s: upstream refused cancel (%s)", activation_id, exc.token)
            _poll_now(activation_id)
            return False
        if not _cancel_confirmed(seller, upstream_id, cancelled):
            log.warning("expire %s: upstream answered %s, not a cancel", activation_id, cancelled)
            _poll_now(activation_id)
            return False
    done = _transition(
        activation_id,
        S.EXPIRED,
        actor=actor,
        note="lifetime over without a code",
        closed_at=utcnow(),
    )
    _commit()
    return done


def lifetime_left(activation: Activation) -> int:
    if activation.expires_at is None:
        return 0
    return max(0, int((activation.expires_at - utcnow()).total_seconds()))


def cancel_available_at(activation: Activation) -> dt.datetime | None:
    if activation.allocated_at is None:
        return None
    return activation.allocated_at + dt.timedelta(seconds=settings.get("early_cancel_window"))


def currency_code() -> str:
    return current_app.config["CURRENCY"]
