"""Health of the parts: the database now, the providers as last seen.

/healthz never calls the upstream: a load balancer's check must answer at once even while
GrizzlySMS is slow or down. `flask worker` refreshes the shared upstream reading (the
balance, or why it could not be read) once a minute; the report carries its age. Anyone
sees whether the parts are healthy; only a privileged caller sees the operator's figures.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import func, select, text

from ..clock import utcnow
from ..extensions import db
from ..money import SCALE, format_cost

log = logging.getLogger(__name__)


def database_ok() -> bool:
    try:
        db.session.execute(text("SELECT 1"))
        db.session.commit()
        return True
    except Exception:
        db.session.rollback()
        log.warning("database unreachable", exc_info=True)
        return False


def upstream_status() -> dict:
    """{"reachable", "balance", "checked_at", "age_seconds"[, "error"]} from the shared
    reading, without asking the upstream."""
    from .stats import stored_upstream_balance

    reading = stored_upstream_balance()
    status = {
        "reachable": reading.reachable if reading.checked_at else None,
        "balance": format_cost(reading.balance) if reading.balance is not None else None,
        "checked_at": reading.checked_at.isoformat(timespec="seconds")
        if reading.checked_at
        else None,
        "age_seconds": int((utcnow() - reading.checked_at).total_seconds())
        if reading.checked_at
        else None,
    }
    if reading.error:
        status["error"] = reading.error
    return status


def providers_status() -> dict:
    """{name: {"enabled", "breaker", "reachable", "balance", "checked_at", "age_seconds"[,
    "error"]}} for every provider, from the shared readings and breaker state (no provider
    is asked). "error" is why its calls or its balance last failed, in words, while they
    fail."""
    from . import provider, routing
    from .stats import stored_provider_balances

    readings = stored_provider_balances()
    now = utcnow()
    report = {}
    for row in provider.all_providers():
        reading = readings[row.name]
        report[row.name] = {
            "enabled": row.enabled,
            "breaker": routing.breaker_state(row, now).state,
            "reachable": reading.reachable if reading.checked_at else None,
            "balance": format_cost(reading.balance) if reading.balance is not None else None,
            "checked_at": reading.checked_at.isoformat(timespec="seconds")
            if reading.checked_at
            else None,
            "age_seconds": int((now - reading.checked_at).total_seconds())
            if reading.checked_at
            else None,
        }
        error = (row.last_error if row.failures else None) or reading.error
        if error and (row.failures or not reading.reachable):
            report[row.name]["error"] = error
    return report


# What anyone may see of a reading: whether it is healthy and how old it is (and, for a
# provider, whether it is switched on and its breaker). Balances and error texts are the
# operator's (the threat model counts them as assets).
PUBLIC_UPSTREAM_FIELDS = ("reachable", "checked_at", "age_seconds")
PUBLIC_PROVIDER_FIELDS = ("enabled", "breaker", *PUBLIC_UPSTREAM_FIELDS)


def _public(reading: dict, fields: tuple[str, ...]) -> dict:
    return {k: reading.get(k) for k in fields}


def check(*, private: bool = False) -> dict:
    """The health report. `private` (an admin, or the HEALTHZ_TOKEN bearer: decided by the
    view, `observability.sees_private_health`) adds the operator's figures: balances and why
    a reading failed."""
    report: dict = {"database": "ok" if database_ok() else "unreachable"}
    if report["database"] == "ok":
        providers = None
        try:
            upstream = upstream_status()
            providers = providers_status()
        except Exception:
            db.session.rollback()
            log.exception("upstream health check failed")
            upstream = {"reachable": None}
        if not private:
            upstream = _public(upstream, PUBLIC_UPSTREAM_FIELDS)
            if providers is not None:
                providers = {
                    name: _public(reading, PUBLIC_PROVIDER_FIELDS)
                    for name, reading in providers.items()
                }
        report["upstream"] = upstream
        if providers is not None:
            report["providers"] = providers
        db.session.commit()  # hand the connection back: a health check holds nothing open
    report["status"] = "ok" if report["database"] == "ok" else "degraded"
    return report


# -- figures for /metrics ------------------------------------------------------------------

WORKER_PASS_JOB = "worker_pass"  # JobState: last_run_at is when a worker last ended a pass


@dataclass
class ScrapeFigures:
    """What /metrics reads from the database at each scrape (amounts in currency)."""

    activations_open: int
    outbox_pending: dict[str, int]  # "webhook", "telegram" → queued rows
    worker_last_pass: float  # unix seconds; 0 when no worker ever ended a pass
    provider_balances: dict[str, float]  # providers with a reading only
    breakers_open: dict[str, bool]
    customer_wallets: float


def scrape_figures() -> ScrapeFigures:
    """Read the figures for one scrape (a handful of indexed counts and sums; no provider
    is asked: balances are the worker's shared readings)."""
    from ..models import (
        Activation,
        JobState,
        TelegramMessage,
        TelegramMessageStatus,
        User,
        WebhookEvent,
        WebhookEventStatus,
    )
    from . import provider
    from .activations import ACTIVE_STATES
    from .breaker import breaker_state
    from .stats import stored_provider_balances

    def count(stmt) -> int:
        return int(db.session.execute(stmt).scalar_one() or 0)

    activations_open = count(
        select(func.count())
        .select_from(Activation)
        .where(Activation.status.in_([s.value for s in ACTIVE_STATES]))
    )
    outbox = {
        "webhook": count(
            select(func.count())
            .select_from(WebhookEvent)
            .where(WebhookEvent.status == WebhookEventStatus.QUEUED.value)
        ),
        "telegram": count(
            select(func.count())
            .select_from(TelegramMessage)
            .where(TelegramMessage.status == TelegramMessageStatus.QUEUED.value)
        ),
    }
    last_pass = db.session.execute(
        select(JobState.last_run_at).where(JobState.name == WORKER_PASS_JOB)
    ).scalar_one_or_none()
    wallets = count(select(func.coalesce(func.sum(User.balance), 0)))
    now = utcnow()
    readings = stored_provider_balances()
    return ScrapeFigures(
        activations_open=activations_open,
        outbox_pending=outbox,
        worker_last_pass=last_pass.replace(tzinfo=dt.UTC).timestamp() if last_pass else 0.0,
        provider_balances={
            name: reading.balance / SCALE
            for name, reading in readings.items()
            if reading.balance is not None
        },
        breakers_open={
            row.name: breaker_state(row, now).state == "open" for row in provider.all_providers()
        },
        customer_wallets=wallets / SCALE,
    )
