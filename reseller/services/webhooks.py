"""Customer webhooks: each SMS, cancellation and refunded expiry pushed to the customer's URL.

Events are written to an outbox (`WebhookEvent`) in the transaction of the activation change
that causes them (`record_transition`, called by the activation state machine), so a crash
never loses or invents one. `flask worker` delivers them (`deliver_due`): rows claimed with the
one background pattern (`jobs.claim_rows`), a signed POST through `reseller.safe_http`, retries
with exponential backoff (about 10 s first, about a day last), then failed. After
`PAUSE_AFTER` failed attempts in a row the endpoint is paused; saving its URL resumes it.

Signature: `X-Webhook-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">` keyed with
the endpoint's secret, `<timestamp>` being `X-Webhook-Timestamp` (unix seconds).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
import time
import uuid
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import bindparam, delete, func, or_, select, update

from .. import safe_http
from ..extensions import db
from ..models import (
    Activation,
    Rental,
    User,
    WebhookAttempt,
    WebhookEndpoint,
    WebhookEvent,
    utcnow,
)
from ..models import ActivationStatus as S
from ..models import WebhookEventStatus as E
from .accounts import seal, unseal
from .jobs import backoff_seconds, claim_job, claim_rows, finish_job, release

log = logging.getLogger(__name__)

EVENT_OF_STATUS = {S.CODE_RECEIVED: "sms", S.CANCELLED: "cancelled", S.EXPIRED: "expired"}
TEST_EVENT = "test"
RENT_SMS_EVENT = "rent_sms"  # an SMS a rented number received (services.rentals)

MAX_ATTEMPTS = 12  # the first try and 11 retries, 10 s … 1 day apart
FIRST_RETRY = 10
LAST_RETRY = 24 * 3600
PAUSE_AFTER = 20  # failed attempts in a row (any events) that pause an endpoint
QUEUE_LIMIT = 1000  # queued events kept per endpoint; older ones beyond it are dropped
RETENTION = dt.timedelta(days=7)  # finished events kept this long (and queued ones of a
# paused endpoint)
ATTEMPTS_KEPT = 50
BODY_LIMIT = 4096  # bytes of a receiver's answer read, then the connection is closed
BATCH = 20
PASS_BUDGET = 10.0  # seconds one worker pass spends delivering (then polling goes on)
PRUNE_EVERY = 600

SIGNATURE_HEADER = "X-Webhook-Signature"
TIMESTAMP_HEADER = "X-Webhook-Timestamp"
ID_HEADER = "X-Webhook-Id"
EVENT_HEADER = "X-Webhook-Event"


class WebhookError(ValueError):
    """A webhook change that cannot be made; the message is for people."""


# The owner's endpoint id, read in the same statement as the activation's status when the
# state machine moves it (`activations._transition`): no extra query for anyone. Table
# columns (Core), so that the statements carrying it skip the ORM's execution layer.
_endpoints, _activations = WebhookEndpoint.__table__, Activation.__table__
OWNER_ENDPOINT = (
    select(_endpoints.c.id)
    .where(_endpoints.c.user_id == _activations.c.user_id, _endpoints.c.url.is_not(None))
    .scalar_subquery()
    .label("webhook_endpoint_id")
)
# The same for the activation named by the bind parameter `activation`, not by correlation:
# for an UPDATE's RETURNING, which SQLite's dialect renders with unqualified column names
# (a correlated subquery there would resolve them against its own table).
_owner = _activations.alias("owner_of")
OWNER_ENDPOINT_OF = (
    select(_endpoints.c.id)
    .where(
        _endpoints.c.user_id
        == select(_owner.c.user_id).where(_owner.c.id == bindparam("activation")).scalar_subquery(),
        _endpoints.c.url.is_not(None),
    )
    .scalar_subquery()
    .label("webhook_endpoint_id")
)


def _new_uid() -> str:
    return uuid.uuid4().hex


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(24)


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """The signature header's value for this body sent at this time."""
    message = str(timestamp).encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _allow_private() -> bool:
    return bool(current_app.config.get("WEBHOOK_ALLOW_PRIVATE_TARGETS"))


