"""Top-ups: customers pay through a gateway and their wallet is credited exactly once.

The flow: our payment row first (pending), then the gateway's invoice (HTTP, outside any
transaction), then the customer pays on the gateway's page. A verified "paid" event — from
a notification or from the worker asking the gateway — credits the wallet in ONE
transaction with a status-guarded UPDATE of the payment (pending/expired/failed → paid:
only one caller's update matches), and the unique (payment, kind) ledger constraint makes
a second credit impossible even so. The amount credited is always our payment's amount, and
only when the gateway's signed amount and currency agree with it; a disagreement flags the
payment for the operator and credits nothing.

Gateways are asked for by name from the registry (`reseller.gateways`); nothing here
branches on which gateway it is.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from decimal import Decimal

from flask import Flask, current_app
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError

from .. import metrics
from ..extensions import db
from ..gateways import configured
from ..gateways.base import (
    BadNotification,
    Checked,
    Gateway,
    GatewayError,
    GatewayRefused,
    InvoiceRequest,
    InvoiceState,
    PaymentEvent,
)
from ..models import (
    LedgerEntry,
    LedgerKind,
    Payment,
    PaymentAttempt,
    PaymentChange,
    User,
    utcnow,
)
from ..models import PaymentStatus as P
from ..money import CENT, BadAmount, format_amount, parse_amount, to_decimal, to_units
from . import settings, wallet
from .errors import ServiceError
from .jobs import backoff_seconds, claim_job, claim_rows, finish_job, release

log = logging.getLogger(__name__)

EXTENSION_KEY = "reseller.gateways"
# From these a verified "paid" credits: an expired invoice may still be paid late (crypto
# confirmations), a failed attempt may be followed by a good one on the same invoice, and
# an invoice the customer cancelled may have been paid before (or despite) the cancel.
CREDITABLE = (P.PENDING.value, P.EXPIRED.value, P.FAILED.value, P.CANCELLED.value)
# Seconds after which a payment whose invoice was never stored (a crash between our row and
# the gateway's answer) is given up: the customer never saw a payment page.
INVOICE_GRACE = 120
# The worker asks the gateway about a pending payment after 1 minute, then backs off to
# every 30 minutes.
CHECK_FIRST, CHECK_LAST, CHECK_STEPS = 60, 1800, 6
# Top-ups a customer may start per hour: each one is an invoice at the gateway.
MAX_STARTED_PER_HOUR = 10


# -- failures ---------------------------------------------------------------------------


class TopUpError(ServiceError):
    kind = "TOPUP_ERROR"
    message = "The top-up could not be started."


class BadTopUpAmount(TopUpError):
    kind = "BAD_AMOUNT"


class GatewayNotOffered(TopUpError):
    kind = "BAD_GATEWAY"
    message = "This payment method is not offered."


class InvoiceFailed(TopUpError):
    kind = "INVOICE_FAILED"
    message = (
        "The payment provider could not create an invoice. Nothing was charged. "
        "Please try again, or choose another payment method."
    )


class TooManyTopUps(TopUpError):
    kind = "TOO_MANY_TOPUPS"
    message = (
        "You started many top-ups in the last hour. Pay one of them (see your payments "
        "below), or try again later."
    )


class RefundRefused(TopUpError):
    kind = "REFUND_REFUSED"
    message = "This top-up cannot be refunded."


class UnknownInvoice(BadNotification):
    """A verified notification about an invoice we never created."""


# -- the gateways -------------------------------------------------------------------------


def build_gateways(app: Flask) -> dict[str, Gateway]:
    return configured(app.config)


def available() -> dict[str, Gateway]:
    """Every gateway this app runs (notifications for any of them are accepted)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    gateways = app.extensions.get(EXTENSION_KEY)
    if gateways is None:
        gateways = app.extensions[EXTENSION_KEY] = build_gateways(app)
    return gateways


def use_gateway(app: Flask, gateway: Gateway) -> None:
    """Tests: run `gateway` under its name."""
    with app.app_context():
        available()[gateway.name] = gateway


def offered(*, in_chat: bool = False) -> list[Gateway]:
    """The gateways customers may choose now: the running ones the operator has not
    switched off in the console (setting `payment_gateways`). Those paid only inside a chat
    (Telegram Stars) are offered to the bot (`in_chat`), not to web pages."""
    running = available()
    chosen = [n.strip().lower() for n in settings.get("payment_gateways").split(",") if n.strip()]
    found = list(running.values()) if not chosen else [running[n] for n in chosen if n in running]
    return [g for g in found if in_chat or not g.in_chat_only]


