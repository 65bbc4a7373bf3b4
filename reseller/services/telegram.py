"""The Telegram bot's rules: who a Telegram user is here, linking to a web account, updates
taken at most once, the push outbox, broadcasts and Telegram Stars top-ups.

The bot (reseller.telegram) is a front-end like the dashboard: it calls this module and the
shared services (activations, wallet, pricing, payments) and renders their answers. Nothing
here talks to Telegram; the bot and the worker do.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import delete, exists, func, insert, literal, or_, select, update
from sqlalchemy.exc import IntegrityError

from .. import keyring
from ..extensions import db
from ..models import (
    Activation,
    JobState,
    LedgerEntry,
    Payment,
    TelegramAccount,
    TelegramBroadcast,
    TelegramLinkToken,
    TelegramMessage,
    TelegramNumberMessage,
    TelegramStarCharge,
    TelegramUpdate,
    User,
    utcnow,
)
from ..models import ActivationStatus as S
from ..models import TelegramMessageStatus as M
from . import accounts
from .errors import ServiceError
from .jobs import backoff_seconds, claim_job, claim_rows, finish_job

log = logging.getLogger(__name__)

LINK_LIFETIME = dt.timedelta(minutes=15)
UPDATES_KEPT = dt.timedelta(days=2)
MESSAGES_KEPT = dt.timedelta(days=7)
# Activation moves that push a message to the owner's chat (and edit the number's message).
PUSHED = {S.CODE_RECEIVED: "sms", S.EXPIRED: "expired"}
MAX_ATTEMPTS = 8
FIRST_RETRY, LAST_RETRY = 5, 3600
BOT_STATE = "telegram.bot"  # JobState: the bot's username as getMe told it


@dataclass(frozen=True)
class TelegramUser:
    """The sender of an update, as Telegram describes them."""

    id: int
    username: str | None = None
    first_name: str | None = None
    language_code: str | None = None


class LinkError(ServiceError):
    kind = "LINK_INVALID"
    message = "This link is not valid: it expired or was used. Make a new one."


class LinkRefused(LinkError):
    kind = "LINK_REFUSED"
    message = (
        "This Telegram account already has its own account with money or history; "
        "nothing was changed."
    )


class LinkTaken(LinkError):
    kind = "LINK_TAKEN"
    message = "That web account is linked to another Telegram user; unlink it first."


# --- who is who ---------------------------------------------------------------------------


def account(telegram_id: int) -> TelegramAccount | None:
    return db.session.get(TelegramAccount, telegram_id)


def account_of_user(user_id: int) -> TelegramAccount | None:
    return db.session.execute(
        select(TelegramAccount).where(TelegramAccount.user_id == user_id)
    ).scalar_one_or_none()


def account_for(sender: TelegramUser) -> TelegramAccount:
    """The sender's bot account, made on first contact (an account with a wallet and an API
    key, no e-mail). Notes that they are around (and so no longer blocking us). Commits."""
    now = utcnow()
    found = account(sender.id)
    if found is None:
        user = accounts.create_user_without_email(f"tg{sender.id}")
        found = TelegramAccount(
            id=sender.id,
            user_id=user.id,
            username=sender.username,
            first_name=sender.first_name,
            language_code=sender.language_code,
            made_by_bot=True,
            last_seen_at=now,
        )
        db.session.add(found)
        try:
            db.session.commit()
        except IntegrityError:  # a second update of the same new user won the race
            db.session.rollback()
            return account(sender.id)
        log.info("telegram user %s: new account %s", sender.id, found.user_id)
        return found
    values = {}
    if found.blocked_at is not None:
        values["blocked_at"] = None
    if (found.username, found.first_name, found.language_code) != (
        sender.username,
        sender.first_name,
        sender.language_code,
    ):
        values.update(
            username=sender.username,
            first_name=sender.first_name,
            language_code=sender.language_code,
        )
    if (now - found.last_seen_at).total_seconds() > 60:
        values["last_seen_at"] = now
    if values:
        for key, value in values.items():
            setattr(found, key, value)
        db.session.commit()
    return found


def set_language(telegram_id: int, code: str) -> None:
    db.session.execute(
        update(TelegramAccount).where(TelegramAccount.id == telegram_id).values(language=code)
    )
    db.session.commit()


def mark_blocked(chat_id: int) -> None:
    """The user blocked the bot (a send answered 403): no pushes until they write again."""
    db.session.execute(
        update(TelegramAccount)
        .where(TelegramAccount.id == chat_id, TelegramAccount.blocked_at.is_(None))
        .values(blocked_at=utcnow())
    )
    db.session.commit()


# --- linking a web account ----------------------------------------------------------------


def _token_hash(payload: str) -> str:
    return keyring.fingerprint(b"telegram-link", payload, length=64)


def new_link(user: User) -> str:
    """A one-time `/start` payload for `user` (43 characters of A-Za-z0-9_-), valid for
    LINK_LIFETIME. Commits."""
    payload = secrets.token_urlsafe(32)
    db.session.add(
        TelegramLinkToken(
            token_hash=_token_hash(payload), user_id=user.id, expires_at=utcnow() + LINK_LIFETIME
        )
    )
    db.session.commit()
    return payload


def _has_money_or_history(user_id: int) -> bool:
    user = db.session.get(User, user_id)
    if user is None:
        return False
    if user.balance:
        return True
    return bool(
        db.session.execute(
            select(
                or_(
                    exists().where(LedgerEntry.user_id == user_id),
                    exists().where(Activation.user_id == user_id),
                    exists().where(Payment.user_id == user_id),
                )
            )
        ).scalar()
    )


def link(sender: TelegramUser, payload: str) -> TelegramAccount:
    """Link the sender to the web account whose link `payload` is. A bot-made account with
    no money and no history is replaced (and disabled); otherwise nothing changes.
    Raises LinkError (unknown, used or expired link), LinkRefused, LinkTaken. Commits."""
    now = utcnow()
    if not payload or len(payload) > 64:
        raise LinkError()
    token = db.session.execute(
        select(TelegramLinkToken).where(TelegramLinkToken.token_hash == _token_hash(payload))
    ).scalar_one_or_none()
    if token is None or token.used_at is not None or token.expires_at <= now:
        raise LinkError()
    web_user_id = token.user_id
    current = account(sender.id)
    if current is not None and current.user_id == web_user_id:
        return current  # already linked (the link stays usable until it expires)
    other = account_of_user(web_user_id)
    if other is not None:
        raise LinkTaken()
    if current is not None and not (
        current.made_by_bot and not _has_money_or_history(current.user_id)
    ):
        raise LinkRefused()
    used = db.session.execute(
        update(TelegramLinkToken)
        .where(TelegramLinkToken.id == token.id, TelegramLinkToken.used_at.is_(None))
        .values(used_at=now)
    )
    if used.rowcount != 1:
        db.session.rollback()
        raise LinkError()
    if current is None:
        current = TelegramAccount(
            id=sender.id,
            user_id=web_user_id,
            username=sender.username,
            first_name=sender.first_name,
            language_code=sender.language_code,
            last_seen_at=now,
        )
        db.session.add(current)
    else:
        replaced = current.user_id
        db.session.execute(update(User).where(User.id == replaced).values(active=False))
        current.user_id = web_user_id
        current.made_by_bot = False
        current.blocked_at = None
        log.info("telegram user %s: bot account %s replaced by a link", sender.id, replaced)
    try:
        db.session.commit()
    except IntegrityError:  # the web account was linked meanwhile by someone else
        db.session.rollback()
        raise LinkTaken() from None
    return current


def unlink(user: User) -> bool:
    """Forget the Telegram user linked to `user` (they get a fresh bot account if they write
    again). Commits; False when none was linked."""
    result = db.session.execute(delete(TelegramAccount).where(TelegramAccount.user_id == user.id))
    db.session.commit()
    return result.rowcount > 0


def remember_bot(username: str) -> None:
    """Store the bot's username (for t.me links on the Account page). Commits."""
    row = db.session.get(JobState, BOT_STATE)
    if row is None:
        db.session.add(JobState(name=BOT_STATE, value=username))
    else:
        row.value = username
    db.session.commit()


