"""Health of the parts: the database now, the upstream from a short cache.

The upstream's balance is asked at most once a minute across all processes (cached in
the job_states table), so load-balancer checks never hammer the provider.
"""

from __future__ import annotations

import datetime as dt
import json
import logging

from sqlalchemy import text

from ..extensions import db
from ..models import JobState, utcnow
from ..money import format_cost, to_units
from ..upstream.errors import UpstreamError

log = logging.getLogger(__name__)
CACHE_SECONDS = 60


def database_ok() -> bool:
    try:
        db.session.execute(text("SELECT 1"))
        db.session.commit()
        return True
    except Exception:
        db.session.rollback()
        log.warning("database unreachable", exc_info=True)
        return False


def upstream_status(max_age: int = CACHE_SECONDS) -> dict:
    """{"reachable": bool, "balance": "12.34" | None, "checked_at": iso} — cached."""
    from .provider import upstream
    from .worker import claim_job, finish_job

    job = db.session.get(JobState, "upstream_health")
    now = utcnow()
    cached = json.loads(job.value) if job is not None and job.value else None
    fresh = (
        job is not None
        and job.last_run_at
        and now - job.last_run_at < dt.timedelta(seconds=max_age)
    )
    if cached and fresh:
        return cached
    if not claim_job("upstream_health", every=max_age, hold=30):
        return cached or {"reachable": None, "balance": None, "checked_at": None}
    try:
        balance = upstream().get_balance()
        status = {
            "reachable": True,
            "balance": format_cost(to_units(balance)),
            "checked_at": now.isoformat(timespec="seconds"),
        }
    except UpstreamError as exc:
        status = {
            "reachable": False,
            "balance": None,
            "error": exc.token,
            "checked_at": now.isoformat(timespec="seconds"),
        }
    finish_job("upstream_health", value=json.dumps(status))
    return status


def check() -> dict:
    report: dict = {"database": "ok" if database_ok() else "unreachable"}
    if report["database"] == "ok":
        try:
            report["upstream"] = upstream_status()
        except Exception:
            db.session.rollback()
            log.exception("upstream health check failed")
            report["upstream"] = {"reachable": None}
    report["status"] = "ok" if report["database"] == "ok" else "degraded"
    return report
