"""The worker's sender for the bot's outbox (`TelegramMessage`): codes that arrived,
expiries, broadcasts.

Rows are claimed with the one background pattern (services.telegram.claim_due_messages),
rendered in the user's language, then sent with no transaction open. Telegram's limits are
kept: about 30 messages a second (sends are spaced), a 429 postpones the message by its
`retry_after` (and ends the pass: the limit is the bot's), a 403 means the user blocked
the bot — the message is dropped and their pushes stop. 5xx and network failures retry
with backoff.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
)
from flask import current_app

from .. import i18n
from ..extensions import db
from ..models import Activation, TelegramBroadcast
from ..services import telegram as tg
from .replies import code_pushed, expired_pushed, number_reply
from .runtime import make_bot, markup

log = logging.getLogger(__name__)

BATCH = 30
PER_SECOND = 30


@dataclass
class Prepared:
    message_id: int
    chat_id: int
    text: str
    edit: tuple | None = None  # (message id, reply) of the number's message to edit


@dataclass
class Outcome:
    sent: bool = False
    blocked: bool = False
    retry_after: float | None = None
    error: str | None = None


@dataclass
class PushCounts:
    sent: int = 0
    failed: int = 0


def _prepare(message_id: int) -> Prepared | None:
    row = tg.message(message_id)
    if row is None or row.status != "queued":
        return None
    account = tg.account(row.chat_id)
    language = (account.language or account.language_code) if account else None
    with i18n.in_language(language):
        if row.kind == "broadcast":
            broadcast = db.session.get(TelegramBroadcast, row.broadcast_id)
            return Prepared(row.id, row.chat_id, broadcast.text)
        activation = db.session.get(Activation, row.activation_id)
        text = code_pushed(activation) if row.kind == "sms" else expired_pushed(activation)
        shown = tg.number_message(activation.id)
        edit = None
        if shown is not None and shown.chat_id == row.chat_id:
            edit = (shown.message_id, number_reply(activation))
        return Prepared(row.id, row.chat_id, text, edit)


async def _send_all(app, prepared: list[Prepared]) -> list[Outcome]:
    bot = make_bot(app, timeout=20)
    outcomes: list[Outcome] = []
    try:
        for item in prepared:
            started = time.monotonic()
            outcome = await _send(bot, item)
            outcomes.append(outcome)
            if outcome.retry_after is not None:
                break  # the limit is the bot's: the others wait too
            await asyncio.sleep(max(0.0, 1 / PER_SECOND - (time.monotonic() - started)))
    finally:
        await bot.session.close()
    return outcomes


async def _send(bot, item: Prepared) -> Outcome:
    try:
        await bot.send_message(chat_id=item.chat_id, text=item.text)
    except TelegramRetryAfter as exc:
        return Outcome(retry_after=float(exc.retry_after), error="429: too many requests")
    except TelegramForbiddenError:
        return Outcome(blocked=True)
    except (TelegramNetworkError, TelegramBadRequest, Exception) as exc:  # 5xx, network…
        return Outcome(error=f"{type(exc).__name__}: {exc}"[:200])
    if item.edit is not None:
        message_id, reply = item.edit
        try:
            await bot.edit_message_text(
                chat_id=item.chat_id,
                message_id=message_id,
                text=reply.text,
                reply_markup=markup(reply),
            )
        except Exception as exc:  # the code went out; a stale edit is no failure
            log.info("telegram: number message %s not edited: %s", message_id, exc)
    return Outcome(sent=True)


def deliver_due(*, batch: int = BATCH) -> PushCounts:
    """Send the pushes that are due (at most `batch`, about PER_SECOND a second)."""
    counts = PushCounts()
    app = current_app._get_current_object()
    if not app.config.get("TELEGRAM_BOT_TOKEN"):
        return counts
    ids = tg.claim_due_messages(batch, claim_seconds=batch * 25 + 30)
    prepared: list[Prepared] = []
    for message_id in ids:
        try:
            item = _prepare(message_id)
        except Exception:
            db.session.rollback()
            log.exception("telegram push %s: could not be prepared", message_id)
            tg.record_failure(message_id, "could not be prepared")
            continue
        if item is not None:
            prepared.append(item)
    db.session.commit()  # nothing stays open while Telegram is called
    if not prepared:
        return counts
    outcomes = asyncio.run(_send_all(app, prepared))
    for item, outcome in zip(prepared, outcomes, strict=False):
        if outcome.sent:
            tg.record_sent(item.message_id)
            counts.sent += 1
        elif outcome.blocked:
            tg.record_blocked(item.message_id, item.chat_id)
            counts.failed += 1
        else:
            tg.record_failure(item.message_id, outcome.error or "failed", outcome.retry_after)
            counts.failed += 1
    for item in prepared[len(outcomes) :]:  # not tried: Telegram asked the bot to wait
        tg.postpone(item.message_id, outcomes[-1].retry_after or 1)
    return counts