def bot_username() -> str | None:
    if not current_app.config.get("TELEGRAM_BOT_TOKEN"):
        return None
    row = db.session.get(JobState, BOT_STATE)
    return row.value if row is not None else None


# --- updates at most once -----------------------------------------------------------------


def claim_update(update_id: int) -> bool:
    """True for the first taker of an update; False for a second delivery of it. Commits."""
    db.session.add(TelegramUpdate(update_id=update_id))
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return False
    return True


def last_update_id() -> int | None:
    """The last update taken (where long polling goes on from after a restart)."""
    return db.session.execute(select(func.max(TelegramUpdate.update_id))).scalar()


def prune_if_due() -> None:
    """Hourly (one worker on any host): forget old update ids, keeping the last one, and
    finished pushes older than MESSAGES_KEPT. Commits."""
    if not claim_job("telegram.prune", every=3600):
        return
    now = utcnow()
    last = last_update_id()
    db.session.execute(
        delete(TelegramUpdate).where(
            TelegramUpdate.received_at < now - UPDATES_KEPT,
            TelegramUpdate.update_id != (last if last is not None else -1),
        )
    )
    db.session.execute(
        delete(TelegramMessage).where(
            TelegramMessage.status != M.QUEUED.value,
            TelegramMessage.finished_at < now - MESSAGES_KEPT,
        )
    )
    db.session.commit()
    finish_job("telegram.prune")