def gateway_label(name: str) -> str:
    from ..gateways import GATEWAYS

    cls = GATEWAYS.get(name)
    return cls.label if cls else name


# -- amounts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    minimum: int
    maximum: int
    presets: list[int]
    bonus_percent: float
    bonus_threshold: int


def limits() -> Limits:
    minimum, maximum = settings.get("topup_minimum"), settings.get("topup_maximum")
    presets = []
    for part in settings.get("topup_presets").split(","):
        try:
            units = parse_amount(part)
        except BadAmount:
            continue
        if minimum <= units <= maximum and units not in presets:
            presets.append(units)
    return Limits(
        minimum=minimum,
        maximum=maximum,
        presets=sorted(presets),
        bonus_percent=settings.get("topup_bonus_percent"),
        bonus_threshold=settings.get("topup_bonus_threshold"),
    )


def bonus_for(amount: int, rules: Limits | None = None) -> int:
    """The bonus a top-up of `amount` earns, in whole cents rounded down (0: none)."""
    rules = rules or limits()
    if rules.bonus_percent <= 0 or amount < rules.bonus_threshold:
        return 0
    raw = Decimal(amount) * Decimal(str(rules.bonus_percent)) / 100
    return int(raw) // CENT * CENT


def parse_topup_amount(text: str) -> int:
    """Money units for an amount typed by a customer; raises BadTopUpAmount."""
    rules = limits()
    try:
        units = parse_amount(text)
    except BadAmount as exc:
        raise BadTopUpAmount(f"Enter an amount like 25 or 25.50 ({exc}).") from None
    currency = current_app.config["CURRENCY"]
    if units < rules.minimum:
        raise BadTopUpAmount(f"The smallest top-up is {format_amount(rules.minimum)} {currency}.")
    if units > rules.maximum:
        raise BadTopUpAmount(f"The largest top-up is {format_amount(rules.maximum)} {currency}.")
    return units


# -- starting a top-up --------------------------------------------------------------------


@dataclass(frozen=True)
class Urls:
    """Our URLs the gateway needs (built by the view: services know no request)."""

    callback: str  # this gateway's webhook
    back: str  # the Top up page
    site: str  # the site root


def order_id(payment: Payment) -> str:
    return f"topup-{payment.id}"


def start_topup(
    user: User, amount: int, gateway_name: str, urls: Urls, *, in_chat: bool = False
) -> Payment:
    """Create our payment row, then the gateway's invoice. Returns the payment with its
    `pay_url`. Raises GatewayNotOffered, BadTopUpAmount, TooManyTopUps, or InvoiceFailed
    (the row is then `failed`, nothing charged). `in_chat`: started in the bot's chat."""
    gateway = next((g for g in offered(in_chat=in_chat) if g.name == gateway_name), None)
    if gateway is None:
        raise GatewayNotOffered()
    rules = limits()
    if not rules.minimum <= amount <= rules.maximum or amount % CENT:
        raise BadTopUpAmount("This amount is outside the allowed range.")
    # The cap is a count then an insert: a concurrent start (another process or host) must
    # not count before ours commits. The customer's row, locked first, makes it wait here
    # on PostgreSQL (READ COMMITTED: its count, a later statement, then sees our row); on
    # SQLite every transaction holds the write lock from its first statement
    # (reseller/sqlite.py).
    db.session.execute(select(User.id).where(User.id == user.id).with_for_update(key_share=True))
    recent = db.session.execute(
        select(func.count())
        .select_from(Payment)
        .where(Payment.user_id == user.id, Payment.created_at > utcnow() - dt.timedelta(hours=1))
    ).scalar_one()
    if recent >= MAX_STARTED_PER_HOUR:
        raise TooManyTopUps()
    payment = Payment(
        user_id=user.id,
        gateway=gateway.name,
        amount=amount,
        currency=current_app.config["CURRENCY"],
        status=P.PENDING.value,
        bonus=bonus_for(amount, rules),
    )
    db.session.add(payment)
    db.session.flush()
    _record(payment.id, None, P.PENDING, source="customer", note="top-up started")
    db.session.commit()
    metrics.TOPUPS.labels(gateway.name, P.PENDING.value).inc()
    payment_id = payment.id

    request = InvoiceRequest(
        order_id=order_id(payment),
        amount=to_decimal(amount).quantize(Decimal("0.01")),
        currency=payment.currency,
        description=f"{settings.get('site_name')}: top-up of {format_amount(amount)} "
        f"{payment.currency}, account #{user.id}",
        callback_url=urls.callback,
        return_url=urls.back,
        site_url=urls.site,
    )
    try:
        invoice = gateway.create_invoice(request)  # no transaction is open: committed above
    except GatewayError as exc:
        db.session.rollback()
        log.warning("payment %s: %s invoice failed: %s", payment_id, gateway.name, exc)
        _transition(
            payment_id,
            [P.PENDING],
            P.FAILED,
            source="gateway",
            note=_short(str(exc)),
            error=_short(str(exc)),
        )
        db.session.commit()
        raise InvoiceFailed() from None
    now = utcnow()
    db.session.execute(
        update(Payment)
        .where(Payment.id == payment_id)
        .values(
            invoice_id=invoice.invoice_id,
            pay_url=invoice.pay_url,
            gateway_status=invoice.status,
            expires_at=now + dt.timedelta(seconds=invoice.lifetime),
            next_check_at=now + dt.timedelta(seconds=CHECK_FIRST),
        )
        .execution_options(synchronize_session=False)
    )
    _record(
        payment_id,
        P.PENDING,
        P.PENDING,
        source="gateway",
        note="invoice created",
        gateway_status=invoice.status,
    )
    db.session.commit()
    db.session.expire(payment)
    return payment


