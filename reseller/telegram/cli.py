"""`flask telegram poll | set-webhook | delete-webhook`."""

from __future__ import annotations

import asyncio
import signal

import click
from flask import current_app
from flask.cli import with_appcontext

from ..services import telegram as tg

telegram_cli = click.Group("telegram", help="The Telegram bot (TELEGRAM_BOT_TOKEN).")


def _app():
    app = current_app._get_current_object()
    if not app.config.get("TELEGRAM_BOT_TOKEN"):
        raise click.ClickException("TELEGRAM_BOT_TOKEN is not set: the bot is off")
    return app


@telegram_cli.command("poll")
@with_appcontext
def poll_command() -> None:
    """Run the bot by long polling (one process per bot) until SIGINT/SIGTERM."""
    from .runtime import poll

    app = _app()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await poll(app, stop)

    click.echo("telegram: polling (Ctrl-C to stop)")
    asyncio.run(main())


async def _call(app, method: str, **kwargs):
    from .runtime import make_bot

    bot = make_bot(app, timeout=30)
    try:
        me = await bot.get_me()
        result = await getattr(bot, method)(**kwargs)
        return me, result
    finally:
        await bot.session.close()


@telegram_cli.command("set-webhook")
@with_appcontext
def set_webhook_command() -> None:
    """Register <PUBLIC_URL>/telegram/webhook with TELEGRAM_WEBHOOK_SECRET: every web
    instance then handles updates (stop `telegram poll` first)."""
    from .runtime import ALLOWED_UPDATES

    app = _app()
    public, secret = app.config.get("PUBLIC_URL"), app.config.get("TELEGRAM_WEBHOOK_SECRET")
    if not public or not secret:
        raise click.ClickException("set-webhook needs PUBLIC_URL and TELEGRAM_WEBHOOK_SECRET")
    url = public.rstrip("/") + "/telegram/webhook"
    me, _ = asyncio.run(
        _call(
            app,
            "set_webhook",
            url=url,
            secret_token=secret,
            allowed_updates=ALLOWED_UPDATES,
            drop_pending_updates=False,
        )
    )
    tg.remember_bot(me.username or "")
    click.echo(f"webhook of @{me.username} set to {url}")


@telegram_cli.command("delete-webhook")
@with_appcontext
def delete_webhook_command() -> None:
    """Remove the webhook: updates wait for `flask telegram poll` again."""
    app = _app()
    me, _ = asyncio.run(_call(app, "delete_webhook", drop_pending_updates=False))
    tg.remember_bot(me.username or "")
    click.echo(f"webhook of @{me.username} removed; run `flask telegram poll`")
