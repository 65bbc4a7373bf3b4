"""Retail prices: the one place a customer-facing price is computed.

retail = upstream cost × (1 + markup), where the markup or a fixed price comes from the
most specific rule: (service, country) > service > country > the global markup. The
result is raised to the minimum price, never below the upstream cost, and rounded up to
the cent.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from sqlalchemy import select

from ..extensions import db
from ..models import Country, PricingRule, Service, UpstreamPrice
from ..money import round_up_to_cent
from . import settings


@dataclass(frozen=True)
class Quote:
    service: str
    country_id: int
    cost: int  # upstream cost, money units
    count: int  # upstream stock
    price: int  # our retail price, money units (whole cents)
    rule: str  # which rule set the price, for the operator

    @property
    def margin(self) -> int:
        return self.price - self.cost


def _rules() -> dict[tuple[str | None, int | None], PricingRule]:
    return {(r.service, r.country_id): r for r in db.session.execute(select(PricingRule)).scalars()}


def _apply_markup(cost: int, percent) -> int:
    value = Decimal(cost) * (Decimal(100) + Decimal(str(percent))) / Decimal(100)
    return int(value.to_integral_value(rounding=ROUND_CEILING))


def retail_price(cost: int, service: str, country_id: int, rules=None) -> tuple[int, str]:
    """(retail price, rule description) for an upstream cost."""
    rules = _rules() if rules is None else rules
    rule = None
    label = "global markup"
    for key, name in (
        ((service, country_id), "service+country rule"),
        ((service, None), "service rule"),
        ((None, country_id), "country rule"),
    ):
        if key in rules:
            rule, label = rules[key], name
            break
    if rule is not None and rule.fixed_price is not None:
        price = rule.fixed_price
    elif rule is not None:
        price = _apply_markup(cost, rule.markup_percent)
    else:
        price = _apply_markup(cost, settings.get("markup_percent"))
    minimum = settings.get("minimum_price")
    if price < minimum:
        price, label = minimum, label + " (minimum price)"
    if price < cost:
        price, label = cost, label + " (raised to cost)"
    return round_up_to_cent(price), label


def quote(service: str, country_id: int) -> Quote | None:
    """Our price for one (service, country) from the cached upstream prices, or None."""
    row = db.session.get(UpstreamPrice, (service, country_id))
    if row is None:
        return None
    price, label = retail_price(row.cost, service, country_id)
    return Quote(service, country_id, row.cost, row.count, price, label)


def price_table(
    service: str | None = None,
    country_id: int | None = None,
    *,
    only_buyable: bool = True,
) -> list[Quote]:
    """Quotes for every cached price, optionally filtered.

    `only_buyable` drops disabled services/countries and combinations without stock.
    """
    stmt = select(UpstreamPrice)
    if service is not None:
        stmt = stmt.where(UpstreamPrice.service == service)
    if country_id is not None:
        stmt = stmt.where(UpstreamPrice.country_id == country_id)
    if only_buyable:
        stmt = (
            stmt.join(Service, Service.code == UpstreamPrice.service)
            .join(Country, Country.id == UpstreamPrice.country_id)
            .where(Service.enabled.is_(True), Country.enabled.is_(True), UpstreamPrice.count > 0)
        )
    rules = _rules()
    quotes = []
    for row in db.session.execute(
        stmt.order_by(UpstreamPrice.country_id, UpstreamPrice.service)
    ).scalars():
        price, label = retail_price(row.cost, row.service, row.country_id, rules)
        quotes.append(Quote(row.service, row.country_id, row.cost, row.count, price, label))
    return quotes