# --- the outbox -------------------------------------------------------------------------


def record_transition(endpoint_id: int | None, activation_id: int, target: S, values: dict) -> None:
    """Queue the event an activation's move to `target` causes, in the caller's transaction.

    `endpoint_id` is the owner's endpoint as `OWNER_ENDPOINT` read it (None: no webhook,
    nothing to do); `values` are the columns the move sets (code, sms_text, code_at,
    closed_at)."""
    kind = EVENT_OF_STATUS.get(target)
    if endpoint_id is None or kind is None:
        return
    now = utcnow()
    db.session.add(
        WebhookEvent(
            uid=_new_uid(),
            endpoint_id=endpoint_id,
            activation_id=activation_id,
            kind=kind,
            code=values.get("code"),
            text=values.get("sms_text"),
            occurred_at=values.get("code_at") or values.get("closed_at") or now,
            status=E.QUEUED.value,
            next_attempt_at=now,
        )
    )


def record_rent_sms(endpoint_id: int, rental_id: int, message) -> None:
    """Queue a `rent_sms` event for an SMS a rented number received (`message`, a
    RentMessage), in the caller's transaction. A normal outbox event: every subscriber of
    the outbox sees it."""
    now = utcnow()
    db.session.add(
        WebhookEvent(
            uid=_new_uid(),
            endpoint_id=endpoint_id,
            rental_id=rental_id,
            kind=RENT_SMS_EVENT,
            code=(message.sender or "")[:100] or None,  # (the sender: rent SMS carry no code)
            text=message.text,
            occurred_at=message.received_at or now,
            status=E.QUEUED.value,
            next_attempt_at=now,
        )
    )


def rent_payload(event: WebhookEvent, rental: Rental | None = None) -> dict:
    """A `rent_sms` event's body: SMS-Activate's rent webhook fields plus `event`."""
    if rental is None and event.rental_id:
        rental = db.session.get(Rental, event.rental_id)
    return {
        "rentId": rental.id if rental else event.rental_id,
        "number": rental.phone if rental else None,
        "service": rental.service if rental else None,
        "country": rental.country_id if rental else None,
        "phoneFrom": event.code,
        "text": event.text,
        "receivedAt": _stamp(event.occurred_at),
        "event": RENT_SMS_EVENT,
    }