# --- the push outbox ----------------------------------------------------------------------

_messages = TelegramMessage.__table__
_tg_accounts = TelegramAccount.__table__


def record_transition(activation_id: int, user_id: int, target: S) -> None:
    """Queue the push an activation's move causes to its owner's chat, if the owner uses
    the bot and has not blocked it: one INSERT … SELECT in the caller's transaction."""
    kind = PUSHED.get(target)
    if kind is None or not current_app.config.get("TELEGRAM_BOT_TOKEN"):
        return
    now = utcnow()
    chats = select(
        _tg_accounts.c.id,
        literal(kind),
        literal(activation_id),
        literal(M.QUEUED.value),
        literal(0),
        literal(now),
        literal(now),
    ).where(_tg_accounts.c.user_id == user_id, _tg_accounts.c.blocked_at.is_(None))
    db.session.execute(
        insert(_messages).from_select(
            [
                "chat_id",
                "kind",
                "activation_id",
                "status",
                "attempts",
                "next_attempt_at",
                "created_at",
            ],
            chats,
        )
    )


def remember_number_message(activation_id: int, chat_id: int, message_id: int) -> None:
    """The chat message showing a number (edited when its code comes). Commits."""
    db.session.merge(
        TelegramNumberMessage(activation_id=activation_id, chat_id=chat_id, message_id=message_id)
    )
    db.session.commit()


def number_message(activation_id: int) -> TelegramNumberMessage | None:
    return db.session.get(TelegramNumberMessage, activation_id)


def claim_due_messages(batch: int, claim_seconds: int) -> list[int]:
    """Claim queued pushes that are due (the one background pattern)."""
    return claim_rows(
        TelegramMessage,
        select(TelegramMessage.id)
        .where(
            TelegramMessage.status == M.QUEUED.value,
            TelegramMessage.next_attempt_at <= utcnow(),
        )
        .order_by(TelegramMessage.id),
        claim_seconds=claim_seconds,
        batch=batch,
    )


def message(message_id: int) -> TelegramMessage | None:
    return db.session.get(TelegramMessage, message_id)


def record_sent(message_id: int) -> None:
    _finish(message_id, M.SENT, None)


def record_blocked(message_id: int, chat_id: int) -> None:
    """A 403: the message is dropped and the user's pushes stop (see `mark_blocked`)."""
    _finish(message_id, M.FAILED, "blocked by the user")
    mark_blocked(chat_id)


def record_failure(message_id: int, error: str, retry_after: float | None = None) -> None:
    """A failed attempt: retried after `retry_after` (Telegram's word on a 429) or with
    backoff; failed for good after MAX_ATTEMPTS. Commits."""
    row = db.session.get(TelegramMessage, message_id)
    attempts = row.attempts + 1
    if attempts >= MAX_ATTEMPTS:
        _finish(message_id, M.FAILED, error, attempts=attempts)
        return
    delay = (
        retry_after
        if retry_after is not None
        else backoff_seconds(attempts, first=FIRST_RETRY, last=LAST_RETRY, steps=MAX_ATTEMPTS - 1)
    )
    db.session.execute(
        update(TelegramMessage)
        .where(TelegramMessage.id == message_id)
        .values(
            attempts=attempts,
            last_error=error[:200],
            next_attempt_at=utcnow() + dt.timedelta(seconds=delay),
            claimed_until=None,
        )
    )
    db.session.commit()


def postpone(message_id: int, seconds: float) -> None:
    """Not attempted (Telegram asked everyone to wait): due again after `seconds`. Commits."""
    db.session.execute(
        update(TelegramMessage)
        .where(TelegramMessage.id == message_id)
        .values(next_attempt_at=utcnow() + dt.timedelta(seconds=seconds), claimed_until=None)
    )
    db.session.commit()


