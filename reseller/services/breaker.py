"""The circuit breaker every process shares, on the provider's row.

Consecutive failures (transport failures, lost answers, account refusals) are counted by
guarded UPDATEs; at `BREAKER_FAILURES` the provider is skipped until `open_until`
(`BREAKER_COOLDOWN` seconds). After that it is tried again ("half-open"): one success closes
the breaker, one more failure opens it anew. This module sits below services.provider (whose
guarded client feeds it) and services.routing (which skips open providers).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import bindparam, case, or_, select, update

from .. import db_reads
from ..extensions import db
from ..models import JobState, Provider, utcnow
from ..transactions import writing
from ..upstream import errors as up

OFFERS_JOB = "offers"  # value: what the offers were last built from (services.catalog)

# Failures that say the provider cannot serve anyone now, rather than "not this number".
BREAKER_ERRORS: tuple[type[up.UpstreamError], ...] = (
    up.UpstreamUnavailable,
    up.UnknownOutcome,
    up.BadKey,
    up.NoKey,
    up.AccountInactive,
    up.IpNotAllowed,
    up.NoBalance,
    up.Banned,
    up.ErrorSql,
)


def _closed(now, open_until=Provider.open_until):
    """Whether a provider's breaker lets it be tried at `now` (a time or a bind parameter);
    `open_until`: the model's attribute, or its table's column in a Core statement."""
    return or_(open_until.is_(None), open_until <= now)


def mark_offers_stale() -> None:
    """Have the next worker pass rebuild the offers (no commit)."""
    db.session.execute(update(JobState).where(JobState.name == OFFERS_JOB).values(value=None))


def counts_against(exc: BaseException) -> bool:
    return isinstance(exc, BREAKER_ERRORS)


@writing()  # also from a page view's upstream call
def record_failure(name: str, error: str) -> None:
    """Count one failure of `name`; open its breaker at the threshold. Commits."""
    config = current_app.config
    now = utcnow()
    threshold = int(config["BREAKER_FAILURES"])
    until = now + dt.timedelta(seconds=int(config["BREAKER_COOLDOWN"]))
    db.session.rollback()
    db.session.execute(
        update(Provider)
        .where(Provider.name == name)
        .values(
            failures=Provider.failures + 1,
            last_error=error[:200],
            last_failure_at=now,
            open_until=case((Provider.failures + 1 >= threshold, until), else_=Provider.open_until),
        )
        .execution_options(synchronize_session=False)
    )
    mark_offers_stale()
    db.session.commit()


# What the breaker counts now, read fresh after each success outside any transaction:
# another process may have counted a failure since the caller read the provider's row, and
# a success ends every process's run of failures.
_COUNTED = db_reads.HotRead(
    select(Provider.__table__.c.failures, Provider.__table__.c.open_until).where(
        Provider.__table__.c.name == bindparam("name")
    )
)


@writing()
def record_success(name: str) -> None:
    """Close `name`'s breaker if it counted failures and is not open (a success while it
    cools down, say a price read, does not cut the cooling short). Reads first; writes
    (and commits) only when there is something to reset."""
    counted = _COUNTED.first(name=name)
    if counted is None or (counted.failures == 0 and counted.open_until is None):
        return
    db.session.rollback()
    result = db.session.execute(
        update(Provider)
        .where(
            Provider.name == name,
            or_(Provider.failures > 0, Provider.open_until.is_not(None)),
            _closed(utcnow()),
        )
        .values(failures=0, open_until=None)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount:
        mark_offers_stale()
    db.session.commit()


@dataclass(frozen=True)
class BreakerState:
    state: str  # "closed", "open", "half-open"
    failures: int
    open_until: dt.datetime | None
    last_error: str | None


def breaker_state(provider: Provider, now: dt.datetime | None = None) -> BreakerState:
    now = now or utcnow()
    threshold = int(current_app.config["BREAKER_FAILURES"])
    if provider.open_until is not None and provider.open_until > now:
        state = "open"
    elif provider.failures >= threshold:
        state = "half-open"
    else:
        state = "closed"
    return BreakerState(state, provider.failures, provider.open_until, provider.last_error)