def _stamp(moment: dt.datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else None


def payload(event: WebhookEvent, activation: Activation | None) -> dict:
    """The JSON body: SMS-Activate's webhook shape plus `event` (times in UTC)."""
    if event.kind == RENT_SMS_EVENT:
        return rent_payload(event)
    if event.kind == TEST_EVENT:
        return {
            "activationId": 0,
            "service": "test",
            "text": "Test event: your webhook works.",
            "code": "000000",
            "country": 0,
            "receivedAt": _stamp(event.occurred_at),
            "event": TEST_EVENT,
        }
    body: dict = {
        "activationId": event.activation_id,
        "service": activation.service if activation else None,
    }
    if event.kind == "sms":
        # Providers give the code, not always the whole text: then the text is the code.
        body.update(text=event.text or event.code, code=event.code)
    body["country"] = activation.country_id if activation else None
    if event.kind == "sms":
        body["receivedAt"] = _stamp(event.occurred_at)
    else:
        body["closedAt"] = _stamp(event.occurred_at)
    body["event"] = event.kind
    return body


def encode(body: dict) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


# --- the customer's endpoint --------------------------------------------------------------


def _row_for(user_id: int) -> WebhookEndpoint | None:
    return db.session.execute(
        select(WebhookEndpoint).where(WebhookEndpoint.user_id == user_id)
    ).scalar_one_or_none()


def endpoint_for(user_id: int) -> WebhookEndpoint | None:
    """The user's webhook, or None when they have none (never set, or removed)."""
    endpoint = _row_for(user_id)
    return endpoint if endpoint is not None and endpoint.url is not None else None


def reveal_secret(endpoint: WebhookEndpoint) -> str | None:
    """The signing secret in clear, or None when it cannot be decrypted (SECRET_KEY changed)."""
    return unseal(endpoint.secret_encrypted)


def save_url(user: User, url: str) -> WebhookEndpoint:
    """Set the user's webhook URL (checked: scheme, port, and in production a public address)
    and resume delivery if it was paused. A first URL gets a new secret. Commits.
    Raises WebhookError."""
    try:
        target = safe_http.check_url(url, allow_private=_allow_private())
    except safe_http.TargetRefused as exc:
        raise WebhookError(str(exc)) from None
    del target
    url = url.strip()
    endpoint = _row_for(user.id)
    now = utcnow()
    if endpoint is None:
        endpoint = WebhookEndpoint(user_id=user.id, url=url, secret_encrypted=seal(new_secret()))
        db.session.add(endpoint)
    elif endpoint.url is None:  # set again after a removal: a fresh start
        endpoint.url = url
        endpoint.secret_encrypted = seal(new_secret())
        endpoint.paused_at = endpoint.pause_reason = None
        endpoint.consecutive_failures = 0
    else:
        endpoint.url = url
        if endpoint.paused_at is not None:
            # What waited during the pause goes out on the next pass.
            db.session.execute(
                update(WebhookEvent)
                .where(
                    WebhookEvent.endpoint_id == endpoint.id,
                    WebhookEvent.status == E.QUEUED.value,
                )
                .values(next_attempt_at=now)
            )
        endpoint.paused_at = None
        endpoint.pause_reason = None
        endpoint.consecutive_failures = 0
    db.session.commit()
    return endpoint


def regenerate_secret(user: User) -> None:
    """A new signing secret; the next attempt of every event is signed with it. Commits."""
    endpoint = endpoint_for(user.id)
    if endpoint is None:
        raise WebhookError("Set a webhook URL first.")
    endpoint.secret_encrypted = seal(new_secret())
    db.session.commit()


def remove(user: User) -> None:
    """Stop webhooks for this user: waiting events are dropped, the attempt log cleared.
    Commits."""
    endpoint = endpoint_for(user.id)
    if endpoint is None:
        return
    _drop([WebhookEvent.endpoint_id == endpoint.id], "dropped: webhook removed", utcnow())
    db.session.execute(delete(WebhookAttempt).where(WebhookAttempt.endpoint_id == endpoint.id))
    endpoint.url = None
    db.session.commit()


def send_test(user: User) -> WebhookEvent:
    """Queue a test event (one attempt, no retries) for the next worker pass. Commits.
    Raises WebhookError when there is no URL or delivery is paused."""
    endpoint = endpoint_for(user.id)
    if endpoint is None:
        raise WebhookError("Set a webhook URL first.")
    if endpoint.paused_at is not None:
        raise WebhookError("Delivery is paused: save the URL again to resume it, then test.")
    now = utcnow()
    event = WebhookEvent(
        uid=_new_uid(),
        endpoint_id=endpoint.id,
        kind=TEST_EVENT,
        occurred_at=now,
        status=E.QUEUED.value,
        next_attempt_at=now,
    )
    db.session.add(event)
    db.session.commit()
    return event


def recent_attempts(endpoint_id: int, limit: int = ATTEMPTS_KEPT) -> list[WebhookAttempt]:
    return list(
        db.session.execute(
            select(WebhookAttempt)
            .where(WebhookAttempt.endpoint_id == endpoint_id)
            .order_by(WebhookAttempt.id.desc())
            .limit(limit)
        ).scalars()
    )


def recent_failures(endpoint_id: int, limit: int = 10) -> list[WebhookAttempt]:
    return list(
        db.session.execute(
            select(WebhookAttempt)
            .where(WebhookAttempt.endpoint_id == endpoint_id, WebhookAttempt.error.is_not(None))
            .order_by(WebhookAttempt.id.desc())
            .limit(limit)
        ).scalars()
    )


def queued_count(endpoint_id: int) -> int:
    return db.session.execute(
        select(func.count(WebhookEvent.id)).where(
            WebhookEvent.endpoint_id == endpoint_id, WebhookEvent.status == E.QUEUED.value
        )
    ).scalar_one()


# --- delivery -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Prepared:
    event_id: int
    uid: str
    kind: str
    endpoint_id: int
    url: str
    secret: str
    body: bytes
    attempt: int
    max_attempts: int


@dataclass
class DeliveryCounts:
    delivered: int = 0
    failed: int = 0  # attempts that failed (the event may still be retried)


def _max_attempts(kind: str) -> int:
    return 1 if kind == TEST_EVENT else MAX_ATTEMPTS


def _timeouts() -> tuple[float, float]:
    config = current_app.config
    return (float(config["WEBHOOK_CONNECT_TIMEOUT"]), float(config["WEBHOOK_READ_TIMEOUT"]))


def deliver_due(*, batch: int = BATCH, budget: float = PASS_BUDGET) -> DeliveryCounts:
    """Deliver the events that are due, at most `batch`, within about `budget` seconds.

    Each event is claimed, so several workers on several hosts never send one at the same
    time. No transaction is open while a receiver is called."""
    counts = DeliveryCounts()
    connect, read = _timeouts()
    now = utcnow()
    # Not paused; or removed, so that a late event is dropped rather than left waiting.
    live_endpoints = select(WebhookEndpoint.id).where(
        or_(WebhookEndpoint.paused_at.is_(None), WebhookEndpoint.url.is_(None))
    )
    ids = claim_rows(
        WebhookEvent,
        select(WebhookEvent.id)
        .where(
            WebhookEvent.status == E.QUEUED.value,
            WebhookEvent.next_attempt_at <= now,
            WebhookEvent.endpoint_id.in_(live_endpoints),
        )
        .order_by(WebhookEvent.id),
        # Long enough for every claimed event to time out in turn.
        claim_seconds=int(batch * (connect + read + 2)) + 30,
        batch=batch,
    )
    deadline = time.monotonic() + budget
    failing: set[int] = set()  # endpoints that failed in this pass: their others wait
    for event_id in ids:
        recorded = False
        try:
            if time.monotonic() > deadline:
                continue
            prepared = _prepare(event_id)
            if prepared is None or prepared.endpoint_id in failing:
                continue
            outcome = _send(prepared, (connect, read))
            _record(prepared, outcome)
            recorded = True
            if outcome.delivered:
                counts.delivered += 1
            else:
                counts.failed += 1
                failing.add(prepared.endpoint_id)
                log.info(
                    "webhook %s (endpoint %s) attempt %s failed: %s",
                    prepared.uid,
                    prepared.endpoint_id,
                    prepared.attempt,
                    outcome.error,
                )
        except Exception:
            db.session.rollback()
            log.exception("webhook event %s: delivery step failed", event_id)
        finally:
            if not recorded:
                release(WebhookEvent, event_id)
    return counts


def _prepare(event_id: int) -> _Prepared | None:
    """Read what one attempt sends; ends the transaction before anything is sent."""
    try:
        event = db.session.get(WebhookEvent, event_id)
        if event is None or event.status != E.QUEUED.value:
            return None
        endpoint = db.session.get(WebhookEndpoint, event.endpoint_id)
        if endpoint.url is None:  # removed while this event was being written
            _drop([WebhookEvent.id == event.id], "dropped: webhook removed", utcnow())
            return None
        if endpoint.paused_at is not None:
            return None
        secret = reveal_secret(endpoint)
        if secret is None:
            _pause(
                endpoint.id,
                "The signing secret cannot be read (the server's key changed): regenerate it.",
            )
            return None
        activation = (
            db.session.get(Activation, event.activation_id) if event.activation_id else None
        )
        return _Prepared(
            event_id=event.id,
            uid=event.uid,
            kind=event.kind,
            endpoint_id=endpoint.id,
            url=endpoint.url,
            secret=secret,
            body=encode(payload(event, activation)),
            attempt=event.attempts + 1,
            max_attempts=_max_attempts(event.kind),
        )
    finally:
        db.session.commit()


def _send(prepared: _Prepared, timeout: tuple[float, float]) -> safe_http.Outcome:
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "reseller-webhooks/1",
        ID_HEADER: prepared.uid,
        EVENT_HEADER: prepared.kind,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(prepared.secret, timestamp, prepared.body),
        "X-Webhook-Attempt": str(prepared.attempt),
    }
    return safe_http.post(
        prepared.url,
        prepared.body,
        headers,
        timeout=timeout,
        allow_private=_allow_private(),
        body_limit=BODY_LIMIT,
    )