# -- events from the gateway --------------------------------------------------------------


@dataclass
class Outcome:
    payment_id: int
    # "credited", "duplicate", "flagged", "expired", "failed", "updated", "unchanged"
    result: str


def handle_notification(gateway_name: str, body: bytes, headers) -> Outcome:
    """Verify and apply one notification. Raises BadNotification (bad signature, malformed,
    unknown gateway or invoice): nothing changed."""
    gateway = available().get(gateway_name)
    if gateway is None:
        raise BadNotification(f"no gateway {gateway_name!r} runs here")
    event = gateway.verify_notification(body, headers)
    return apply_event(event, source="notification")


def sandbox_pay(payment: Payment) -> Outcome:
    """The sandbox's Pay button: the sandbox signs a notification and it goes through the
    same path as a real one."""
    gateway = available().get(payment.gateway)
    notify = getattr(gateway, "notification", None)
    if notify is None or payment.invoice_id is None:
        raise GatewayNotOffered()
    body, headers = notify(
        payment.invoice_id,
        to_decimal(payment.amount).quantize(Decimal("0.01")),
        payment.currency,
        order_id(payment),
    )
    return handle_notification(payment.gateway, body, headers)


def apply_event(event: PaymentEvent, *, source: str) -> Outcome:
    """Apply one verified event. Raises UnknownInvoice. Commits."""
    payment = db.session.execute(
        select(Payment).where(
            Payment.gateway == event.gateway, Payment.invoice_id == event.invoice_id
        )
    ).scalar_one_or_none()
    if payment is None:
        raise UnknownInvoice(f"no payment for {event.gateway} invoice {event.invoice_id!r}")
    try:
        news = _note_attempt(payment.id, event)
        if event.state is InvoiceState.PAID:
            result = _paid(payment, event, source)
        elif event.state in (InvoiceState.EXPIRED, InvoiceState.FAILED):
            result = _ended(payment, event, source, news)
        elif event.state is InvoiceState.REFUNDED:
            result = _refunded(payment, event, source)
        else:
            result = _gateway_word(payment, event, source, news)
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return Outcome(payment.id, result)


def _note_attempt(payment_id: int, event: PaymentEvent) -> bool:
    """Keep the gateway payment an event is about (every one made on the invoice, not only
    the last notified) with its last word; True when that is news. No commit."""
    if not event.reference:
        return False
    values = {"state": event.state.value, "gateway_status": event.gateway_status}
    if event.received:
        values["received"] = event.received
    for _ in range(2):
        attempt = db.session.execute(
            select(PaymentAttempt).where(
                PaymentAttempt.payment_id == payment_id,
                PaymentAttempt.reference == event.reference,
            )
        ).scalar_one_or_none()
        if attempt is not None:
            if attempt.state == InvoiceState.PAID.value:
                return False  # a late word about a payment already finished changes nothing
            if all(getattr(attempt, k) == v for k, v in values.items()):
                return False
            for key, value in values.items():
                setattr(attempt, key, value)
            db.session.flush()
            return True
        try:
            with db.session.begin_nested():  # a concurrent notice may insert it first
                db.session.add(
                    PaymentAttempt(payment_id=payment_id, reference=event.reference, **values)
                )
            return True
        except IntegrityError:
            continue
    return False


