"""Routing between providers, and the circuit breaker every process shares.

Policy `priority`: the enabled provider with stock and the lowest priority number first.
Policy `cheapest`: the lowest cost with stock first, ties by priority. A purchase tries the
candidates in that order (services.activations), failing over on definite refusals only.

The breaker lives on the provider's row: consecutive failures (transport failures, lost
answers, account refusals) are counted by guarded UPDATEs; at `BREAKER_FAILURES` the
provider is skipped until `open_until` (`BREAKER_COOLDOWN` seconds). After that it is
tried again ("half-open"): one success closes the breaker, one more failure opens it anew.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from flask import current_app
from sqlalchemy import case, or_, select, update

from ..extensions import db
from ..models import JobState, Provider, ProviderPrice, utcnow
from ..money import to_decimal, to_units
from ..upstream import errors as up
from . import settings

POLICIES = ("priority", "cheapest")
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


@dataclass(frozen=True)
class Candidate:
    """A provider able to serve one (service, country) now, and its guarded client (built
    in the caller's transaction: trying it needs no further read)."""

    name: str
    priority: int
    cost: int  # money units, converted from the provider's currency
    count: int
    rate: Decimal  # our money per one unit of the provider's currency
    client: Any = field(default=None, compare=False, repr=False)

    def max_price(self, price: int) -> Decimal:
        """`price` (our money units) in the provider's currency, rounded down."""
        amount = to_decimal(price)
        if self.rate == 1:
            return amount
        return (amount / self.rate).quantize(Decimal("0.0001"), rounding=ROUND_FLOOR)


def policy() -> str:
    return settings.get("routing_policy")


def sort_key(policy_name: str):
    """How candidates (anything with name, priority and cost) are ordered under a policy."""
    if policy_name == "cheapest":
        return lambda c: (c.cost, c.priority, c.name)
    return lambda c: (c.priority, c.cost, c.name)


def _closed(now: dt.datetime):
    return or_(Provider.open_until.is_(None), Provider.open_until <= now)


def candidates(service: str, country_id: int, max_cost: int | None = None) -> list[Candidate]:
    """Enabled providers whose breaker is closed (or cooled), with stock for the pair and a
    cost of at most `max_cost`, in the order the routing policy tries them."""
    from .provider import guarded

    rows = db.session.execute(
        select(Provider, ProviderPrice.cost, ProviderPrice.count)
        .join(ProviderPrice, ProviderPrice.provider_id == Provider.id)
        .where(
            Provider.enabled.is_(True),
            _closed(utcnow()),
            ProviderPrice.service == service,
            ProviderPrice.country_id == country_id,
            ProviderPrice.count > 0,
        )
    ).all()
    found = [
        Candidate(
            provider.name,
            provider.priority,
            cost,
            count,
            Decimal(str(provider.rate)),
            guarded(provider),
        )
        for provider, cost, count in rows
        if max_cost is None or cost <= max_cost
    ]
    return sorted(found, key=sort_key(policy()))


def eligible_names() -> list[str]:
    """Providers routing may use now: enabled, breaker closed or cooled."""
    return list(
        db.session.execute(
            select(Provider.name)
            .where(Provider.enabled.is_(True), _closed(utcnow()))
            .order_by(Provider.name)
        ).scalars()
    )


# --- what we learn from a refusal ---------------------------------------------------------


def learn_cost(name: str, service: str, country_id: int, min_price: str | None) -> None:
    """The provider's cost rose (WRONG_MAX_PRICE:<its minimum>): store it. Commits; the
    caller rebuilds the pair's offer."""
    if not min_price:
        return
    try:
        amount = Decimal(min_price)
    except ArithmeticError:
        return
    rate = db.session.execute(select(Provider.rate).where(Provider.name == name)).scalar()
    if rate is None or not amount.is_finite():
        return
    cost = to_units(amount * Decimal(str(rate)), round_up=True)
    db.session.execute(
        update(ProviderPrice)
        .where(
            ProviderPrice.provider_id == _id_of(name),
            ProviderPrice.service == service,
            ProviderPrice.country_id == country_id,
            ProviderPrice.cost < cost,
        )
        .values(cost=cost, updated_at=utcnow())
    )
    db.session.commit()


def _id_of(name: str):
    return select(Provider.id).where(Provider.name == name).scalar_subquery()


def mark_offers_stale() -> None:
    """Have the next worker pass rebuild the offers (no commit)."""
    db.session.execute(update(JobState).where(JobState.name == OFFERS_JOB).values(value=None))


# --- the circuit breaker -------------------------------------------------------------------


def counts_against(exc: BaseException) -> bool:
    return isinstance(exc, BREAKER_ERRORS)


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


def record_success(name: str) -> None:
    """Close `name`'s breaker if it counted failures and is not open (a success while it
    cools down, say a price read, does not cut the cooling short). Commits (writes only
    then)."""
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
