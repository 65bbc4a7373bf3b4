"""What renting a number costs: the rent length, the providers able to rent, our price.

Rent prices depend on the length asked, so they are read from the providers when asked
(SMS-Activate's getRentServicesAndCountries, 5sim's hosting prices), not from the cached
activation catalogue. Candidates are ordered by the routing policy as activations' are
(routing.sort_key); a provider without rent is skipped. The retail price is the pricing
module's (`pricing.rent_price`: the rent markup, markup rules, never below cost).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from ..money import round_up_to_cent, to_units
from ..upstream import errors as up
from . import catalog, pricing, provider, routing
from . import errors as err

HOURS_MIN, HOURS_MAX = 2, 1344  # SMS-Activate's bounds: 2 hours to 56 days
DEFAULT_HOURS = 4  # SMS-Activate's default rent length


def parse_hours(raw) -> int:
    """The rent length in hours: 2 to 1344, whole days from 24 hours up; absent: 4.
    Raises InvalidTime."""
    text = str(raw if raw is not None else "").strip()
    if text == "":
        return DEFAULT_HOURS
    if not (text.isascii() and text.isdigit()) or len(text) > 5:
        raise err.InvalidTime()
    hours = int(text)
    if not HOURS_MIN <= hours <= HOURS_MAX or (hours > 24 and hours % 24):
        raise err.InvalidTime()
    return hours


def parse_operator(raw) -> str | None:
    """An operator name for providers that take one; None for `any` or none."""
    text = str(raw or "").strip().lower()
    if text in ("", "any"):
        return None
    if len(text) > 40 or not all(ch.isalnum() or ch in "_-" for ch in text):
        raise err.BadParameter("operator is malformed")
    return text


def _renting_providers():
    """(row, guarded client) of each provider routing may use now that rents numbers."""
    for name in routing.eligible_names():
        row = provider.by_name(name)
        if row is None:
            continue
        client = provider.guarded(row)
        if client.rents:
            yield row, client


def _candidate(row, client, cost: Decimal, count: int) -> routing.Candidate:
    rate = Decimal(str(row.rate))
    return routing.Candidate(
        row.name, row.priority, to_units(cost * rate, round_up=True), count, rate, client
    )


def candidates_by_service(
    country_id: int, hours: int, operator: str | None
) -> dict[str, list[routing.Candidate]]:
    """Per service, the providers renting it now in the country for `hours` (in stock), in
    the routing policy's order. A provider that cannot answer is left out."""
    found: dict[str, list[routing.Candidate]] = {}
    for row, client in _renting_providers():
        try:
            offers = client.get_rent_offers(country_id, hours, operator)
        except up.UpstreamError:
            continue
        for offer in offers:
            if offer.count > 0:
                found.setdefault(offer.service, []).append(
                    _candidate(row, client, offer.cost, offer.count)
                )
    order = routing.sort_key(routing.policy())
    return {service: sorted(rows, key=order) for service, rows in found.items()}


@dataclass(frozen=True)
class RentQuote:
    service: str
    country_id: int
    hours: int
    price: int  # our retail price, money units
    count: int  # numbers every provider together can rent
    route: tuple[routing.Candidate, ...]  # who would rent it, in order


def quotes(country_id: int, hours: int, operator: str | None = None) -> list[RentQuote]:
    """Our offer for every enabled service rentable in the country for `hours`, by code."""
    enabled = {s.code for s in catalog.enabled_services()}
    result = []
    for service, route in sorted(candidates_by_service(country_id, hours, operator).items()):
        if service in enabled:
            result.append(_quote(service, country_id, hours, route))
    return result


def quote(service: str, country_id: int, hours: int, operator: str | None = None) -> RentQuote:
    """Our offer for renting one service's number. Raises NoNumbers."""
    route = candidates_by_service(country_id, hours, operator).get(service)
    if not route:
        raise err.NoNumbers()
    return _quote(service, country_id, hours, route)


def _quote(service: str, country_id: int, hours: int, route) -> RentQuote:
    price = pricing.rent_price(route[0].cost, service, country_id)
    return RentQuote(service, country_id, hours, price, sum(c.count for c in route), tuple(route))


def continue_price(rental, hours: int) -> tuple[int, int | None]:
    """(our price, our cost when known) of continuing `rental` by `hours` with its own
    provider: the provider's current rent cost for the service, else the first period's
    price pro rata (never below what that period cost us pro rata)."""
    try:
        client = provider.upstream(rental.upstream_name)
        offers = client.get_rent_offers(rental.country_id, hours) if client.rents else []
    except up.UpstreamError:
        offers = []
    row = provider.by_name(rental.upstream_name)
    for offer in offers:
        if offer.service == rental.service and row is not None:
            cost = to_units(offer.cost * Decimal(str(row.rate)), round_up=True)
            return pricing.rent_price(cost, rental.service, rental.country_id), cost
    first = rental.periods[0]
    price = -(-first.price * hours // first.hours)  # rounded up
    return round_up_to_cent(price), None
