"""What a customer's account has done: its activations and its balance changes (read-only).

Every query is scoped to one user; nothing here lets one customer see another's rows.
"""

from __future__ import annotations

import datetime as dt
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


def messages_received(activation_ids: Iterable[int]) -> dict[int, list[SmsMessage]]:
    """The SMS each activation has received (code and text), oldest first; activations
    without any are left out. Callers pass ids already scoped to one user."""
    wanted = {int(i) for i in activation_ids}
    if not wanted:
        return {}
    messages: dict[int, list[SmsMessage]] = {}
    rows = db.session.execute(
        select(SmsMessage)
        .where(SmsMessage.activation_id.in_(wanted))
        .order_by(SmsMessage.activation_id, SmsMessage.seq)
    ).scalars()
    for row in rows:
        messages.setdefault(row.activation_id, []).append(row)
    return messages


HISTORY_LIMIT = 100  # rows one getHistory answers at most


def api_history(
    user_id: int,
    *,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    offset: int = 0,
    limit: int = HISTORY_LIMIT,
) -> list[tuple[Activation, list[str]]]:
    """getHistory: the user's activations created within [start, end], newest first, after
    skipping `offset`, at most `limit` (capped at HISTORY_LIMIT), each with its SMS texts
    (the code where no text was kept), oldest first."""
    stmt = activations_query(user_id)
    if start is not None:
        stmt = stmt.where(Activation.created_at >= start)
    if end is not None:
        stmt = stmt.where(Activation.created_at <= end)
    rows = list(db.session.execute(stmt.offset(offset).limit(min(limit, HISTORY_LIMIT))).scalars())
    texts: dict[int, list[str]] = {}
    if rows:
        for activation_id, code, text in db.session.execute(
            select(SmsMessage.activation_id, SmsMessage.code, SmsMessage.text)
            .where(SmsMessage.activation_id.in_([a.id for a in rows]))
            .order_by(SmsMessage.activation_id, SmsMessage.seq)
        ):
            texts.setdefault(activation_id, []).append(text or code)
    return [(a, texts.get(a.id, [])) for a in rows]


def recent_activations(user_id: int, limit: int = 10) -> list[Activation]:
    """The user's latest activations, newest first."""
    return list(db.session.execute(activations_query(user_id).limit(limit)).scalars())
