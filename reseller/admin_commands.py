"""Console parity for scripts: `flask prices set|unset …` and `flask stats`."""

from __future__ import annotations

import click
from flask import Flask, current_app

from .money import format_amount, format_cost
from .services import admin, pricing, stats
from .worker_commands import prices_cli


@prices_cli.command("set")
@click.argument("service")
@click.argument("country")
@click.option("--price", help="A fixed retail price, e.g. 1.50.")
@click.option("--markup", help="A markup in percent over the upstream cost, e.g. 25.")
@click.option(
    "--accept-loss",
    is_flag=True,
    help="Save a price below some pair's upstream cost (those sell at cost, without margin).",
)
def prices_set(
    service: str, country: str, price: str | None, markup: str | None, accept_loss: bool
) -> None:
    """Set the pricing rule for SERVICE in COUNTRY (name, alpha-2 or id); `*` for any."""
    if (price is None) == (markup is None):
        raise click.UsageError("give exactly one of --price or --markup")
    try:
        scope = admin.parse_scope(service, country)
        if price is not None:
            values = {"fixed_price": admin.parse_fixed_price(price)}
        else:
            values = {"markup_percent": admin.parse_markup(markup)}
        admin.set_rule(scope, **values, accept_loss=accept_loss, actor=None)
    except admin.BelowCost as exc:
        raise click.ClickException(f"{exc} Give --accept-loss to save it anyway.") from None
    except admin.AdminError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"rule {scope.label} set")
    _echo_quotes(scope)


@prices_cli.command("unset")
@click.argument("service")
@click.argument("country")
def prices_unset(service: str, country: str) -> None:
    """Delete the pricing rule for SERVICE in COUNTRY (`*` for any)."""
    try:
        scope = admin.parse_scope(service, country)
    except admin.AdminError as exc:
        raise click.ClickException(str(exc)) from None
    rule = admin.rule_for(scope)
    if rule is None:
        raise click.ClickException(f"no rule for {scope.label}")
    admin.delete_rule(rule, actor=None)
    click.echo(f"rule {scope.label} deleted")
    _echo_quotes(scope)


def _echo_quotes(scope: admin.RuleScope, limit: int = 10) -> None:
    quotes = pricing.price_table(scope.service, scope.country_id, only_buyable=False)
    for q in quotes[:limit]:
        click.echo(
            f"  {q.service} {q.country_id}: cost {format_cost(q.cost)} → price "
            f"{format_amount(q.price)} ({q.rule})"
        )
    if len(quotes) > limit:
        click.echo(f"  … and {len(quotes) - limit} more")


@click.command("stats")
@click.option("--top", default=5, show_default=True, help="How many services and countries.")
def stats_command(top: int) -> None:
    """The overview figures: upstream balance, outcomes and money per period."""
    currency = current_app.config["CURRENCY"]
    for name, reading in stats.enabled_provider_balances().items():
        if reading.reachable:
            flag = "  LOW" if reading.low else ""
            click.echo(
                f"upstream balance: {format_amount(reading.balance)} {currency} ({name}){flag}"
            )
        else:
            click.echo(f"upstream balance: unreachable ({reading.error}) ({name})")

    data = stats.overview(top=top)
    labels = [label for _key, label, _days in stats.PERIODS]
    click.echo(f"\n{'(UTC days)':<16}" + "".join(f"{label:>14}" for label in labels))
    lines = [
        ("code received", lambda f: f.outcomes["code"]),
        ("cancelled", lambda f: f.outcomes["cancelled"]),
        ("expired", lambda f: f.outcomes["expired"]),
        ("failed", lambda f: f.outcomes["failed"]),
        ("success rate", _rate),
        ("charged", lambda f: format_amount(f.charged)),
        ("refunds", lambda f: format_amount(f.refunds)),
        ("revenue", lambda f: format_amount(f.revenue)),
        ("upstream cost", lambda f: format_cost(f.cost)),
        ("profit", lambda f: format_amount(f.profit)),
    ]
    for name, value in lines:
        cells = "".join(f"{value(data.periods[key])!s:>14}" for key, _l, _d in stats.PERIODS)
        click.echo(f"{name:<16}{cells}")
    unknown = data.periods["30d"].cost_unknown
    if unknown:
        click.echo(f"({unknown} activation(s) with a code but no known cost are not in the cost)")

    by_provider = stats.provider_figures()
    if by_provider:
        click.echo("\nby provider (30 days, by purchase date):")
        for name, periods in sorted(by_provider.items()):
            f = periods["30d"]
            rate = "-" if f.success_rate is None else f"{f.success_rate * 100:.1f}%"
            click.echo(
                f"  {name:<12} purchases {f.purchases:>6}  success {rate:>6}  refunds "
                f"{f.refunds:>5}  cost {format_cost(f.cost):>10}  "
                f"profit {format_amount(f.profit):>10}"
            )

    for title, rows in (
        ("top services (30 days)", data.top_services["30d"]),
        ("top countries (30 days)", data.top_countries["30d"]),
    ):
        click.echo(f"\n{title}:")
        if not rows:
            click.echo("  none")
        for row in rows:
            click.echo(
                f"  {row.key!s:<10} codes {row.codes:>6}  revenue {format_amount(row.revenue):>10}"
                f"  profit {format_amount(row.profit):>10}"
            )


def _rate(figures: stats.Figures) -> str:
    rate = figures.success_rate
    return "-" if rate is None else f"{rate * 100:.1f}%"


def register(app: Flask) -> None:
    # `prices set` and `prices unset` joined the `prices` group on import.
    app.cli.add_command(stats_command)
