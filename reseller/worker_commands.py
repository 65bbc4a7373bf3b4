"""`flask worker` and `flask prices …`."""

from __future__ import annotations

import time

import click
from flask import Flask, current_app

from .money import format_amount
from .services import pricing, webhooks, worker

prices_cli = click.Group("prices", help="The upstream price cache and our retail prices.")


@click.command("worker")
@click.option("--once", is_flag=True, help="Do one pass and exit (for cron).")
@click.option("--interval", default=2.0, show_default=True, help="Seconds between passes.")
@click.option("--passes", default=0, help="Stop after this many passes (0: run forever).")
def worker_command(once: bool, interval: float, passes: int) -> None:
    """Poll the upstream, expire overdue activations, deliver customer webhooks, settle unknown
    purchases, refresh prices."""
    # Webhook deliveries run on the courier's threads across passes: a slow receiver holds
    # neither the pass (expiry, refunds, top-ups) nor another customer's events.
    courier = webhooks.Courier.serve(current_app._get_current_object())
    count = 0
    try:
        while True:
            report = worker.run_once()
            click.echo(report.summary())
            count += 1
            if once or (passes and count >= passes):
                if report.errors and once:
                    raise SystemExit(1)
                return
            time.sleep(interval)
    finally:
        late = courier.close()  # each delivery under way ends by its deadline
        if late.delivered or late.failed:
            click.echo(
                f"webhooks finished after the pass: delivered {late.delivered} failed {late.failed}"
            )


@prices_cli.command("sync")
def prices_sync() -> None:
    """Fetch services, countries and prices from every enabled provider now."""
    report = worker.PassReport()
    worker.refresh_prices(report, force=True)
    if not report.prices_refreshed:
        raise click.ClickException("; ".join(report.errors) or "no provider to read")
    for error in report.errors:  # some provider failed: the others' prices are in
        click.echo(f"warning: {error}", err=True)
    click.echo("prices refreshed")


@prices_cli.command("list")
@click.option("--service")
@click.option("--country", type=int)
def prices_list(service: str | None, country: int | None) -> None:
    """Show upstream cost, stock, retail price and margin."""
    for q in pricing.price_table(service, country, only_buyable=False):
        click.echo(
            f"{q.service:<8} {q.country_id:>4}  cost {format_amount(q.cost, 4):>9}  "
            f"stock {q.count:>6}  price {format_amount(q.price):>8}  margin "
            f"{format_amount(q.margin, 4):>9}  ({q.rule})"
        )


def register(app: Flask) -> None:
    app.cli.add_command(worker_command)
    app.cli.add_command(prices_cli)
