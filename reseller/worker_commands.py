"""`flask worker` and `flask prices …`."""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass

import click
from flask import Flask, current_app

from .money import format_amount
from .services import pricing, webhooks, worker

log = logging.getLogger(__name__)

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
    passes_log = PassLog()
    try:
        while True:
            report = worker.run_once()
            if once:  # cron's one pass: always its account, errors with their tracebacks
                passes_log.lines(report, dt.datetime.now(dt.UTC))
                click.echo(report.summary())
            else:
                for line in passes_log.lines(report, dt.datetime.now(dt.UTC)):
                    click.echo(line)
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


@dataclass
class _Failing:
    text: str
    since: dt.datetime
    said: dt.datetime


class PassLog:
    """What `flask worker` says about its passes: one line for a pass that did something (an
    idle pass says nothing); a failing step once per change of its error (with the traceback
    behind it), then "still failing since …" every STILL_FAILING_EVERY, and when it recovers.

    A step's errors are grouped by the text before their first colon ("prices", "poll 12",
    "settle_purchases"), so a step failing at two providers is one error of that step."""

    STILL_FAILING_EVERY = dt.timedelta(minutes=5)

    def __init__(self) -> None:
        self.failing: dict[str, _Failing] = {}

    def lines(self, report: worker.PassReport, now: dt.datetime) -> list[str]:
        out = []
        if report.did_something():
            out.append(report.summary(errors=False))
        current: dict[str, list[str]] = {}
        for error in report.errors:
            current.setdefault(error.split(":", 1)[0], []).append(error)
        for step, errors in current.items():
            text = "; ".join(sorted(errors))
            known = self.failing.get(step)
            if known is None or known.text != text:
                self.failing[step] = _Failing(text, now, now)
                out.append(f"failing: {text}")
                for error in errors:
                    if error in report.exceptions:
                        exc = report.exceptions[error]
                        log.error("worker: %s", error, exc_info=(type(exc), exc, exc.__traceback__))
            elif now - known.said >= self.STILL_FAILING_EVERY:
                known.said = now
                out.append(f"still failing since {known.since:%Y-%m-%d %H:%M:%S} UTC: {text}")
        for step in [step for step in self.failing if step not in current]:
            gone = self.failing.pop(step)
            out.append(f"recovered: {step} (failing since {gone.since:%Y-%m-%d %H:%M:%S} UTC)")
        return out


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