def _finish(message_id: int, status: M, error: str | None, attempts: int | None = None) -> None:
    values = {"status": status.value, "finished_at": utcnow(), "claimed_until": None}
    values["last_error"] = error[:200] if error else None
    values["attempts"] = (
        attempts if attempts is not None else TelegramMessage.__table__.c.attempts + 1
    )
    db.session.execute(
        update(TelegramMessage)
        .where(TelegramMessage.id == message_id, TelegramMessage.status == M.QUEUED.value)
        .values(**values)
    )
    db.session.commit()


# --- broadcasts ---------------------------------------------------------------------------


class BroadcastError(ServiceError):
    kind = "BAD_BROADCAST"
    message = "Write a message of at most 4096 characters."


def start_broadcast(text: str, active_days: int | None, actor: User | None) -> TelegramBroadcast:
    """Queue `text` for every bot user who has not blocked the bot (or those seen in the last
    `active_days` days). The worker sends it within Telegram's limits. Commits."""
    text = (text or "").strip()
    if not text or len(text) > 4096:
        raise BroadcastError()
    if active_days is not None and not 1 <= active_days <= 3650:
        raise BroadcastError("Active within: 1 to 3650 days, or empty for everyone.")
    now = utcnow()
    broadcast = TelegramBroadcast(
        text=text, active_days=active_days, actor_id=actor.id if actor else None
    )
    db.session.add(broadcast)
    db.session.flush()
    audience = select(
        _tg_accounts.c.id,
        literal("broadcast"),
        literal(broadcast.id),
        literal(M.QUEUED.value),
        literal(0),
        literal(now),
        literal(now),
    ).where(_tg_accounts.c.blocked_at.is_(None))
    if active_days is not None:
        audience = audience.where(
            _tg_accounts.c.last_seen_at >= now - dt.timedelta(days=active_days)
        )
    db.session.execute(
        insert(_messages).from_select(
            [
                "chat_id",
                "kind",
                "broadcast_id",
                "status",
                "attempts",
                "next_attempt_at",
                "created_at",
            ],
            audience,
        )
    )
    # Counted, not taken from the INSERT's rowcount (psycopg answers -1 for INSERT … SELECT).
    broadcast.recipients = db.session.execute(
        select(func.count()).where(_messages.c.broadcast_id == broadcast.id)
    ).scalar_one()
    db.session.commit()
    return broadcast


@dataclass
class BroadcastProgress:
    broadcast: TelegramBroadcast
    queued: int = 0
    sent: int = 0
    failed: int = 0


def broadcasts(limit: int = 20) -> list[BroadcastProgress]:
    """The latest broadcasts with their counts."""
    rows = list(
        db.session.execute(
            select(TelegramBroadcast).order_by(TelegramBroadcast.id.desc()).limit(limit)
        ).scalars()
    )
    found = {b.id: BroadcastProgress(b) for b in rows}
    if found:
        for broadcast_id, status, count in db.session.execute(
            select(TelegramMessage.broadcast_id, TelegramMessage.status, func.count())
            .where(TelegramMessage.broadcast_id.in_(list(found)))
            .group_by(TelegramMessage.broadcast_id, TelegramMessage.status)
        ):
            setattr(found[broadcast_id], status, count)
    return list(found.values())


def bot_users(active_days: int | None = None) -> int:
    stmt = select(func.count()).select_from(TelegramAccount)
    if active_days:
        stmt = stmt.where(TelegramAccount.last_seen_at >= utcnow() - dt.timedelta(days=active_days))
    return db.session.execute(stmt).scalar_one()


# --- Telegram Stars -----------------------------------------------------------------------


def record_star_charge(payment_id: int, charge_id: str, telegram_user_id: int, stars: int) -> None:
    """Keep Telegram's charge id of a credited Stars payment (for its refund). Commits."""
    db.session.add(
        TelegramStarCharge(
            charge_id=charge_id,
            payment_id=payment_id,
            telegram_user_id=telegram_user_id,
            stars=stars,
        )
    )
    try:
        db.session.commit()
    except IntegrityError:  # a replay of the same payment: already kept
        db.session.rollback()


def star_charge(payment_id: int) -> TelegramStarCharge | None:
    return db.session.execute(
        select(TelegramStarCharge).where(TelegramStarCharge.payment_id == payment_id)
    ).scalar_one_or_none()


def json_body(data: dict) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
