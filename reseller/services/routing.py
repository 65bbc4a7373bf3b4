"""Routing between providers: which one serves an order, in what order to fail over.

Policy `priority`: the enabled provider with stock and the lowest priority number first.
Policy `cheapest`: the lowest cost with stock first, ties by priority. A purchase tries the
candidates in that order (services.activations), failing over on definite refusals only.

The circuit breaker lives in services.breaker (below this module and services.provider):
routing skips a provider while its breaker is open.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from sqlalchemy import bindparam, select, update

from .. import db_reads
from ..extensions import db
from ..models import Provider, ProviderPrice, utcnow
from ..money import to_decimal, to_units
from . import settings
from .breaker import (  # noqa: F401 - the breaker is part of routing's surface
    BREAKER_ERRORS,
    OFFERS_JOB,
    BreakerState,
    _closed,
    breaker_state,
    counts_against,
    mark_offers_stale,
    record_failure,
    record_success,
)

POLICIES = ("priority", "cheapest")


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


_providers, _prices = Provider.__table__, ProviderPrice.__table__
# The candidates' read, built once at import: the Core twin of loading each Provider with
# its ProviderPrice through the ORM (tests/test_routing.py checks both agree). Its rows
# carry the provider's columns under the model's names, which is all a client is built
# from, and the pair's cost and stock.
_CANDIDATES = (
    select(_providers, _prices.c.cost.label("pair_cost"), _prices.c.count)
    .join(_prices, _prices.c.provider_id == _providers.c.id)
    .where(
        _providers.c.enabled.is_(True),
        _closed(bindparam("now"), _providers.c.open_until),
        _prices.c.service == bindparam("service"),
        _prices.c.country_id == bindparam("country"),
        _prices.c.count > 0,
    )
)
_HOT_CANDIDATES = db_reads.InSession(_CANDIDATES)  # every purchase reads it


def candidates(service: str, country_id: int, max_cost: int | None = None) -> list[Candidate]:
    """Enabled providers whose breaker is closed (or cooled), with stock for the pair and a
    cost of at most `max_cost`, in the order the routing policy tries them."""
    from .provider import guarded

    rows = _HOT_CANDIDATES.rows({"now": utcnow(), "service": service, "country": country_id})
    found = [
        Candidate(
            row.name,
            row.priority,
            row.pair_cost,
            row.count,
            Decimal(str(row.rate)),
            guarded(row),
        )
        for row in rows
        if max_cost is None or row.pair_cost <= max_cost
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


NATIVE_PLACES = Decimal("0.000001")  # a provider's own amounts as we keep them
_MOST_NATIVE = Decimal("999999999999")  # what ProviderPrice.native_cost holds (18, 6)


def native_amount(amount: Decimal) -> Decimal | None:
    """A provider's listed cost as we keep it (ProviderPrice.native_cost), rounded up; None
    for what is no cost (negative, not finite, beyond the column)."""
    if not amount.is_finite() or amount < 0 or amount > _MOST_NATIVE:
        return None
    return amount.quantize(NATIVE_PLACES, rounding=ROUND_CEILING)


def our_cost(native: Decimal, rate: Decimal) -> int:
    """A provider's cost in our money units at its rate, rounded up (never under-estimate
    what we pay)."""
    return to_units(Decimal(str(native)) * Decimal(str(rate)), round_up=True)


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
    native = native_amount(amount)
    if rate is None or native is None:
        return
    cost = our_cost(native, rate)
    db.session.execute(
        update(ProviderPrice)
        .where(
            ProviderPrice.provider_id == _id_of(name),
            ProviderPrice.service == service,
            ProviderPrice.country_id == country_id,
            ProviderPrice.cost < cost,
        )
        .values(cost=cost, native_cost=native, updated_at=utcnow())
    )
    db.session.commit()


def _id_of(name: str):
    return select(Provider.id).where(Provider.name == name).scalar_subquery()