def retry_delay(attempt: int) -> float:
    """Seconds before the retry that follows failed attempt number `attempt`."""
    return backoff_seconds(attempt, first=FIRST_RETRY, last=LAST_RETRY, steps=MAX_ATTEMPTS - 1)


def _record(prepared: _Prepared, outcome: safe_http.Outcome) -> None:
    """Write an attempt's outcome: the event, the attempt log, the endpoint's streak."""
    now = utcnow()
    values: dict = {"attempts": prepared.attempt, "claimed_until": None}
    next_retry = None
    if outcome.delivered:
        values.update(status=E.DELIVERED.value, finished_at=now, last_error=None)
    elif prepared.attempt >= prepared.max_attempts:
        values.update(status=E.FAILED.value, finished_at=now, last_error=outcome.error)
    else:
        next_retry = now + dt.timedelta(seconds=retry_delay(prepared.attempt))
        values.update(next_attempt_at=next_retry, last_error=outcome.error)
    db.session.execute(
        update(WebhookEvent)
        .where(WebhookEvent.id == prepared.event_id, WebhookEvent.status == E.QUEUED.value)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    db.session.add(
        WebhookAttempt(
            endpoint_id=prepared.endpoint_id,
            event_uid=prepared.uid,
            kind=prepared.kind,
            attempted_at=now,
            status_code=outcome.status_code,
            error=outcome.error,
            duration_ms=outcome.duration_ms,
            next_retry_at=next_retry,
        )
    )
    endpoint = WebhookEndpoint.__table__.c
    if outcome.delivered:
        streak = {"consecutive_failures": 0, "last_success_at": now}
    else:
        streak = {
            "consecutive_failures": endpoint.consecutive_failures + 1,
            "last_failure_at": now,
        }
    db.session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == prepared.endpoint_id)
        .values(**streak)
        .execution_options(synchronize_session=False)
    )
    if not outcome.delivered:
        db.session.execute(
            update(WebhookEndpoint)
            .where(
                WebhookEndpoint.id == prepared.endpoint_id,
                WebhookEndpoint.paused_at.is_(None),
                WebhookEndpoint.consecutive_failures >= PAUSE_AFTER,
            )
            .values(
                paused_at=now,
                pause_reason=f"Paused after {PAUSE_AFTER} failed deliveries in a row "
                f"(the last: {outcome.error})."[:200],
            )
            .execution_options(synchronize_session=False)
        )
    db.session.commit()