def _attempts(payment_id: int) -> list[PaymentAttempt]:
    return list(
        db.session.execute(
            select(PaymentAttempt)
            .where(PaymentAttempt.payment_id == payment_id)
            .order_by(PaymentAttempt.id)
        ).scalars()
    )


def _in_flight(attempts: list[PaymentAttempt], *, besides: str | None = None) -> bool:
    """Whether money is on its way in one of these payments (seen, not yet confirmed)."""
    return any(
        a.state == InvoiceState.PENDING.value and a.received and a.reference != besides
        for a in attempts
    )


def _ended(payment: Payment, event: PaymentEvent, source: str, news: bool) -> str:
    """A failed or expired word. About the invoice itself, it closes the payment; about one
    payment made on it, only once the invoice can no longer be paid (its lifetime is over
    and no other payment is on its way): the customer may pay again on the same invoice."""
    word = f"the gateway says {event.gateway_status}"
    if event.reference:
        open_until = payment.expires_at
        if (open_until is not None and open_until > utcnow()) or _in_flight(
            _attempts(payment.id), besides=event.reference
        ):
            note = (
                f"payment {event.reference}: {event.gateway_status}; the invoice can still be paid"
            )
            return _gateway_word(payment, event, source, news, note=note)
    target = P.EXPIRED if event.state is InvoiceState.EXPIRED else P.FAILED
    result = _close_unpaid(payment.id, target, source=source, note=word, event=event)
    return result or _gateway_word(payment, event, source, news)


def _close_unpaid(
    payment_id: int, target: P, *, source: str, note: str, event: PaymentEvent | None = None
) -> str | None:
    """Close a pending payment unpaid: `target`, or flagged for the operator when money
    arrived on one of its payments (partially paid, or paid and then failed). The result,
    or None when it was not pending. No commit."""
    received = [
        f"{a.received} in payment {a.reference}" for a in _attempts(payment_id) if a.received
    ]
    if received:
        reason = _short(
            f"partially paid: {'; '.join(received)} arrived at the gateway, but the invoice "
            f"ended unpaid ({note}); nothing credited"
        )
        if _transition(
            payment_id,
            [P.PENDING],
            P.FLAGGED,
            source=source,
            event=event,
            note=reason,
            flag_reason=reason,
        ):
            log.warning("payment %s flagged: %s", payment_id, reason)
            return "flagged"
        return None
    if _transition(payment_id, [P.PENDING], target, source=source, event=event, note=note):
        return target.value
    return None


def _mismatch(payment: Payment, event: PaymentEvent) -> str | None:
    """Why the gateway's signed word disagrees with our payment, or None."""
    if event.amount is None:
        return "the gateway's paid event carries no amount"
    try:
        amount = to_units(event.amount)
    except BadAmount:
        return "the gateway's amount is unreadable"
    if amount != payment.amount:
        return (
            f"amount mismatch: the gateway says {event.amount} {event.currency or ''}, "
            f"we expect {format_amount(payment.amount)} {payment.currency}"
        )
    if (event.currency or "").upper() != payment.currency.upper():
        return f"currency mismatch: the gateway says {event.currency}, we expect {payment.currency}"
    if event.order_id is not None and event.order_id != order_id(payment):
        return f"order mismatch: the gateway says {event.order_id}, we expect {order_id(payment)}"
    return None


