"""What a customer's account has done: its activations and its balance changes (read-only).

Every query is scoped to one user; nothing here lets one customer see another's rows.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Select, select

from ..extensions import db
from ..models import Activation, LedgerEntry, SmsMessage


def activations_query(
    user_id: int, *, statuses: Iterable[str] | None = None, service: str | None = None
) -> Select:
    """The user's activations, newest first, optionally of some statuses and one service."""
    stmt = select(Activation).where(Activation.user_id == user_id)
    if statuses is not None:
        stmt = stmt.where(Activation.status.in_(list(statuses)))
    if service:
        stmt = stmt.where(Activation.service == service)
    return stmt.order_by(Activation.id.desc())


def services_used(user_id: int) -> list[str]:
    """The service codes the user has bought, for a filter."""
    return list(
        db.session.execute(
            select(Activation.service)
            .where(Activation.user_id == user_id)
            .distinct()
            .order_by(Activation.service)
        ).scalars()
    )


def ledger_query(user_id: int) -> Select:
    """The user's balance changes, newest first (each carries the balance after it)."""
    return select(LedgerEntry).where(LedgerEntry.user_id == user_id).order_by(LedgerEntry.id.desc())


def activations_by_id(user_id: int, ids: Iterable[int]) -> dict[int, Activation]:
    """The user's activations among `ids` (others' ids are silently left out)."""
    wanted = {int(i) for i in ids}
    if not wanted:
        return {}
    rows = db.session.execute(
        select(Activation).where(Activation.user_id == user_id, Activation.id.in_(wanted))
    ).scalars()
    return {row.id: row for row in rows}


def codes_received(activation_ids: Iterable[int]) -> dict[int, list[str]]:
    """The codes each activation has received, oldest first (activations without any are
    left out). Callers pass ids already scoped to one user."""
    wanted = {int(i) for i in activation_ids}
    if not wanted:
        return {}
    codes: dict[int, list[str]] = {}
    rows = db.session.execute(
        select(SmsMessage.activation_id, SmsMessage.code)
        .where(SmsMessage.activation_id.in_(wanted))
        .order_by(SmsMessage.activation_id, SmsMessage.seq)
    )
    for activation_id, code in rows:
        codes.setdefault(activation_id, []).append(code)
    return codes


def recent_activations(user_id: int, limit: int = 10) -> list[Activation]:
    """The user's latest activations, newest first."""
    return list(db.session.execute(activations_query(user_id).limit(limit)).scalars())