def _pause(endpoint_id: int, reason: str) -> None:
    db.session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.paused_at.is_(None))
        .values(paused_at=utcnow(), pause_reason=reason[:200])
        .execution_options(synchronize_session=False)
    )


# --- upkeep -------------------------------------------------------------------------------


def prune(now: dt.datetime | None = None) -> int:
    """Bound the tables: finished events past the retention go; queued events beyond
    `QUEUE_LIMIT` per endpoint, or waiting on a paused endpoint past the retention, are
    dropped (failed); each endpoint keeps its latest `ATTEMPTS_KEPT` attempts. Commits.
    Returns the number of events deleted or dropped."""
    now = now or utcnow()
    cutoff = now - RETENTION
    changed = db.session.execute(
        delete(WebhookEvent)
        .where(WebhookEvent.status != E.QUEUED.value, WebhookEvent.finished_at < cutoff)
        .execution_options(synchronize_session=False)
    ).rowcount
    paused = select(WebhookEndpoint.id).where(WebhookEndpoint.paused_at.is_not(None))
    changed += _drop(
        [
            WebhookEvent.endpoint_id.in_(paused),
            WebhookEvent.created_at < cutoff,
        ],
        "dropped: the endpoint stayed paused",
        now,
    )
    crowded = db.session.execute(
        select(WebhookEvent.endpoint_id)
        .where(WebhookEvent.status == E.QUEUED.value)
        .group_by(WebhookEvent.endpoint_id)
        .having(func.count(WebhookEvent.id) > QUEUE_LIMIT)
    ).scalars()
    for endpoint_id in list(crowded):
        newest_kept = db.session.execute(
            select(WebhookEvent.id)
            .where(WebhookEvent.endpoint_id == endpoint_id, WebhookEvent.status == E.QUEUED.value)
            .order_by(WebhookEvent.id.desc())
            .offset(QUEUE_LIMIT - 1)
            .limit(1)
        ).scalar_one()
        changed += _drop(
            [WebhookEvent.endpoint_id == endpoint_id, WebhookEvent.id < newest_kept],
            f"dropped: more than {QUEUE_LIMIT} events waiting",
            now,
        )
    busy = db.session.execute(
        select(WebhookAttempt.endpoint_id)
        .group_by(WebhookAttempt.endpoint_id)
        .having(func.count(WebhookAttempt.id) > ATTEMPTS_KEPT)
    ).scalars()
    for endpoint_id in list(busy):
        oldest_kept = db.session.execute(
            select(WebhookAttempt.id)
            .where(WebhookAttempt.endpoint_id == endpoint_id)
            .order_by(WebhookAttempt.id.desc())
            .offset(ATTEMPTS_KEPT - 1)
            .limit(1)
        ).scalar_one()
        db.session.execute(
            delete(WebhookAttempt)
            .where(WebhookAttempt.endpoint_id == endpoint_id, WebhookAttempt.id < oldest_kept)
            .execution_options(synchronize_session=False)
        )
    db.session.commit()
    return changed


