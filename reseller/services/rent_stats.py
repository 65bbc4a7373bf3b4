"""Figures of the rent product for the console: per period and per provider, what rents
brought in (charges less refunds, from the ledger), what they cost us, and how they ended."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import Select, func, select
from sqlalchemy.orm import joinedload

from ..extensions import db
from ..models import LedgerEntry, LedgerKind, Rental, RentPeriod, utcnow
from .stats import PERIODS

RENT_KINDS = (LedgerKind.RENT.value, LedgerKind.RENT_EXTENSION.value, LedgerKind.RENT_REFUND.value)


@dataclass
class RentFigures:
    rentals: int = 0
    revenue: int = 0  # charges less refunds, money units
    cost: int = 0  # what the providers charged us, where known
    by_status: dict[str, int] = field(default_factory=dict)

    @property
    def margin(self) -> int:
        return self.revenue - self.cost


def _figures(since: dt.datetime | None, provider: str | None = None) -> RentFigures:
    rentals = select(Rental.status, func.count()).group_by(Rental.status)
    money = (
        select(func.coalesce(-func.sum(LedgerEntry.amount), 0))
        .join(RentPeriod, RentPeriod.id == LedgerEntry.rent_period_id)
        .join(Rental, Rental.id == RentPeriod.rental_id)
        .where(LedgerEntry.kind.in_(RENT_KINDS))
    )
    cost = (
        select(func.coalesce(func.sum(RentPeriod.upstream_cost), 0))
        .join(Rental, Rental.id == RentPeriod.rental_id)
        .where(RentPeriod.status != "refunded")
    )
    if since is not None:
        rentals = rentals.where(Rental.created_at >= since)
        money = money.where(LedgerEntry.created_at >= since)
        cost = cost.where(RentPeriod.created_at >= since)
    if provider is not None:
        rentals = rentals.where(Rental.upstream_name == provider)
        money = money.where(Rental.upstream_name == provider)
        cost = cost.where(Rental.upstream_name == provider)
    by_status = dict(db.session.execute(rentals).all())
    return RentFigures(
        rentals=sum(by_status.values()),
        revenue=db.session.execute(money).scalar_one(),
        cost=db.session.execute(cost).scalar_one(),
        by_status=by_status,
    )


def by_period() -> dict[str, RentFigures]:
    """Today (UTC), the last 7 and 30 days (stats.PERIODS)."""
    today = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    return {key: _figures(today - dt.timedelta(days=days - 1)) for key, _label, days in PERIODS}


def by_provider() -> dict[str, RentFigures]:
    """Every provider that rented, over all time."""
    names = db.session.execute(select(Rental.upstream_name).distinct()).scalars().all()
    return {name: _figures(None, name) for name in sorted(names)}


def rentals_query(status: str | None = None, provider: str | None = None) -> Select:
    """Every rental, newest first, optionally of one status and one provider."""
    stmt = select(Rental).options(joinedload(Rental.user)).order_by(Rental.id.desc())
    if status:
        stmt = stmt.where(Rental.status == status)
    if provider:
        stmt = stmt.where(Rental.upstream_name == provider)
    return stmt
