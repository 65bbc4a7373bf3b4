"""Health of the parts: the database now, the upstream from a short cache.

The upstream's balance is asked at most once a minute across all processes (cached in
the job_states table), so load-balancer checks never hammer the provider.
"""

from __future__ import annotations

import logging

from sqlalchemy import text

from ..extensions import db
from ..money import format_cost

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
    """{"reachable", "balance", "checked_at"[, "error"]}: the console's shared reading."""
    from .stats import upstream_balance

    reading = upstream_balance(max_age)
    status = {
        "reachable": reading.reachable if reading.checked_at else None,
        "balance": format_cost(reading.balance) if reading.balance is not None else None,
        "checked_at": reading.checked_at.isoformat(timespec="seconds")
        if reading.checked_at
        else None,
    }
    if reading.error:
        status["error"] = reading.error
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
        db.session.commit()  # hand the connection back: a health check holds nothing open
    report["status"] = "ok" if report["database"] == "ok" else "degraded"
    return report