def _drop(conditions: list, reason: str, now: dt.datetime) -> int:
    return db.session.execute(
        update(WebhookEvent)
        .where(WebhookEvent.status == E.QUEUED.value, *conditions)
        .values(status=E.FAILED.value, finished_at=now, last_error=reason, claimed_until=None)
        .execution_options(synchronize_session=False)
    ).rowcount


def prune_if_due() -> None:
    """The periodic prune, at most once per `PRUNE_EVERY` seconds across every worker."""
    if not claim_job("webhooks-prune", every=PRUNE_EVERY, hold=300):
        return
    try:
        prune()
        finish_job("webhooks-prune")
    except Exception:
        db.session.rollback()
        finish_job("webhooks-prune", ran=False)
        raise


# --- figures --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    endpoints: int
    paused: int
    queued: int
    delivered_today: int
    failed_today: int


def figures(now: dt.datetime | None = None) -> Figures:
    """For the console overview: events waiting now, delivered and failed since midnight UTC."""
    now = now or utcnow()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)

    def count(*conditions) -> int:
        return db.session.execute(
            select(func.count(WebhookEvent.id)).where(*conditions)
        ).scalar_one()

    endpoints, paused = db.session.execute(
        select(
            func.count(WebhookEndpoint.id),
            func.count(WebhookEndpoint.paused_at),
        ).where(WebhookEndpoint.url.is_not(None))
    ).one()
    return Figures(
        endpoints=endpoints,
        paused=paused,
        queued=count(WebhookEvent.status == E.QUEUED.value),
        delivered_today=count(
            WebhookEvent.status == E.DELIVERED.value, WebhookEvent.finished_at >= midnight
        ),
        failed_today=count(
            WebhookEvent.status == E.FAILED.value, WebhookEvent.finished_at >= midnight
        ),
    )
