"""Ledger verification: the books must balance.

Checks that every balance equals the sum of its ledger rows, that each row's running
balance is consistent, that each activation was charged at most once and refunded at most
once (the unique constraint makes more impossible; we check anyway), that refunds never
exceed the charge, and that no refunded activation delivered a code.
"""

from __future__ import annotations

from sqlalchemy import func, or_, select

from ..extensions import db
from ..models import (
    Activation,
    ActivationStatus,
    LedgerEntry,
    LedgerKind,
    Payment,
    Rental,
    RentPeriod,
    User,
)
from ..models import PaymentStatus as P
from ..models import RentalStatus as RS


def verify_ledger() -> list[str]:
    """A list of human-readable problems; empty when the books are right."""
    problems: list[str] = []

    sums = dict(
        db.session.execute(
            select(LedgerEntry.user_id, func.sum(LedgerEntry.amount)).group_by(LedgerEntry.user_id)
        ).all()
    )
    for user_id, email, balance in db.session.execute(
        select(User.id, User.email, User.balance)
    ).all():
        total = sums.get(user_id, 0) or 0
        if balance != total:
            problems.append(f"user {user_id} ({email}): balance {balance} != ledger sum {total}")
        if balance < 0:
            problems.append(f"user {user_id} ({email}): negative balance {balance}")

    # Running balances: each row's balance_after = previous balance_after + amount.
    last: dict[int, int] = {}
    rows = db.session.execute(
        select(LedgerEntry.id, LedgerEntry.user_id, LedgerEntry.amount, LedgerEntry.balance_after)
        .order_by(LedgerEntry.user_id, LedgerEntry.id)
        .execution_options(yield_per=5000)
    )
    for entry_id, user_id, amount, balance_after in rows:
        expected = last.get(user_id, 0) + amount
        if balance_after != expected:
            problems.append(
                f"ledger row {entry_id} (user {user_id}): balance_after {balance_after} "
                f"!= {expected}"
            )
        last[user_id] = balance_after

    per_kind = db.session.execute(
        select(
            LedgerEntry.activation_id, LedgerEntry.kind, func.count(), func.sum(LedgerEntry.amount)
        )
        .where(LedgerEntry.activation_id.is_not(None))
        .group_by(LedgerEntry.activation_id, LedgerEntry.kind)
    ).all()
    charged: dict[int, int] = {}
    refunded: dict[int, int] = {}
    for activation_id, kind, count, total in per_kind:
        if count > 1:
            problems.append(f"activation {activation_id}: {count} {kind} rows")
        if kind == LedgerKind.PURCHASE.value:
            charged[activation_id] = -total
        elif kind == LedgerKind.REFUND.value:
            refunded[activation_id] = total
    for activation_id, amount in refunded.items():
        if amount > charged.get(activation_id, 0):
            problems.append(
                f"activation {activation_id}: refunded {amount} more than charged "
                f"{charged.get(activation_id, 0)}"
            )

    refunded_ids = list(refunded)
    for chunk_start in range(0, len(refunded_ids), 500):
        chunk = refunded_ids[chunk_start : chunk_start + 500]
        for act_id, status, code in db.session.execute(
            select(Activation.id, Activation.status, Activation.code).where(
                Activation.id.in_(chunk)
            )
        ):
            if code is not None:
                problems.append(f"activation {act_id}: refunded but delivered a code")
            if status not in REFUNDED_STATES:
                problems.append(f"activation {act_id}: refunded but status is {status}")

    # Every closed-with-refund activation has its refund; every charged one its charge.
    for act_id, status in db.session.execute(
        select(Activation.id, Activation.status).where(
            Activation.status.in_([s.value for s in REFUNDED_STATES_ENUM])
        )
    ):
        if act_id in charged and act_id not in refunded:
            problems.append(f"activation {act_id}: {status} but never refunded")
    for act_id, amount, price in db.session.execute(
        select(LedgerEntry.activation_id, LedgerEntry.amount, Activation.price)
        .join(Activation, Activation.id == LedgerEntry.activation_id)
        .where(
            LedgerEntry.kind == LedgerKind.PURCHASE.value, -LedgerEntry.amount != Activation.price
        )
    ):
        problems.append(f"activation {act_id}: charged {-amount} but price is {price}")
    problems.extend(payment_problems())
    problems.extend(rent_problems())
    return problems


RENT_CHARGES = (LedgerKind.RENT.value, LedgerKind.RENT_EXTENSION.value)
RENT_KINDS = (*RENT_CHARGES, LedgerKind.RENT_REFUND.value)


