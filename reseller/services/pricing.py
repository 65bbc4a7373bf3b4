"""Retail prices: the one place a customer-facing price is computed.

retail = upstream cost × (1 + markup), where the markup or a fixed price comes from the
most specific rule: (service, country) > service > country > the global markup. The
result is raised to the minimum price, never below the upstream cost, and rounded up to
the cent.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import NamedTuple

from sqlalchemy import and_, bindparam, case, func, or_, select, tuple_

from .. import db_reads
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


def retail_price(
    cost: int, service: str, country_id: int, rules=None, *, rent: bool = False
) -> tuple[int, str]:
    """(retail price, rule description) for an upstream cost, never below it.

    `rent`: the price of a rented number's period. Markup rules apply as to activations; a
    fixed-price rule (an activation's price) does not, and the rent markup
    (`rent_markup_percent`) stands in for the global one."""
    price, label = _asked_price(cost, service, country_id, rules, rent=rent)
    if price < cost:
        price, label = cost, label + " (raised to cost)"
    return round_up_to_cent(price), label


def _asked_price(
    cost: int, service: str, country_id: int, rules=None, *, rent: bool = False
) -> tuple[int, str]:
    """(price, rule description) as the rules and the minimum price ask, before the price
    is raised to the cost."""
    rules = _rules() if rules is None else rules
    rule = None
    label = "rent markup" if rent else "global markup"
    for key, name in (
        ((service, country_id), "service+country rule"),
        ((service, None), "service rule"),
        ((None, country_id), "country rule"),
    ):
        if key in rules and not (rent and rules[key].fixed_price is not None):
            rule, label = rules[key], name
            break
    if rule is not None and rule.fixed_price is not None:
        price = rule.fixed_price
    elif rule is not None:
        price = _apply_markup(cost, rule.markup_percent)
    else:
        price = _apply_markup(
            cost, settings.get("rent_markup_percent" if rent else "markup_percent")
        )
    minimum = settings.get("minimum_price")
    if price < minimum:
        price, label = minimum, label + " (minimum price)"
    return price, label


_SCOPE_LABELS = {
    (True, True): "service+country rule",
    (True, False): "service rule",
    (False, True): "country rule",
}


@dataclass(frozen=True)
class Shortfall:
    """A (service, country) a rule would price below its upstream cost."""

    service: str
    country_id: int
    cost: int  # money units
    asked: int  # the rule's price (raised to the minimum price), money units

    @property
    def loss(self) -> int:
        """How much below the cost the rule asks, per number."""
        return self.cost - self.asked


def below_cost(
    service: str | None,
    country_id: int | None,
    *,
    fixed_price: int | None = None,
    markup_percent=None,
) -> list[Shortfall]:
    """The cached pairs that a rule for this scope (a fixed price or a markup) would price
    below their upstream cost, the largest loss first. `retail_price` raises such a price
    to the cost: the pair sells without a margin, not at the price the rule names."""
    label = _SCOPE_LABELS.get((service is not None, country_id is not None))
    if label is None:
        return []
    rules = _rules()
    rules[(service, country_id)] = _Rule(fixed_price, markup_percent)
    stmt = select(UpstreamPrice)
    if service is not None:
        stmt = stmt.where(UpstreamPrice.service == service)
    if country_id is not None:
        stmt = stmt.where(UpstreamPrice.country_id == country_id)
    found = []
    for row in db.session.execute(stmt).scalars():
        asked, applied = _asked_price(row.cost, row.service, row.country_id, rules)
        if applied.startswith(label) and asked < row.cost:
            found.append(Shortfall(row.service, row.country_id, row.cost, asked))
    return sorted(found, key=lambda s: (-s.loss, s.service, s.country_id))


def _rules_for(service: str, country_id: int) -> dict[tuple[str | None, int | None], PricingRule]:
    """Only the rules that can apply to one (service, country): at most three rows, however
    many rules the operator keeps."""
    query = select(PricingRule).where(
        or_(
            and_(PricingRule.service == service, PricingRule.country_id == country_id),
            and_(PricingRule.service == service, PricingRule.country_id.is_(None)),
            and_(PricingRule.service.is_(None), PricingRule.country_id == country_id),
        )
    )
    return {(r.service, r.country_id): r for r in db.session.execute(query).scalars()}


def quote(service: str, country_id: int) -> Quote | None:
    """Our price for one (service, country) from the cached upstream prices, or None."""
    row = db.session.get(UpstreamPrice, (service, country_id))
    if row is None:
        return None
    price, label = retail_price(row.cost, service, country_id, _rules_for(service, country_id))
    return Quote(service, country_id, row.cost, row.count, price, label)


class Offer(NamedTuple):
    """What a purchase needs to know about one (service, country), read at once: whether
    the service exists and is on sale, whether the country is (None: unknown), and our
    quote (None: no cached upstream price)."""

    service_enabled: bool
    country_enabled: bool | None
    quote: Quote | None


class _Rule(NamedTuple):  # the columns of a PricingRule that `retail_price` reads
    fixed_price: int | None
    markup_percent: Decimal | None


# One statement built at import, read outside any transaction: the Core twin of
# catalog.service + catalog.country + `quote` (tests/test_pricing.py checks they agree). Each
# rule scope is at most one row (unique constraints), so the statement answers at most one.
# It carries the settings' texts too (settings.STORED_TEXTS), which price the quote: a
# purchase reads its service, country, price, rules and settings with this one statement.
_services, _countries = Service.__table__, Country.__table__
_prices = UpstreamPrice.__table__
_rule_pair = PricingRule.__table__.alias("rule_service_country")
_rule_service = PricingRule.__table__.alias("rule_service")
_rule_country = PricingRule.__table__.alias("rule_country")
_OFFER = db_reads.HotRead(
    select(
        _services.c.enabled.label("service_enabled"),
        _countries.c.enabled.label("country_enabled"),
        _prices.c.cost,
        _prices.c.count,
        _rule_pair.c.fixed_price.label("pair_fixed"),
        _rule_pair.c.markup_percent.label("pair_markup"),
        _rule_service.c.fixed_price.label("service_fixed"),
        _rule_service.c.markup_percent.label("service_markup"),
        _rule_country.c.fixed_price.label("country_fixed"),
        _rule_country.c.markup_percent.label("country_markup"),
        *settings.STORED_TEXTS,
    )
    .select_from(
        _services.outerjoin(_countries, _countries.c.id == bindparam("country"))
        .outerjoin(
            _prices,
            and_(
                _prices.c.service == _services.c.code,
                _prices.c.country_id == bindparam("country"),
            ),
        )
        .outerjoin(
            _rule_pair,
            and_(
                _rule_pair.c.service == _services.c.code,
                _rule_pair.c.country_id == bindparam("country"),
            ),
        )
        .outerjoin(
            _rule_service,
            and_(_rule_service.c.service == _services.c.code, _rule_service.c.country_id.is_(None)),
        )
        .outerjoin(
            _rule_country,
            and_(
                _rule_country.c.service.is_(None),
                _rule_country.c.country_id == bindparam("country"),
            ),
        )
    )
    .where(_services.c.code == bindparam("service"))
)


def offer(service: str, country_id: int) -> Offer | None:
    """The service, the country and our quote for a purchase, with one read; None when
    there is no such service."""
    if not service or len(service) > 40:
        return None
    row = _OFFER.first(service=service, country=country_id)
    if row is None:
        return None
    settings.adopt(row)
    quote = None
    if row.cost is not None:
        found = (
            ((service, country_id), _Rule(row.pair_fixed, row.pair_markup)),
            ((service, None), _Rule(row.service_fixed, row.service_markup)),
            ((None, country_id), _Rule(row.country_fixed, row.country_markup)),
        )
        rules = {key: rule for key, rule in found if rule != (None, None)}
        price, label = retail_price(row.cost, service, country_id, rules)
        quote = Quote(service, country_id, row.cost, row.count, price, label)
    return Offer(row.service_enabled, row.country_enabled, quote)


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


@dataclass(frozen=True)
class ServiceOffer:
    """A service on sale: its cheapest retail price over all countries, and its stock."""

    service: str
    name: str
    from_price: int  # money units
    count: int  # numbers in stock, all countries together
    countries: int  # countries with stock


def service_offers() -> list[ServiceOffer]:
    """Every enabled service with stock in an enabled country, sorted by name.

    Exact without pricing every cached row (there can be tens of thousands): under one rule
    the retail price never falls as the cost rises, so the database finds each service's
    cheapest row among those priced by its service rule or the global markup, and only rows
    under a (service, country) or country rule are priced one by one.
    """
    rules = _rules()
    # Rows whose price has a rule of its own (the precedence of `retail_price`): a
    # (service, country) rule, or a country rule where the service has no rule.
    pairs = [key for key in rules if key[0] is not None and key[1] is not None]
    service_rules = [s for s, c in rules if s is not None and c is None]
    country_rules = [c for s, c in rules if s is None and c is not None]
    own_rule = or_(
        tuple_(UpstreamPrice.service, UpstreamPrice.country_id).in_(pairs),
        and_(
            UpstreamPrice.country_id.in_(country_rules),
            UpstreamPrice.service.not_in(service_rules),
        ),
    )
    on_sale = (
        select()
        .select_from(UpstreamPrice)
        .join(Service, Service.code == UpstreamPrice.service)
        .join(Country, Country.id == UpstreamPrice.country_id)
        .where(Service.enabled.is_(True), Country.enabled.is_(True), UpstreamPrice.count > 0)
    )
    offers: dict[str, list] = {}  # code → [name, cheapest price, stock, countries]
    for code, name, cheapest, country_id, stock, countries in db.session.execute(
        on_sale.add_columns(
            UpstreamPrice.service,
            func.min(Service.name),
            func.min(case((own_rule, None), else_=UpstreamPrice.cost)),
            func.min(case((own_rule, None), else_=UpstreamPrice.country_id)),
            func.sum(UpstreamPrice.count),
            func.count(),
        ).group_by(UpstreamPrice.service)
    ):
        # Any country of the group has the same rule, so any prices the cheapest cost.
        price = retail_price(cheapest, code, country_id, rules)[0] if cheapest is not None else None
        offers[code] = [name, price, int(stock), countries]
    if pairs or country_rules:
        for code, country_id, cost in db.session.execute(
            on_sale.add_columns(
                UpstreamPrice.service, UpstreamPrice.country_id, UpstreamPrice.cost
            ).where(own_rule)
        ):
            price = retail_price(cost, code, country_id, rules)[0]
            entry = offers[code]
            entry[1] = price if entry[1] is None else min(entry[1], price)
    result = [
        ServiceOffer(code, name, price, stock, countries)
        for code, (name, price, stock, countries) in offers.items()
    ]
    return sorted(result, key=lambda offer: (offer.name.lower(), offer.service))


def top_countries(service: str) -> list[Quote]:
    """getTopCountriesByService: the countries selling `service` now (enabled, in stock),
    best first: the lowest retail price, then the largest stock, then the country id."""
    quotes = price_table(service)
    return sorted(quotes, key=lambda q: (q.price, -q.count, q.country_id))


def stock_by_service(country_id: int) -> dict[str, int]:
    """getNumbersStatus: our stock per enabled service in one enabled country."""
    return {q.service: q.count for q in price_table(None, country_id)}


def rent_price(cost: int, service: str, country_id: int) -> int:
    """Our retail price of a rent period that costs us `cost` (see `retail_price`)."""
    return retail_price(cost, service, country_id, _rules_for(service, country_id), rent=True)[0]