def _paid(payment: Payment, event: PaymentEvent, source: str) -> str:
    problem = _mismatch(payment, event)
    if problem:
        flagged = _transition(
            payment.id,
            [P(s) for s in CREDITABLE],
            P.FLAGGED,
            source=source,
            event=event,
            note=_short(problem),
            flag_reason=_short(problem),
        )
        log.warning("payment %s flagged: %s", payment.id, problem)
        return "flagged" if flagged else "unchanged"
    # The one guard: only one caller's UPDATE matches; it credits in the same transaction.
    won = _transition(
        payment.id,
        [P(s) for s in CREDITABLE],
        P.PAID,
        source=source,
        event=event,
        note="paid: wallet credited",
        paid_at=utcnow(),
        gateway_reference=event.reference,
    )
    if not won:
        if payment.status == P.FLAGGED.value:
            # The operator decides; the timeline shows what the gateway says now.
            _record(
                payment.id,
                P.FLAGGED,
                P.FLAGGED,
                source=source,
                event=event,
                note="the gateway says paid; the payment is flagged: nothing credited by itself",
            )
            return "unchanged"
        if (
            payment.status == P.PAID.value
            and event.reference
            and payment.gateway_reference
            and event.reference != payment.gateway_reference
        ):
            reason = f"a second payment ({event.reference}) on an invoice already credited"
            _flag_only(payment, event, source, reason)
            return "flagged"
        log.info("payment %s: duplicate paid event from %s ignored", payment.id, source)
        return "duplicate"
    wallet.credit(
        payment.user_id,
        payment.amount,
        LedgerKind.PAYMENT,
        payment_id=payment.id,
        note=f"{gateway_label(payment.gateway)} invoice {payment.invoice_id}",
    )
    if payment.bonus:
        wallet.credit(
            payment.user_id,
            payment.bonus,
            LedgerKind.PAYMENT_BONUS,
            payment_id=payment.id,
            note="top-up bonus",
        )
    log.info("payment %s credited %s to user %s", payment.id, payment.amount, payment.user_id)
    return "credited"


def _refunded(payment: Payment, event: PaymentEvent, source: str) -> str:
    if _transition(
        payment.id,
        [P.PENDING],
        P.FAILED,
        source=source,
        event=event,
        note="the gateway refunded the payment",
    ):
        return "updated"
    if payment.status == P.PAID.value:
        _flag_only(payment, event, source, "refunded by the gateway after the wallet was credited")
        return "flagged"
    return _gateway_word(payment, event, source)


def _flag_only(payment: Payment, event: PaymentEvent, source: str, reason: str) -> None:
    """Flag a payment for the operator without changing its status (money already moved)."""
    if payment.flag_reason == reason:
        return
    db.session.execute(
        update(Payment)
        .where(Payment.id == payment.id)
        .values(flag_reason=_short(reason))
        .execution_options(synchronize_session=False)
    )
    status = P(payment.status)
    _record(payment.id, status, status, source=source, note=_short(reason), event=event)
    log.warning("payment %s flagged: %s", payment.id, reason)


def _gateway_word(
    payment: Payment,
    event: PaymentEvent,
    source: str,
    news: bool = False,
    *,
    note: str | None = None,
) -> str:
    """Record a new gateway status (confirming, partially_paid…) without a state change;
    `news`: the event told us something new about one of the invoice's payments."""
    if event.gateway_status == payment.gateway_status and not news:
        return "unchanged"
    db.session.execute(
        update(Payment)
        .where(Payment.id == payment.id)
        .values(gateway_status=event.gateway_status)
        .execution_options(synchronize_session=False)
    )
    status = P(payment.status)
    word = f"payment {event.reference}: {event.gateway_status}" if event.reference else None
    _record(
        payment.id,
        status,
        status,
        source=source,
        event=event,
        note=note or word or f"the gateway says {event.gateway_status}",
    )
    return "updated"


