"""The wallet: the one path through which every balance changes.

Each change is a single conditional UPDATE of the balance plus an append-only ledger row,
in the caller's transaction. The debit cannot overdraw: `UPDATE … WHERE balance >= amount`
is checked by its result (row locks are no help on SQLite), and a CHECK constraint backs it.
Functions here do not commit, so a purchase can commit its hold and its activation
together; `adjust` is the committed form for operators.

Both statements are Core statements built once at import (the balance UPDATE and the ledger
INSERT … RETURNING id): they are the money path's hottest writes, and the ORM's unit of
work added a flush and an object per entry to each without guarding anything more — the
ledger's append-only rule, its CHECKs and unique (activation, kind) live in the database.
"""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import bindparam, func, insert, select, update

from .. import db_reads
from ..extensions import db
from ..models import LedgerEntry, LedgerKind, User


class WalletError(Exception):
    """Base for wallet failures."""


class InsufficientFunds(WalletError):
    """The balance does not cover the debit; nothing changed."""


class UnknownAccount(WalletError):
    pass


class Posting(NamedTuple):
    """A ledger row as written (ledger rows never change afterwards)."""

    id: int
    user_id: int
    amount: int
    kind: str
    activation_id: int | None
    payment_id: int | None
    balance_after: int
    rent_period_id: int | None = None


_users = User.__table__
_ledger = LedgerEntry.__table__
_CREDIT = (
    update(_users)
    .where(_users.c.id == bindparam("account"))
    .values(balance=_users.c.balance + bindparam("delta"))
    .returning(_users.c.balance)
)
_DEBIT = _CREDIT.where(_users.c.balance >= -bindparam("delta"))
_ENTRY = insert(_ledger).returning(_ledger.c.id)
# Run on the driver's cursor in the session's transaction (db_reads.InSession: compiled by
# SQLAlchemy once, without its per-execution machinery).
_HOT_CREDIT = db_reads.InSession(_CREDIT)
_HOT_DEBIT = db_reads.InSession(_DEBIT)
_HOT_ENTRY = db_reads.InSession(_ENTRY)


def _apply(
    user_id: int,
    amount: int,
    kind: LedgerKind,
    *,
    activation_id: int | None = None,
    payment_id: int | None = None,
    rent_period_id: int | None = None,
    reference: str | None = None,
    note: str | None = None,
    actor_id: int | None = None,
) -> Posting:
    if amount == 0:
        raise ValueError("a ledger entry moves money")
    balance_after = (_HOT_DEBIT if amount < 0 else _HOT_CREDIT).scalar(
        {"account": user_id, "delta": amount}
    )
    if balance_after is None:
        if db.session.get(User, user_id) is None:
            raise UnknownAccount(f"no user {user_id}")
        raise InsufficientFunds("insufficient balance")
    values = {
        **({"rent_period_id": rent_period_id} if rent_period_id is not None else {}),
        "user_id": user_id,
        "amount": amount,
        "kind": kind.value,
        "activation_id": activation_id,
        "payment_id": payment_id,
        "reference": reference or _reference(activation_id, payment_id, rent_period_id),
        "balance_after": balance_after,
        "note": note,
        "actor_id": actor_id,
    }
    entry_id = _HOT_ENTRY.scalar(values)
    # Keep an already-loaded User in step with the database.
    user = db.session.identity_map.get((User, (user_id,), None))
    if user is not None:
        db.session.expire(user, ["balance"])
    return Posting(
        entry_id,
        user_id,
        amount,
        kind.value,
        activation_id,
        payment_id,
        balance_after,
        rent_period_id,
    )


def _reference(
    activation_id: int | None, payment_id: int | None, rent_period_id: int | None = None
) -> str | None:
    if activation_id:
        return f"activation:{activation_id}"
    if payment_id:
        return f"payment:{payment_id}"
    if rent_period_id:
        return f"rent-period:{rent_period_id}"
    return None


def credit(user_id: int, amount: int, kind: LedgerKind = LedgerKind.TOPUP, **details) -> Posting:
    """Add `amount` (> 0) money units. Does not commit."""
    if amount <= 0:
        raise ValueError("credit amount must be positive")
    return _apply(user_id, amount, kind, **details)


def debit(user_id: int, amount: int, kind: LedgerKind = LedgerKind.PURCHASE, **details) -> Posting:
    """Take `amount` (> 0) money units. Raises InsufficientFunds (nothing changed). No commit."""
    if amount <= 0:
        raise ValueError("debit amount must be positive")
    return _apply(user_id, -amount, kind, **details)


def adjust(
    user_id: int,
    amount: int,
    *,
    note: str,
    actor_id: int | None = None,
    kind: LedgerKind | None = None,
) -> Posting:
    """An operator's credit (amount > 0) or debit (< 0), committed.

    Raises InsufficientFunds when a debit exceeds the balance, ValueError for zero.
    """
    if kind is None:
        kind = LedgerKind.TOPUP if amount > 0 else LedgerKind.ADJUSTMENT
    try:
        entry = _apply(user_id, amount, kind, note=note, actor_id=actor_id)
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return entry


def ledger_sum(user_id: int) -> int:
    return db.session.execute(
        select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(LedgerEntry.user_id == user_id)
    ).scalar_one()
