"""Retail prices: rule precedence, rounding, the minimum price, never below the upstream
cost, and the operator's switches as the API sees them."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import select

from reseller.extensions import db
from reseller.models import Country, LedgerEntry, PricingRule, Service
from reseller.money import CENT, parse_amount
from reseller.services import admin, pricing, settings

US, USV, RU = 187, 12, 0  # sandbox costs: tg 1.30 / 0.25 / 0.45, wa 1.45 / 0.35


def rule(service=None, country_id=None, *, fixed=None, markup=None) -> PricingRule:
    row = PricingRule(
        service=service,
        country_id=country_id,
        fixed_price=None if fixed is None else parse_amount(fixed),
        markup_percent=None if markup is None else Decimal(markup),
    )
    db.session.add(row)
    db.session.commit()
    return row


def set_setting(key: str, value: str) -> None:
    settings.store(key, value)
    db.session.commit()
    settings.forget()


def price(service: str, country_id: int) -> tuple[str, str]:
    q = pricing.quote(service, country_id)
    return f"{q.price / 10_000:.2f}", q.rule


def test_global_markup_rounds_up_to_the_cent(stocked):
    set_setting("minimum_price", "0")
    assert price("tg", US) == ("1.69", "global markup")  # 1.30 × 1.3
    assert price("wa", USV) == ("0.46", "global markup")  # 0.35 × 1.3 = 0.455
    assert price("ds", RU) == ("0.08", "global markup")  # 0.0545 × 1.3 = 0.07085
    set_setting("markup_percent", "0")
    assert price("ds", RU) == ("0.06", "global markup")  # the cost itself, rounded up


def test_the_most_specific_rule_wins(stocked):
    rule("tg", US, fixed="5.00")
    rule("tg", markup="100")
    rule(country_id=US, markup="50")
    assert price("tg", US) == ("5.00", "service+country rule")
    assert price("tg", USV) == ("0.50", "service rule")  # 0.25 × 2
    assert price("wa", US) == ("2.18", "country rule")  # 1.45 × 1.5 = 2.175
    assert price("wa", USV) == ("0.46", "global markup")


def test_the_minimum_price_lifts_cheap_numbers_and_fixed_prices(stocked):
    set_setting("minimum_price", "0.50")
    assert price("go", RU) == ("0.50", "global markup (minimum price)")  # 0.12 × 1.3
    rule("go", RU, fixed="0.20")
    assert price("go", RU) == ("0.50", "service+country rule (minimum price)")
    assert price("tg", US) == ("1.69", "global markup")


def test_a_rule_never_prices_below_the_upstream_cost(stocked):
    set_setting("minimum_price", "0")
    rule("tg", US, fixed="0.50")
    assert price("tg", US) == ("1.30", "service+country rule (raised to cost)")
    rule("ds", RU, fixed="0.01")
    assert price("ds", RU) == ("0.06", "service+country rule (raised to cost)")  # 0.0545 ↑
    # A negative markup cannot be entered in the console, but even stored it is harmless.
    rule("wa", markup="-50")
    assert price("wa", US) == ("1.45", "service rule (raised to cost)")
    for q in pricing.price_table(only_buyable=False):
        assert q.price >= q.cost and q.margin >= 0


@hypothesis_settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    cost=st.integers(min_value=0, max_value=50_000_000),
    minimum=st.integers(min_value=0, max_value=10_000).map(lambda cents: cents * CENT),
    markup=st.decimals(min_value=-100, max_value=10_000, places=2),
    fixed_cents=st.one_of(st.none(), st.integers(min_value=1, max_value=1_000_000)),
)
def test_any_price_is_whole_cents_at_least_cost_and_minimum(
    app, cost, minimum, markup, fixed_cents
):
    settings.all_settings()["minimum_price"] = minimum  # this context's cached settings
    fixed = None if fixed_cents is None else fixed_cents * CENT
    rules = {
        ("tg", US): PricingRule(
            service="tg",
            country_id=US,
            fixed_price=fixed,
            markup_percent=None if fixed is not None else markup,
        )
    }
    retail, _label = pricing.retail_price(cost, "tg", US, rules)
    assert retail % CENT == 0
    assert retail >= cost and retail >= minimum
    wanted = fixed if fixed is not None else cost * (100 + markup) / 100
    assert retail - max(wanted, cost, minimum) < CENT  # rounded up by less than a cent


# --- as the API sees it -------------------------------------------------------------------


def test_a_disabled_service_is_refused_at_get_number(api):
    admin.set_service_enabled(db.session.get(Service, "tg"), False, actor=None)
    assert api.text("getNumber", service="tg", country="us") == "BAD_SERVICE"
    assert api.json("getNumber", service="tg", country="us") == {"error": "BAD_SERVICE"}
    assert "tg" not in api.json("getPrices", country="us")["187"]
    assert api.text("getNumber", service="wa", country="us").startswith("ACCESS_NUMBER:")


def test_a_disabled_country_is_refused_at_get_number(api):
    admin.set_country_enabled(db.session.get(Country, US), False, actor=None)
    assert api.text("getNumber", service="tg", country="us") == "BAD_COUNTRY"
    assert "187" not in api.json("getPrices")


def test_a_new_rule_is_charged_on_the_next_purchase(api, customer):
    scope = admin.parse_scope("tg", "us")
    admin.set_rule(scope, fixed_price=parse_amount("2.40"), actor=None)
    assert api.json("getPrices", service="tg", country="us")["187"]["tg"]["cost"] == 2.4
    assert api.text("getNumber", service="tg", country="us", maxPrice="2.39").startswith(
        "WRONG_MAX_PRICE:"
    )
    assert api.text("getNumber", service="tg", country="us").startswith("ACCESS_NUMBER:")
    charged = db.session.execute(
        select(LedgerEntry.amount).where(LedgerEntry.kind == "purchase")
    ).scalar_one()
    assert charged == -parse_amount("2.40")
    assert api.text("getBalance") == "ACCESS_BALANCE:7.60"


@pytest.mark.parametrize(
    "service, country, expected",
    [
        ("tg", "us", ("tg", US)),
        ("tg", "*", ("tg", None)),
        ("tg", "", ("tg", None)),
        ("*", "12", (None, USV)),
        ("", "GB", (None, 16)),
    ],
)
def test_rule_scopes(stocked, service, country, expected):
    scope = admin.parse_scope(service, country)
    assert (scope.service, scope.country_id) == expected


def test_a_second_rule_for_a_scope_replaces_the_first(stocked):
    # The unique constraint does not cover NULL scope parts on either database.
    scope = admin.parse_scope("*", "us")
    admin.set_rule(scope, markup_percent=Decimal("10"), actor=None)
    admin.set_rule(scope, fixed_price=parse_amount("3.00"), actor=None)
    rows = db.session.execute(select(PricingRule)).scalars().all()
    assert [(r.service, r.country_id, r.fixed_price, r.markup_percent) for r in rows] == [
        (None, US, parse_amount("3.00"), None)
    ]


def test_one_rule_per_scope_even_with_nulls(app):
    """The database itself refuses a second service-only or country-only rule."""
    import pytest as _pytest
    from sqlalchemy.exc import IntegrityError

    from reseller.extensions import db
    from reseller.models import PricingRule

    pairs = (
        (PricingRule(service="tg", markup_percent=10), PricingRule(service="tg", fixed_price=900)),
        (PricingRule(country_id=12, markup_percent=10), PricingRule(country_id=12, fixed_price=1)),
    )
    for first, second in pairs:
        db.session.add(first)
        db.session.commit()
        db.session.add(second)
        with _pytest.raises(IntegrityError):
            db.session.commit()
        db.session.rollback()


# --- the purchase's one read agrees with the ORM ------------------------------------------


def test_the_offer_read_agrees_with_the_catalogue_and_quote(stocked):
    """pricing.offer (one Core statement, read outside any transaction) says what
    catalog.service, catalog.country and pricing.quote (the ORM) say, whatever rules apply,
    for known and unknown services and countries, enabled or not."""
    from reseller.services import catalog

    rule("tg", US, fixed="5.00")
    rule("tg", markup="100")
    rule(country_id=US, markup="50")
    rule("wa", USV, markup="7.5")
    db.session.get(Service, "ds").enabled = False
    db.session.get(Country, RU).enabled = False
    db.session.commit()
    services = [s.code for s in db.session.execute(select(Service)).scalars()] + ["zz", ""]
    countries = [c.id for c in db.session.execute(select(Country)).scalars()] + [9999]
    seen_quotes = 0
    for service in services:
        for country_id in countries:
            offer = pricing.offer(service, country_id)
            known = catalog.service(service)
            if known is None:
                assert offer is None
                continue
            country = catalog.country(country_id)
            assert offer.service_enabled == known.enabled
            assert offer.country_enabled == (country.enabled if country else None)
            assert offer.quote == pricing.quote(service, country_id)
            seen_quotes += offer.quote is not None
    assert seen_quotes > 10
    assert {pricing.offer(s, US).quote.rule for s in ("tg", "wa")} == {
        "service+country rule",
        "country rule",
    }
