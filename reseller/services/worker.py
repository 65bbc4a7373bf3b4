"""The background pass: poll, expire, settle, refresh prices.

Run by `flask worker` (a loop) or `flask worker --once` (cron). Several workers may run at
once, on several hosts: rows are claimed in the database (`FOR UPDATE SKIP LOCKED` on
PostgreSQL, status- and time-guarded UPDATEs everywhere) so none is processed twice.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field

from flask import current_app
from sqlalchemy import or_, select

from ..extensions import db
from ..models import Activation, JobState, utcnow
from ..models import ActivationStatus as S
from ..upstream import errors as up
from . import activations, catalog, settings
from .jobs import claim_job, claim_rows, finish_job, release
from .provider import upstream

log = logging.getLogger(__name__)


@dataclass
class PassReport:
    polled: int = 0
    expired: int = 0
    settled: int = 0
    orphans_cancelled: int = 0
    prices_refreshed: bool = False
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"polled {self.polled}, expired {self.expired}, settled {self.settled}, "
            f"orphans cancelled {self.orphans_cancelled}, "
            f"prices {'refreshed' if self.prices_refreshed else 'fresh'}"
            + (f", errors: {'; '.join(self.errors)}" if self.errors else "")
        )


def settle_after() -> int:
    """Seconds after which a pending purchase cannot still be waiting for its answer."""
    config = current_app.config
    if config.get("SETTLE_AFTER"):
        return int(config["SETTLE_AFTER"])
    return int(config["UPSTREAM_CONNECT_TIMEOUT"] + config["UPSTREAM_READ_TIMEOUT"]) + 30


def poll_due(report: PassReport) -> None:
    now = utcnow()
    ids = claim_rows(
        Activation,
        select(Activation.id).where(
            Activation.status.in_([S.ALLOCATED.value, S.RETRY_WAIT.value]),
            or_(Activation.next_poll_at.is_(None), Activation.next_poll_at <= now),
        ),
        claim_seconds=60,
    )
    for activation_id in ids:
        try:
            activation = db.session.get(Activation, activation_id)
            before = activation.next_poll_at
            activation = activations.refresh_status(activation, actor="worker")
            if activation.next_poll_at != before:
                report.polled += 1
        except Exception as exc:  # keep going; one bad row must not stop the pass
            db.session.rollback()
            log.exception("poll %s failed", activation_id)
            report.errors.append(f"poll {activation_id}: {type(exc).__name__}")
        finally:
            release(Activation, activation_id)


def expire_overdue(report: PassReport) -> None:
    now = utcnow()
    ids = claim_rows(
        Activation,
        select(Activation.id).where(
            Activation.status.in_([S.ALLOCATED.value, S.CODE_RECEIVED.value, S.RETRY_WAIT.value]),
            Activation.expires_at <= now,
        ),
        claim_seconds=120,
    )
    for activation_id in ids:
        try:
            if activations.expire(activation_id, actor="worker"):
                report.expired += 1
        except Exception as exc:
            db.session.rollback()
            log.exception("expire %s failed", activation_id)
            report.errors.append(f"expire {activation_id}: {type(exc).__name__}")
        finally:
            release(Activation, activation_id)


def settle_purchases(report: PassReport) -> None:
    """Settle purchases whose answer never came, against the upstream's active list.

    A pending/unknown purchase older than `settle_after()` is refunded (FAILED). A number
    the upstream sold us that no activation of ours holds (an orphan) is cancelled at the
    upstream once it has been seen for `settle_after()` seconds, so that an answer still
    on its way is never raced.
    """
    if not claim_job("settle", every=0, hold=300):
        return
    try:
        cutoff = utcnow() - dt.timedelta(seconds=settle_after())
        stale = list(
            db.session.execute(
                select(Activation.id).where(
                    Activation.status.in_([S.PENDING.value, S.UNKNOWN.value]),
                    Activation.created_at <= cutoff,
                )
            ).scalars()
        )
        try:
            active = upstream().get_active_activations()
        except up.UpstreamError as exc:
            report.errors.append(f"active activations: {exc.token}")
            finish_job("settle", ran=False)
            return
        known = (
            set(
                db.session.execute(
                    select(Activation.upstream_id).where(
                        Activation.upstream_id.in_([a.upstream_id for a in active])
                    )
                ).scalars()
            )
            if active
            else set()
        )
        job = db.session.get(JobState, "settle")
        seen: dict[str, str] = json.loads(job.value) if job and job.value else {}
        now = utcnow()
        still: dict[str, str] = {}
        for item in active:
            if item.upstream_id in known:
                continue
            first = seen.get(item.upstream_id, now.isoformat())
            if dt.datetime.fromisoformat(first) <= cutoff:
                try:
                    upstream().set_status(item.upstream_id, activations.STATUS_CANCEL)
                    report.orphans_cancelled += 1
                    log.warning("cancelled orphan upstream activation %s", item.upstream_id)
                    continue
                except up.UpstreamError as exc:
                    log.info("orphan %s cancel: %s", item.upstream_id, exc.token)
            still[item.upstream_id] = first
        db.session.commit()
        for activation_id in stale:
            if activations._transition(
                activation_id,
                S.FAILED,
                actor="worker",
                note="purchase answer never arrived; refunded",
                closed_at=utcnow(),
            ):
                report.settled += 1
            db.session.commit()
        finish_job("settle", value=json.dumps(still))
    except Exception:
        db.session.rollback()
        finish_job("settle", ran=False)
        raise


def refresh_prices(report: PassReport, *, force: bool = False) -> None:
    every = current_app.config["PRICE_REFRESH_INTERVAL"]
    if not claim_job("prices", every=0 if force else every, hold=600):
        return
    try:
        counts = catalog.refresh(upstream())
        report.prices_refreshed = True
        finish_job("prices", value=json.dumps(counts))
    except up.UpstreamError as exc:
        db.session.rollback()
        report.errors.append(f"prices: {exc.token}")
        finish_job("prices", ran=False)


def refresh_upstream_balance(report: PassReport) -> None:  # noqa: ARG001
    """Keep the shared upstream reading (for /healthz and the console) at most a minute old."""
    from . import stats

    stats.upstream_balance()
    db.session.commit()


def run_once() -> PassReport:
    report = PassReport()
    settings.forget()
    for step in (
        refresh_prices,
        refresh_upstream_balance,
        expire_overdue,
        poll_due,
        settle_purchases,
    ):
        try:
            step(report)
        except Exception as exc:
            db.session.rollback()
            log.exception("worker step %s failed", step.__name__)
            report.errors.append(f"{step.__name__}: {type(exc).__name__}")
    return report