def rent_problems() -> list[str]:
    """Every rent row names a period of its customer's rental; each period is charged once
    at its price and refunded at most that; a refunded period is one of a cancelled or
    failed rental (or a refused continue), and every charged period of a cancelled or
    failed rental is refunded; a rental's price is what its periods kept."""
    problems: list[str] = []
    rows: dict[tuple[int, str], list[tuple[int, int]]] = {}
    for entry_id, period_id, kind, user_id, amount in db.session.execute(
        select(
            LedgerEntry.id,
            LedgerEntry.rent_period_id,
            LedgerEntry.kind,
            LedgerEntry.user_id,
            LedgerEntry.amount,
        ).where(or_(LedgerEntry.rent_period_id.is_not(None), LedgerEntry.kind.in_(RENT_KINDS)))
    ):
        if period_id is None:
            problems.append(f"ledger row {entry_id}: a {kind} row names no rent period")
        elif kind not in RENT_KINDS:
            problems.append(f"ledger row {entry_id}: a {kind} row names rent period {period_id}")
        else:
            rows.setdefault((period_id, kind), []).append((user_id, amount))
    periods = {
        row.id: row
        for row in db.session.execute(
            select(
                RentPeriod.id,
                RentPeriod.rental_id,
                RentPeriod.seq,
                RentPeriod.price,
                RentPeriod.status,
                Rental.user_id,
                Rental.status.label("rental_status"),
            ).join(Rental, Rental.id == RentPeriod.rental_id)
        )
    }
    kept: dict[int, int] = {}
    for period in periods.values():
        charge_kind = LedgerKind.RENT.value if period.seq == 1 else LedgerKind.RENT_EXTENSION.value
        charges = rows.get((period.id, charge_kind), [])
        refunds = rows.get((period.id, LedgerKind.RENT_REFUND.value), [])
        charged = -sum(amount for _user, amount in charges)
        refunded = sum(amount for _user, amount in refunds)
        where = f"rental {period.rental_id} period {period.seq}"
        if len(charges) > 1 or len(refunds) > 1:
            problems.append(f"{where}: charged {len(charges)}, refunded {len(refunds)} times")
        if any(user != period.user_id for user, _amount in charges + refunds):
            problems.append(f"{where}: a ledger row of another customer")
        if charges and charged != period.price:
            problems.append(f"{where}: charged {charged} but its price is {period.price}")
        if refunded > charged:
            problems.append(f"{where}: refunded {refunded} more than charged {charged}")
        if (period.status == "refunded") != bool(refunds) and (charges or refunds):
            problems.append(f"{where}: {period.status} but refunded {refunded}")
        closed_with_refund = period.rental_status in (RS.CANCELLED.value, RS.FAILED.value)
        if closed_with_refund and charges and not refunds:
            problems.append(f"{where}: rental {period.rental_status} but never refunded")
        if period.status != "refunded":
            kept[period.rental_id] = kept.get(period.rental_id, 0) + period.price
    for rental_id, price, status in db.session.execute(
        select(Rental.id, Rental.price, Rental.status)
    ):
        expected = kept.get(rental_id, 0)
        if status not in (RS.CANCELLED.value, RS.FAILED.value) and price != expected:
            problems.append(f"rental {rental_id}: price {price} but its periods kept {expected}")
    for (period_id, kind), _entries in rows.items():
        if period_id not in periods:
            problems.append(f"rent period {period_id}: {kind} row but no such period")
    return problems


PAYMENT_KINDS = (
    LedgerKind.PAYMENT.value,
    LedgerKind.PAYMENT_BONUS.value,
    LedgerKind.PAYMENT_REFUND.value,
)
# A refunded top-up was paid and credited first.
CREDITED = (P.PAID.value, P.REFUNDED.value)


def payment_problems() -> list[str]:
    """Every top-up credit matches a paid payment (its customer, its amount, its bonus),
    every paid payment was credited exactly once, and every refunded one debited once (its
    amount and bonus)."""
    problems: list[str] = []
    credits: dict[tuple[int, str], list[tuple[int, int]]] = {}
    for entry_id, payment_id, kind, user_id, amount in db.session.execute(
        select(
            LedgerEntry.id,
            LedgerEntry.payment_id,
            LedgerEntry.kind,
            LedgerEntry.user_id,
            LedgerEntry.amount,
        ).where(or_(LedgerEntry.payment_id.is_not(None), LedgerEntry.kind.in_(PAYMENT_KINDS)))
    ):
        if payment_id is None:
            problems.append(f"ledger row {entry_id}: a {kind} credit names no payment")
        elif kind not in PAYMENT_KINDS:
            problems.append(f"ledger row {entry_id}: a {kind} row names payment {payment_id}")
        else:
            credits.setdefault((payment_id, kind), []).append((user_id, amount))
    payments = {
        row.id: row
        for row in db.session.execute(
            select(Payment.id, Payment.user_id, Payment.status, Payment.amount, Payment.bonus)
        )
    }
    for (payment_id, kind), rows in credits.items():
        payment = payments.get(payment_id)
        if len(rows) > 1:
            problems.append(f"payment {payment_id}: {len(rows)} {kind} rows")
        if payment is None:
            problems.append(f"payment {payment_id}: credited but no such payment")
            continue
        refund = kind == LedgerKind.PAYMENT_REFUND.value
        if refund and payment.status != P.REFUNDED.value:
            problems.append(f"payment {payment_id}: debited but its status is {payment.status}")
        elif payment.status not in CREDITED:
            problems.append(f"payment {payment_id}: credited but its status is {payment.status}")
        if refund:
            expected = -(payment.amount + payment.bonus)
        else:
            expected = payment.amount if kind == LedgerKind.PAYMENT.value else payment.bonus
        for user_id, amount in rows:
            if user_id != payment.user_id:
                problems.append(f"payment {payment_id}: {kind} credited to user {user_id}")
            if amount != expected:
                problems.append(f"payment {payment_id}: {kind} of {amount}, expected {expected}")
    for payment in payments.values():
        if payment.status == P.REFUNDED.value and (
            (payment.id, LedgerKind.PAYMENT_REFUND.value) not in credits
        ):
            problems.append(f"payment {payment.id}: refunded but never debited")
        if payment.status not in CREDITED:
            continue
        if (payment.id, LedgerKind.PAYMENT.value) not in credits:
            problems.append(f"payment {payment.id}: paid but never credited")
        if payment.bonus and (payment.id, LedgerKind.PAYMENT_BONUS.value) not in credits:
            problems.append(f"payment {payment.id}: paid but its bonus was never credited")
    return problems


REFUNDED_STATES_ENUM = (
    ActivationStatus.CANCELLED,
    ActivationStatus.EXPIRED,
    ActivationStatus.FAILED,
)
REFUNDED_STATES = {s.value for s in REFUNDED_STATES_ENUM}
