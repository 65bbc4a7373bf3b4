"""Console parity on the command line: `flask prices set|unset` and `flask stats`."""

from __future__ import annotations

import json

from sqlalchemy import select

from reseller.extensions import db
from reseller.models import AuditLog, PricingRule
from reseller.services import pricing


def price_of(service: str, country_id: int) -> int:
    return pricing.quote(service, country_id).price


def test_prices_set_a_fixed_price_then_a_markup(runner, stocked):
    result = runner.invoke(args=["prices", "set", "tg", "us", "--price", "2.00"])
    assert result.exit_code == 0, result.output
    assert "rule tg/187 set" in result.output
    assert "tg 187: cost 1.30 → price 2.00 (service+country rule)" in result.output
    assert price_of("tg", 187) == 20_000

    result = runner.invoke(args=["prices", "set", "tg", "187", "--markup", "50"])
    assert result.exit_code == 0, result.output
    assert price_of("tg", 187) == 19_500  # 1.30 × 1.5
    assert db.session.execute(select(PricingRule)).scalars().all()[0].fixed_price is None

    actions = db.session.execute(select(AuditLog.action, AuditLog.actor_id)).all()
    assert actions == [("pricing.rule_set", None), ("pricing.rule_update", None)]


def test_prices_set_for_a_whole_service_or_country(runner, stocked):
    assert runner.invoke(args=["prices", "set", "wa", "*", "--markup", "100"]).exit_code == 0
    assert runner.invoke(args=["prices", "set", "*", "gb", "--price", "5"]).exit_code == 0
    assert price_of("wa", 187) == 29_000
    assert price_of("go", 16) == 50_000
    scopes = db.session.execute(select(PricingRule.service, PricingRule.country_id)).all()
    assert sorted(scopes, key=str) == sorted([("wa", None), (None, 16)], key=str)


def test_prices_set_refuses_bad_input(runner, stocked):
    for args, message in (
        (["tg", "us"], "exactly one of --price or --markup"),
        (["tg", "us", "--price", "1", "--markup", "5"], "exactly one of --price or --markup"),
        (["zz", "us", "--price", "1"], "Unknown service"),
        (["tg", "mars", "--price", "1"], "Unknown country"),
        (["*", "*", "--markup", "5"], "needs a service, a country or both"),
        (["tg", "us", "--price", "-1"], "must not be negative"),
        (["tg", "us", "--markup", "x"], "not a percentage"),
    ):
        result = runner.invoke(args=["prices", "set", *args])
        assert result.exit_code != 0, args
        assert message in result.output, (args, result.output)
    assert db.session.execute(select(PricingRule)).first() is None


def test_prices_unset(runner, stocked):
    runner.invoke(args=["prices", "set", "tg", "us", "--price", "9.99"])
    result = runner.invoke(args=["prices", "unset", "tg", "us"])
    assert result.exit_code == 0, result.output
    assert price_of("tg", 187) == 16_900
    deleted = db.session.execute(
        select(AuditLog).where(AuditLog.action == "pricing.rule_delete")
    ).scalar_one()
    assert json.loads(deleted.before)["fixed_price"] == "9.99"
    result = runner.invoke(args=["prices", "unset", "tg", "us"])
    assert result.exit_code != 0 and "no rule for tg/187" in result.output


def test_prices_list_shows_the_rule_and_the_existing_commands_remain(runner, stocked):
    refused = runner.invoke(args=["prices", "set", "tg", "us", "--price", "0.50"])
    assert refused.exit_code != 0 and "below the upstream cost of 1 pair(s)" in refused.output
    runner.invoke(args=["prices", "set", "tg", "us", "--price", "0.50", "--accept-loss"])
    result = runner.invoke(args=["prices", "list", "--service", "tg", "--country", "187"])
    assert "raised to cost" in result.output
    for command in ("sync", "list", "set", "unset"):
        assert runner.invoke(args=["prices", command, "--help"]).exit_code == 0


def test_stats_with_nothing_sold(runner, app):
    result = runner.invoke(args=["stats"])
    assert result.exit_code == 0, result.output
    assert "upstream balance: 1000.00 USD" in result.output
    assert "success rate" in result.output and "none" in result.output


def test_stats_when_the_upstream_is_down(runner, app, monkeypatch):
    from reseller.services.provider import raw_upstream
    from reseller.upstream.errors import UpstreamUnavailable

    def down():
        raise UpstreamUnavailable("refused")

    monkeypatch.setattr(raw_upstream(), "get_balance", down)
    result = runner.invoke(args=["stats"])
    assert result.exit_code == 0, result.output
    assert "upstream balance: unreachable (refused)" in result.output
