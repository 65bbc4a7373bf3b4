"""How the shop window shows the catalogue: a flag per country, a mark per service, the
sort orders and the search. Shared by the public price list and the dashboard's picker;
it reads what pricing answers from the catalogue cache and never calls a provider."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from flask import current_app
from markupsafe import Markup, escape

from ..money import format_amount
from ..services import catalog, pricing

# Sort orders a visitor may pick, by the query string's `sort`; the first is the default.
SORTS = ("price", "stock", "name")

# Service marks: the brand's colour for services people know by it (a CSS class each in
# site.css: the Content-Security-Policy allows no inline style); any other service gets one
# of the neutral palette's colours, always the same one for the same code.
BRANDS = frozenset({"tg", "wa", "go", "ds", "ig", "fb", "vk", "tw", "vi", "am", "ms", "ub"})
PALETTE_SIZE = 8


def money(units: int) -> str:
    """`12500` → `"1.25 USD"`: an amount as every customer page writes it."""
    return f"{format_amount(units)} {current_app.config['CURRENCY']}"


def url_breaks(url: str) -> Markup:
    """`url` escaped, with a line-break opportunity (<wbr>) after each `/` and before each
    `?`, `&` and `=`: a long URL wraps between its parts on a phone, not mid-word; the text
    copied is unchanged."""
    out = []
    for char in url:
        if char in "?&=":
            out.append(Markup("<wbr>"))
        out.append(escape(char))
        if char == "/":
            out.append(Markup("<wbr>"))
    return Markup("").join(out)


def flag(iso: str | None) -> str:
    """The country's flag as two regional-indicator letters (`us` → 🇺🇸); '' when unknown."""
    if not iso or len(iso) != 2 or not iso.isascii() or not iso.isalpha():
        return ""
    return "".join(chr(0x1F1E6 + ord(letter) - ord("a")) for letter in iso.lower())


@dataclass(frozen=True)
class Mark:
    """A service's badge: one or two initials on its colour."""

    initials: str
    css_class: str


def service_mark(code: str, name: str) -> Mark:
    words = [w for w in "".join(c if c.isalnum() else " " for c in name).split() if w]
    if len(words) >= 2:
        initials = (words[0][0] + words[1][0]).upper()
    elif words:
        initials = words[0][0].upper()
    else:
        initials = code[:2].upper()
    if code in BRANDS:
        return Mark(initials, f"mark mark-{code}")
    return Mark(initials, f"mark mark-c{zlib.crc32(code.encode()) % PALETTE_SIZE}")


def sort_key(value: str | None) -> str:
    return value if value in SORTS else SORTS[0]


def matches(query: str, *values: str) -> bool:
    query = query.casefold()
    return any(query in value.casefold() for value in values)


@dataclass(frozen=True)
class CountryRow:
    """One country's offer for a service, as the pages list it."""

    quote: pricing.Quote
    name: str
    iso: str
    flag: str


def country_rows(service: str, *, query: str = "", sort: str = "price") -> list[CountryRow]:
    """The countries selling `service` (in stock, on sale), filtered by `query` and sorted:
    by price (then stock), stock (most first) or name."""
    rows = []
    countries = {c.id: c for c in catalog.enabled_countries()}  # one read, not one a row
    for quote in pricing.price_table(service=service):
        country = countries.get(quote.country_id)
        name = country.name if country is not None else str(quote.country_id)
        iso = (country.iso if country is not None else None) or ""
        if query and not matches(query, name, iso, str(quote.country_id)):
            continue
        rows.append(CountryRow(quote, name, iso, flag(iso)))
    orders = {
        "price": lambda r: (r.quote.price, -r.quote.count, r.name.casefold()),
        "stock": lambda r: (-r.quote.count, r.quote.price, r.name.casefold()),
        "name": lambda r: (r.name.casefold(), r.quote.price),
    }
    return sorted(rows, key=orders[sort_key(sort)])


def service_rows(
    offers: list[pricing.ServiceOffer], *, query: str = "", sort: str = "name"
) -> list[pricing.ServiceOffer]:
    """Services on sale filtered by `query` (name or code) and sorted."""
    shown = [o for o in offers if not query or matches(query, o.name, o.service)]
    orders = {
        "price": lambda o: (o.from_price, o.name.casefold()),
        "stock": lambda o: (-o.count, o.name.casefold()),
        "name": lambda o: (o.name.casefold(), o.service),
    }
    return sorted(shown, key=orders.get(sort, orders["name"]))
