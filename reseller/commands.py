"""Operator commands: `flask --app wsgi users …`, `flask ledger verify`, and friends."""

from __future__ import annotations

import click
from flask import Flask, current_app
from sqlalchemy import select

from .extensions import db
from .models import User
from .money import BadAmount, format_amount, parse_amount
from .services import accounts, wallet
from .services.ledger import verify_ledger

users_cli = click.Group("users", help="Manage customer and admin accounts.")
ledger_cli = click.Group("ledger", help="Check the books.")


def _user_or_fail(email: str) -> User:
    user = accounts.user_by_email(email)
    if user is None:
        raise click.ClickException(f"no user with email {email!r}")
    return user


@users_cli.command("create")
@click.argument("email")
@click.option("--password", help="Prompted for when absent.")
@click.option("--admin", is_flag=True, help="Make the account an administrator.")
def users_create(email: str, password: str | None, admin: bool) -> None:
    """Create an account (its address counts as confirmed: the operator gives it)."""
    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user = accounts.create_user(email, password, is_admin=admin, verified=True)
    except accounts.AccountError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"created {'admin' if user.is_admin else 'user'} {user.email} (id {user.id})")


@users_cli.command("credit", context_settings={"ignore_unknown_options": True})
@click.argument("email")
@click.argument("amount")
@click.option("--note", default="credit from the command line", show_default=True)
def users_credit(email: str, amount: str, note: str) -> None:
    """Credit AMOUNT (currency units, e.g. 10.50; negative for a debit) to EMAIL."""
    user = _user_or_fail(email)
    try:
        units = parse_amount(amount, allow_negative=True)
    except BadAmount as exc:
        raise click.ClickException(str(exc)) from None
    if units == 0:
        raise click.ClickException("the amount must not be zero")
    from .services import admin as admin_service

    balance = user.balance
    try:
        entry = admin_service.adjust_balance(user, units, note, actor=None)
    except admin_service.AdminError:
        raise click.ClickException(
            f"{user.email} has {format_amount(balance)}; cannot debit {amount}"
        ) from None
    click.echo(
        f"{user.email}: {'+' if units > 0 else ''}{format_amount(units)} → balance "
        f"{format_amount(entry.balance_after)} {current_app.config['CURRENCY']}"
    )


@users_cli.command("api-key")
@click.argument("email")
def users_api_key(email: str) -> None:
    """Print the user's API key (alone, for scripts)."""
    user = _user_or_fail(email)
    key = accounts.reveal_api_key(user)
    if key is None:
        raise click.ClickException("the key cannot be decrypted (SECRET_KEY changed?)")
    click.echo(key)


@users_cli.command("list")
def users_list() -> None:
    """List accounts with their balances."""
    rows = db.session.execute(select(User).order_by(User.id)).scalars()
    for user in rows:
        flags = ",".join(
            f for f, on in (("admin", user.is_admin), ("disabled", not user.active)) if on
        )
        click.echo(f"{user.id:>6}  {user.email:<40} {format_amount(user.balance):>12}  {flags}")


def _set_active(email: str, active: bool) -> None:
    from .services import admin as admin_service

    user = _user_or_fail(email)
    admin_service.set_active(user, active, actor=None)
    click.echo(f"{user.email} {'enabled' if active else 'disabled'}")


@users_cli.command("disable")
@click.argument("email")
def users_disable(email: str) -> None:
    """Disable an account: no login, and its API key answers ACCOUNT_INACTIVE."""
    _set_active(email, False)


@users_cli.command("enable")
@click.argument("email")
def users_enable(email: str) -> None:
    """Enable a disabled account."""
    _set_active(email, True)


@users_cli.command("fill-key-tails")
def users_fill_key_tails() -> None:
    """Keep the last characters of keys issued before they were kept (console key search)."""
    click.echo(f"{accounts.fill_key_tails()} key tail(s) filled")


@users_cli.command("verify-email")
@click.argument("email")
def users_verify_email(email: str) -> None:
    """Mark EMAIL's address as confirmed (the customer proved it another way; audited): its
    API key works under REQUIRE_EMAIL_VERIFICATION."""
    from .services import account_links

    user = _user_or_fail(email)
    account_links.mark_verified(user, actor=None)
    click.echo(f"{user.email}: e-mail address confirmed")


@users_cli.command("reset-2fa")
@click.argument("email")
def users_reset_two_factor(email: str) -> None:
    """Turn off two-factor sign-in for EMAIL (a lost authenticator; audited). The account
    logs in with its password alone until it sets two-factor up again."""
    from .services import two_factor

    user = _user_or_fail(email)
    two_factor.reset(user, actor=None)
    click.echo(f"{user.email}: two-factor authentication is off")


@ledger_cli.command("verify")
def ledger_verify() -> None:
    """Check that balances, ledger rows and activations agree; non-zero exit on problems."""
    problems = verify_ledger()
    for problem in problems:
        click.echo(problem)
    if problems:
        raise click.ClickException(f"{len(problems)} problem(s) found")
    click.echo("ledger OK")


DEMO_ACCOUNTS = (
    ("admin", "admin@example.com", "admin-password"),
    ("customer", "customer@example.com", "customer-password"),
)


@click.command("seed-demo")
def seed_demo() -> None:
    """Create a demo admin and a demo customer when the database has no users; print them
    (created or already there) on every run, as `make run` does."""
    if not accounts.count_users():
        accounts.create_user("admin@example.com", "admin-password", is_admin=True)
        customer = accounts.create_user("customer@example.com", "customer-password")
        wallet.adjust(customer.id, parse_amount("25.00"), note="demo balance")
        state = "created"
    else:
        state = "already there"
    found = [
        (role, user, password)
        for role, email, password in DEMO_ACCOUNTS
        if (user := accounts.user_by_email(email)) is not None
    ]
    if not found:
        click.echo("users exist; no demo accounts created (the database has other accounts)")
        return
    click.echo(f"Demo accounts (development only; {state}):")
    for role, user, password in found:
        click.echo(f"  {role:<9} {user.email} / {password} (balance {format_amount(user.balance)})")


def register(app: Flask) -> None:
    from . import admin_commands, provider_commands, worker_commands

    app.cli.add_command(users_cli)
    app.cli.add_command(ledger_cli)
    app.cli.add_command(seed_demo)
    worker_commands.register(app)
    admin_commands.register(app)
    provider_commands.register(app)
    from .telegram.cli import telegram_cli

    app.cli.add_command(telegram_cli)
