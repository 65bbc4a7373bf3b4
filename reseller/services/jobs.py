"""The one background pattern: rows claimed by a guarded update, periodic jobs, backoff.

Every background task (status polls, expiry, purchase settlement, and any outbox a later
feature adds) has the same shape: select candidate rows, skipping those another worker has
locked (`FOR UPDATE SKIP LOCKED` on PostgreSQL; ignored on SQLite), then claim each one with
an UPDATE guarded on `claimed_until`, so that only one worker process on any host wins it.
A claim expires by itself, so a worker that dies mid-task never strands a row.

Periodic jobs (price refresh, settlement, the upstream reading) are rows of `JobState`
taken the same way. This module sits below every service that schedules work; the worker
sits above them all.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import or_, update

from ..extensions import db
from ..models import JobState, utcnow
from ..transactions import writing

BATCH = 200


def claim_rows(model, stmt, claim_seconds: int, *, batch: int = BATCH) -> list[int]:
    """Claim up to `batch` ids of `model` selected by `stmt` (a `select(model.id)…`).

    `model` needs an integer `id` and a nullable `claimed_until` column. The claim is
    committed before this returns; `release` ends it early.
    """
    now = utcnow()
    free = or_(model.claimed_until.is_(None), model.claimed_until <= now)
    ids = list(
        db.session.execute(stmt.where(free).limit(batch).with_for_update(skip_locked=True))
        .scalars()
        .all()
    )
    claimed = []
    until = now + dt.timedelta(seconds=claim_seconds)
    for row_id in ids:
        result = db.session.execute(
            update(model)
            .where(model.id == row_id, free)
            .values(claimed_until=until)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:
            claimed.append(row_id)
    db.session.commit()
    return claimed


def release(model, row_id: int) -> None:
    db.session.execute(
        update(model)
        .where(model.id == row_id)
        .values(claimed_until=None)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def backoff_seconds(attempt: int, *, first: float, last: float, steps: int) -> float:
    """Exponential delay before retry number `attempt` (1-based): `first` … `last` in `steps`."""
    if steps <= 1 or attempt <= 1:
        return first
    attempt = min(attempt, steps)
    ratio = (last / first) ** (1 / (steps - 1))
    return first * ratio ** (attempt - 1)


def _job(name: str) -> JobState:
    job = db.session.get(JobState, name)
    if job is None:
        db.session.add(JobState(name=name))
        try:
            db.session.commit()
        except Exception:
            db.session.rollback()
        job = db.session.get(JobState, name)
    return job


@writing()  # also from a console page (a provider's balance)
def claim_job(name: str, every: int, hold: int = 300) -> bool:
    """Take the named periodic job if it is due and nobody holds it."""
    _job(name)
    now = utcnow()
    result = db.session.execute(
        update(JobState)
        .where(
            JobState.name == name,
            or_(JobState.locked_until.is_(None), JobState.locked_until <= now),
            or_(
                JobState.last_run_at.is_(None),
                JobState.last_run_at <= now - dt.timedelta(seconds=every),
            ),
        )
        .values(locked_until=now + dt.timedelta(seconds=hold))
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return result.rowcount == 1


@writing()
def finish_job(name: str, value: str | None = None, *, ran: bool = True) -> None:
    values: dict = {"locked_until": None}
    if ran:
        values["last_run_at"] = utcnow()
    if value is not None:
        values["value"] = value
    db.session.execute(update(JobState).where(JobState.name == name).values(**values))
    db.session.commit()


def mark_ran(name: str) -> None:
    """Record that the job `name` ran now, creating its row: a heartbeat. Commits."""
    _job(name)
    finish_job(name)