def _transition(
    payment_id: int,
    allowed: list[P],
    target: P,
    *,
    source: str,
    note: str | None = None,
    event: PaymentEvent | None = None,
    **values,
) -> bool:
    """Move the payment from one of `allowed` to `target` with a guarded UPDATE; True when
    this caller made the change (and recorded it). No commit."""
    current, gateway = db.session.execute(
        select(Payment.status, Payment.gateway).where(Payment.id == payment_id)
    ).one()
    if event is not None:
        values["gateway_status"] = event.gateway_status
    result = db.session.execute(
        update(Payment)
        .where(Payment.id == payment_id, Payment.status.in_([s.value for s in allowed]))
        .values(status=target.value, updated_at=utcnow(), **values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return False
    _record(payment_id, P(current), target, source=source, note=note, event=event)
    metrics.count_when_committed(metrics.TOPUPS, gateway, target.value)
    return True


def _record(
    payment_id: int,
    before: P | None,
    after: P | None,
    *,
    source: str,
    note: str | None = None,
    event: PaymentEvent | None = None,
    gateway_status: str | None = None,
) -> None:
    db.session.add(
        PaymentChange(
            payment_id=payment_id,
            from_status=before.value if before else None,
            to_status=after.value if after else None,
            gateway_status=event.gateway_status if event else gateway_status,
            source=source,
            note=note,
            body=event.body if event else None,
        )
    )
    db.session.flush()


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- refunds (the console) -------------------------------------------------------------------


def can_refund(payment: Payment) -> bool:
    gateway = available().get(payment.gateway)
    return bool(gateway is not None and gateway.can_refund and payment.status == P.PAID.value)


def refund(payment: Payment, *, source: str) -> Outcome:
    """Give a paid top-up back at its gateway, then debit the wallet its amount and bonus
    in one transaction with the guarded paid → refunded move. Raises RefundRefused (not
    refundable, or the balance no longer covers it: nothing changed) and GatewayError (the
    gateway refused or did not answer: nothing changed)."""
    if not can_refund(payment):
        raise RefundRefused("Only a paid top-up of a gateway that refunds can be refunded.")
    total = payment.amount + payment.bonus
    if db.session.get(User, payment.user_id).balance < total:
        raise RefundRefused("The customer's balance no longer covers this top-up and its bonus.")
    payment_id, user_id = payment.id, payment.user_id
    invoice_id, reference = payment.invoice_id, payment.gateway_reference
    db.session.commit()  # no transaction is open while the gateway is called
    available()[payment.gateway].refund(invoice_id, reference)
    try:
        if not _transition(
            payment_id, [P.PAID], P.REFUNDED, source=source, note="refunded: wallet debited"
        ):
            db.session.rollback()
            return Outcome(payment_id, "unchanged")
        wallet.debit(
            user_id,
            total,
            LedgerKind.PAYMENT_REFUND,
            payment_id=payment_id,
            note=f"{gateway_label(payment.gateway)} refund",
        )
        db.session.commit()
    except wallet.InsufficientFunds:  # spent between the check and the gateway's answer
        db.session.rollback()
        reason = "refunded at the gateway but the balance no longer covered it: debit by hand"
        _flag_only(db.session.get(Payment, payment_id), None, source, reason)
        db.session.commit()
        return Outcome(payment_id, "flagged")
    log.info("payment %s refunded (%s) to user %s", payment_id, total, user_id)
    return Outcome(payment_id, "refunded")


# -- reconciliation and expiry (flask worker) ---------------------------------------------


@dataclass
class ReconcileReport:
    checked: int = 0
    credited: int = 0
    expired: int = 0
    failed: int = 0
    flagged: int = 0  # closed with money received: the operator decides
    errors: list[str] = field(default_factory=list)


def reconcile(*, every: int = 30) -> ReconcileReport:
    """One pass: ask the gateways about due pending payments, credit what they say is paid,
    expire what outlived its invoice, give up on invoices never created. Gateway calls run
    with no transaction open; rows are claimed (`jobs.claim_rows`) so that several workers
    never ask twice."""
    report = ReconcileReport()
    if not claim_job("payments", every=every, hold=300):
        return report
    try:
        now = utcnow()
        ids = claim_rows(
            Payment,
            select(Payment.id).where(
                Payment.status == P.PENDING.value,
                or_(
                    Payment.next_check_at <= now,
                    Payment.expires_at <= now,
                    Payment.invoice_id.is_(None),
                ),
            ),
            claim_seconds=300,
        )
        try:
            _reconcile_rows(ids, report)
        finally:
            for payment_id in ids:
                release(Payment, payment_id)
        finish_job("payments")
    except Exception:
        db.session.rollback()
        finish_job("payments", ran=False)
        raise
    return report


def _reconcile_rows(ids: list[int], report: ReconcileReport) -> None:
    rows = (
        db.session.execute(
            select(
                Payment.id,
                Payment.gateway,
                Payment.invoice_id,
                Payment.created_at,
                Payment.expires_at,
                Payment.checks,
                Payment.error,
            ).where(Payment.id.in_(ids))
        ).all()
        if ids
        else []
    )
    references: dict[int, list[str]] = {}
    for payment_id, reference in db.session.execute(
        select(PaymentAttempt.payment_id, PaymentAttempt.reference)
        .where(PaymentAttempt.payment_id.in_(ids))
        .order_by(PaymentAttempt.id)
    ):
        references.setdefault(payment_id, []).append(reference)
    db.session.commit()  # no transaction stays open across the gateway calls below
    now = utcnow()
    by_gateway: dict[str, list] = {}
    for row in rows:
        if row.invoice_id is None:
            if row.created_at <= now - dt.timedelta(seconds=INVOICE_GRACE):
                if _transition(
                    row.id,
                    [P.PENDING],
                    P.FAILED,
                    source="worker",
                    note="the invoice was never created",
                ):
                    report.failed += 1
                db.session.commit()
            continue
        by_gateway.setdefault(row.gateway, []).append(row)

    for name, group in by_gateway.items():
        gateway = available().get(name)
        answered = gateway is not None and not gateway.can_check
        checked = Checked()
        if gateway is not None and gateway.can_check:
            try:
                checked = gateway.check_invoices(
                    [(r.invoice_id, tuple(references.get(r.id, ()))) for r in group]
                )
                answered = True
            except GatewayError as exc:
                report.errors.append(f"{name}: {exc}")
                log.warning("payments: %s check failed: %s", name, exc)
            report.checked += len(group) if answered else 0
            for event in checked.events:
                try:
                    outcome = apply_event(event, source="check")
                except UnknownInvoice:
                    continue
                if outcome.result == "credited":
                    report.credited += 1
                elif outcome.result == "expired":
                    report.expired += 1
                elif outcome.result == "flagged":
                    report.flagged += 1
        for row in group:
            problem = checked.unreadable.get(row.invoice_id)
            if problem:
                report.errors.append(f"{name}: payment {row.id}: {problem}")
                log.warning("payments: payment %s could not be read: %s", row.id, problem)
            # Expire only what the gateway could not still call paid: it answered about it
            # (or cannot be asked), the invoice's lifetime is over, and no payment made on
            # it is on its way.
            over = answered and not problem and row.expires_at is not None
            over = over and row.expires_at <= now and not _in_flight(_attempts(row.id))
            if over:
                result = _close_unpaid(
                    row.id,
                    P.EXPIRED,
                    source="worker",
                    note="unpaid when the invoice's lifetime ended",
                )
                if result == "expired":
                    report.expired += 1
                elif result == "flagged":
                    report.flagged += 1
            delay = backoff_seconds(
                row.checks + 1, first=CHECK_FIRST, last=CHECK_LAST, steps=CHECK_STEPS
            )
            values = {"next_check_at": now + dt.timedelta(seconds=delay), "checks": row.checks + 1}
            if answered and (problem or row.error):
                # The check's own problem, recorded on the payment (cleared once it reads).
                values["error"] = _short(f"check: {problem}") if problem else None
            updated = db.session.execute(
                update(Payment)
                .where(Payment.id == row.id, Payment.status == P.PENDING.value)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if updated.rowcount == 1 and problem and values["error"] != row.error:
                _record(row.id, P.PENDING, P.PENDING, source="worker", note=values["error"])
            db.session.commit()


def check_now(payment: Payment) -> Outcome | None:
    """The console's "check now": ask the gateway about one pending payment at once.
    Raises GatewayError when it cannot answer, or cannot read one of its payments; None
    when it knows nothing of it."""
    gateway = available().get(payment.gateway)
    if gateway is None or not gateway.can_check or payment.invoice_id is None:
        return None
    pair = (payment.invoice_id, tuple(a.reference for a in _attempts(payment.id)))
    db.session.commit()
    checked = gateway.check_invoices([pair])
    outcome = None
    for event in checked.events:
        outcome = apply_event(event, source="console check")
    problem = checked.unreadable.get(payment.invoice_id)
    if problem:
        raise GatewayRefused(problem)
    return outcome


def cancel_topup(user: User, payment_id: int) -> Payment:
    """The customer gives up one of their unpaid invoices: it is no longer offered for
    payment nor checked by the worker. Money that reaches the gateway anyway is still
    credited when the gateway says so (CREDITABLE). Raises TopUpError when the payment is
    not theirs or no longer waiting. Commits."""
    payment = get_for_user(user, payment_id)
    if payment is None or not _transition(
        payment.id, [P.PENDING], P.CANCELLED, source="customer", note="cancelled by the customer"
    ):
        db.session.rollback()
        raise TopUpError("This payment is not waiting any more; there is nothing to cancel.")
    db.session.commit()
    db.session.refresh(payment)
    return payment


# -- reading ------------------------------------------------------------------------------


def find(gateway_name: str, invoice_id: str) -> Payment | None:
    """Our payment for a gateway's invoice id, or None."""
    return db.session.execute(
        select(Payment).where(Payment.gateway == gateway_name, Payment.invoice_id == invoice_id)
    ).scalar_one_or_none()


def history_query(user_id: int):
    return select(Payment).where(Payment.user_id == user_id).order_by(Payment.id.desc())


def get_for_user(user: User, payment_id: int) -> Payment | None:
    payment = db.session.get(Payment, payment_id)
    return payment if payment is not None and payment.user_id == user.id else None


@dataclass(frozen=True)
class PaymentFilter:
    status: str | None = None
    gateway: str | None = None
    email: str | None = None
    flagged: bool = False
    created_from: dt.date | None = None
    created_to: dt.date | None = None


def console_query(spec: PaymentFilter):
    stmt = select(Payment).join(User, User.id == Payment.user_id).order_by(Payment.id.desc())
    if spec.status:
        stmt = stmt.where(Payment.status == spec.status)
    if spec.gateway:
        stmt = stmt.where(Payment.gateway == spec.gateway)
    if spec.email:
        stmt = stmt.where(User.email.contains(spec.email.strip().lower(), autoescape=True))
    if spec.flagged:
        stmt = stmt.where(Payment.flag_reason.is_not(None))
    if spec.created_from:
        stmt = stmt.where(Payment.created_at >= dt.datetime.combine(spec.created_from, dt.time()))
    if spec.created_to:
        end = dt.datetime.combine(spec.created_to, dt.time()) + dt.timedelta(days=1)
        stmt = stmt.where(Payment.created_at < end)
    return stmt


@dataclass
class Totals:
    count: int = 0
    amount: int = 0  # paid top-ups, without bonuses
    bonus: int = 0


def daily_totals(days: int = 30) -> dict[dt.date, Totals]:
    """Paid top-ups per UTC day of payment, the last `days` days (days without any left out)."""
    since = dt.datetime.combine(utcnow().date() - dt.timedelta(days=days - 1), dt.time())
    day = func.date(Payment.paid_at)
    totals: dict[dt.date, Totals] = {}
    for when, count, amount, bonus in db.session.execute(
        select(day, func.count(), func.sum(Payment.amount), func.sum(Payment.bonus))
        .where(Payment.status == P.PAID.value, Payment.paid_at >= since)
        .group_by(day)
    ):
        if isinstance(when, str):
            when = dt.date.fromisoformat(when)
        totals[when] = Totals(count, int(amount or 0), int(bonus or 0))
    return totals


@dataclass
class Overview:
    days: list[tuple[dt.date, Totals]]
    periods: dict[str, Totals]
    pending: int
    flagged: int


def totals(days: int = 30) -> Overview:
    """Top-up figures for the console: per day, per period (today, 7 and 30 days), and how
    many payments wait or need the operator."""
    per_day = daily_totals(days)
    today = utcnow().date()
    periods = {}
    for key, span in (("today", 1), ("7d", 7), ("30d", 30)):
        total = Totals()
        for offset in range(span):
            found = per_day.get(today - dt.timedelta(days=offset))
            if found:
                total.count += found.count
                total.amount += found.amount
                total.bonus += found.bonus
        periods[key] = total
    counts = dict(
        db.session.execute(
            select(Payment.status, func.count())
            .where(Payment.status == P.PENDING.value)
            .group_by(Payment.status)
        ).all()
    )
    flagged = db.session.execute(
        select(func.count()).select_from(Payment).where(Payment.flag_reason.is_not(None))
    ).scalar_one()
    return Overview(
        days=sorted(per_day.items(), reverse=True),
        periods=periods,
        pending=counts.get(P.PENDING.value, 0),
        flagged=flagged,
    )


def ledger_rows(payment_id: int) -> list[LedgerEntry]:
    return list(
        db.session.execute(
            select(LedgerEntry).where(LedgerEntry.payment_id == payment_id).order_by(LedgerEntry.id)
        ).scalars()
    )


def can_check(payment: Payment) -> bool:
    gateway = available().get(payment.gateway)
    return bool(
        gateway is not None
        and gateway.can_check
        and payment.invoice_id
        and payment.status == P.PENDING.value
    )
