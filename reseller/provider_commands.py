"""`flask providers …`: manage upstream providers from scripts (every change audited)."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup

from .money import format_amount
from .services import provider, provider_admin, routing, stats
from .services.admin import AdminError
from .upstream.registry import PRESETS, PROTOCOLS

providers_cli = AppGroup("providers", help="Upstream providers and routing.")


def _fail(exc: AdminError):
    raise click.ClickException(str(exc)) from None


@providers_cli.command("add")
@click.argument("name")
@click.option("--protocol", type=click.Choice(sorted(PROTOCOLS)), required=True)
@click.option("--url", help="Base URL (default: the protocol's known address, if any).")
@click.option(
    "--api-key",
    envvar="PROVIDER_API_KEY",
    help="The provider's API key; or set PROVIDER_API_KEY, or leave out to be prompted.",
)
@click.option("--priority", default=10, show_default=True, help="Lower is tried first.")
@click.option("--display-name", help="Shown on the console.")
@click.option("--currency", default="USD", show_default=True, help="What it bills in.")
@click.option("--rate", default="1", show_default=True, help="Our money per one of its unit.")
def providers_add(name, protocol, url, api_key, priority, display_name, currency, rate) -> None:
    """Add provider NAME (a slug) speaking PROTOCOL."""
    if api_key is None and protocol != "sandbox":
        api_key = click.prompt("API key", hide_input=True)
    if url is None and name in PRESETS and PRESETS[name][0] == protocol:
        url = PRESETS[name][1]
    try:
        added = provider_admin.add(
            name,
            protocol,
            url,
            api_key,
            priority=priority,
            display_name=display_name,
            currency=currency,
            rate=rate,
        )
    except AdminError as exc:
        _fail(exc)
    click.echo(
        f"provider {added.name} added ({added.protocol}, {added.base_url or 'no URL'}, "
        f"key {provider.masked_key(added)}); its prices are read on the next worker pass "
        "or `flask prices sync`"
    )


@providers_cli.command("list")
@click.option("--refresh", is_flag=True, help="Ask each provider for its balance now.")
def providers_list(refresh: bool) -> None:
    """Name, protocol, enabled, priority, balance and health of every provider."""
    readings = stats.provider_balances(0) if refresh else stats.stored_provider_balances()
    click.echo(f"routing policy: {routing.policy()}")
    for row in provider.all_providers():
        reading = readings.get(row.name)
        if reading is not None and reading.balance is not None:
            balance = format_amount(reading.balance) + (" LOW" if reading.low else "")
        else:
            balance = f"unknown ({reading.error if reading else 'not checked yet'})"
        breaker = routing.breaker_state(row)
        health = breaker.state
        if breaker.state != "closed" and breaker.last_error:
            health += f" ({breaker.last_error})"
        click.echo(
            f"{row.name:<12} {row.protocol:<13} {'enabled ' if row.enabled else 'disabled'} "
            f"priority {row.priority:<4} balance {balance:<14} health {health}"
        )


def _set_enabled(name: str, enabled: bool) -> None:
    try:
        provider_admin.set_enabled(provider_admin.get(name), enabled)
    except AdminError as exc:
        _fail(exc)
    click.echo(f"provider {name} {'enabled' if enabled else 'disabled'}")


@providers_cli.command("enable")
@click.argument("name")
def providers_enable(name: str) -> None:
    """Let routing use provider NAME again."""
    _set_enabled(name, True)


@providers_cli.command("disable")
@click.argument("name")
def providers_disable(name: str) -> None:
    """Sell nothing new through NAME; what it sold still finishes there."""
    _set_enabled(name, False)


@providers_cli.command("priority")
@click.argument("name")
@click.argument("priority")
def providers_priority(name: str, priority: str) -> None:
    """Set NAME's priority (lower is tried first)."""
    try:
        provider_admin.set_priority(provider_admin.get(name), priority)
    except AdminError as exc:
        _fail(exc)
    click.echo(f"provider {name} priority {priority}")


@providers_cli.command("remove")
@click.argument("name")
def providers_remove(name: str) -> None:
    """Remove NAME (refused while it has open activations)."""
    try:
        provider_admin.remove(provider_admin.get(name))
    except AdminError as exc:
        _fail(exc)
    click.echo(f"provider {name} removed")


@providers_cli.command("routing")
@click.argument("policy", type=click.Choice(routing.POLICIES))
def providers_routing(policy: str) -> None:
    """Set the routing policy: priority or cheapest."""
    try:
        provider_admin.set_policy(policy)
    except AdminError as exc:
        _fail(exc)
    click.echo(f"routing policy {policy}")


def register(app: Flask) -> None:
    app.cli.add_command(providers_cli)
