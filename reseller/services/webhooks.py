"""Customer webhooks: each SMS, cancellation and refunded expiry pushed to the customer's URL.

Events are written to an outbox (`WebhookEvent`) in the transaction of the activation change
that causes them (`record_transition`, called by the activation state machine), so a crash
never loses or invents one. `flask worker` delivers them (`deliver_due`): rows claimed with the
one background pattern (`jobs.claim_rows`), a signed POST through `reseller.safe_http` within
one deadline, on the worker's own threads (`Courier`), retries with exponential backoff (about
10 s first, about a day last), then failed. After `PAUSE_AFTER` failed attempts in a row the
endpoint is paused; saving its URL resumes it.

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
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import bindparam, delete, func, or_, select, update

from .. import metrics, safe_http
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
PER_ENDPOINT = 5  # events of one endpoint claimed together (delivered in turn)
PASS_BUDGET = 10.0  # seconds after which an endpoint's task starts no new delivery
PASS_WAIT = 2.0  # seconds a worker pass waits for its deliveries (the rest run on)
BOOKKEEPING = 5  # seconds allowed, beyond a delivery's deadline, to record its outcome
COURIER = "webhook_courier"  # the worker's Courier, in app.extensions
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

    def add(self, other: DeliveryCounts) -> None:
        self.delivered += other.delivered
        self.failed += other.failed


def _max_attempts(kind: str) -> int:
    return 1 if kind == TEST_EVENT else MAX_ATTEMPTS


@dataclass(frozen=True)
class _Limits:
    connect: float
    read: float  # the longest wait between two reads
    deadline: float  # one delivery's whole time

    @classmethod
    def configured(cls) -> _Limits:
        config = current_app.config
        deadline = float(config["WEBHOOK_DELIVERY_DEADLINE"])
        return cls(
            min(float(config["WEBHOOK_CONNECT_TIMEOUT"]), deadline),
            float(config["WEBHOOK_READ_TIMEOUT"]),
            deadline,
        )

    @property
    def claim_seconds(self) -> int:
        """A claim outlives every delivery it covers: `PER_ENDPOINT` events in turn, each
        within the deadline and its bookkeeping."""
        return int(PER_ENDPOINT * (self.deadline + BOOKKEEPING)) + 30


class Courier:
    """The deliveries of one worker process: a few threads, each delivering one endpoint's
    claimed events in turn. A slow receiver holds one thread, for at most the deadline per
    event, never another customer's events nor the worker's pass, which waits for its
    deliveries at most `PASS_WAIT` seconds and leaves the rest running.

    Only scheduling lives here. Which event is sent, and by whom, is settled by the claims in
    the database, so any number of processes and hosts may each run their own courier.
    `flask worker` keeps one for its whole run (`serve`); a call of `deliver_due` without one
    delivers everything it claims before it returns."""

    def __init__(self, app, threads: int) -> None:
        self.app = app
        self.threads = threads
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="webhooks")
        self.running: dict[int, Future] = {}  # endpoint id → its delivery task

    @classmethod
    def serve(cls, app) -> Courier:
        """A courier kept by `app` (the worker process) until `close`."""
        courier = cls(app, int(app.config["WEBHOOK_THREADS"]))
        app.extensions[COURIER] = courier
        return courier

    def free(self) -> int:
        return self.threads - len(self.running)

    def start(self, endpoint_id: int, event_ids: list[int], limits: _Limits, budget: float):
        self.running[endpoint_id] = self.executor.submit(
            self._run, endpoint_id, event_ids, limits, budget
        )

    def _run(self, endpoint_id, event_ids, limits, budget) -> DeliveryCounts:
        with self.app.app_context():
            try:
                return _deliver_endpoint(event_ids, limits, budget)
            except Exception:
                db.session.rollback()
                log.exception("webhook deliveries to endpoint %s failed", endpoint_id)
                for event_id in event_ids:  # claims end with their lease if this fails too
                    release(WebhookEvent, event_id)
                return DeliveryCounts()
            finally:
                db.session.remove()

    def collect(self, wait: float | None, endpoints=None) -> DeliveryCounts:
        """The counts of the tasks finished, after waiting up to `wait` seconds (None: as
        long as it takes) for those of `endpoints` (None: all)."""
        waited = [f for e, f in self.running.items() if endpoints is None or e in endpoints]
        futures.wait(waited, timeout=wait)
        counts = DeliveryCounts()
        for endpoint_id, future in list(self.running.items()):
            if future.done():
                del self.running[endpoint_id]
                counts.add(future.result())
        return counts

    def close(self) -> DeliveryCounts:
        """Wait for the deliveries under way (each ends by its deadline), then stop."""
        counts = self.collect(None)
        self.executor.shutdown(wait=True)
        if self.app.extensions.get(COURIER) is self:
            del self.app.extensions[COURIER]
        return counts


def deliver_due(*, budget: float = PASS_BUDGET) -> DeliveryCounts:
    """Start delivering the events that are due: the endpoints whose oldest event waits
    longest, as many as there are free threads, up to `PER_ENDPOINT` events each, an
    endpoint's events in turn and no new one after `budget` seconds. Returns the counts of
    the deliveries that finished: with the worker's courier, those finished since its last
    pass and within `PASS_WAIT` seconds; without one, all that were started.

    Each event is claimed, so several workers on several hosts never send one at the same
    time; the claim outlives the delivery. No transaction is open while a receiver is
    called."""
    kept = current_app.extensions.get(COURIER)
    courier = kept or Courier(current_app._get_current_object(), _threads())
    limits = _Limits.configured()
    counts = courier.collect(0)
    started = []
    for endpoint_id in _due_endpoints(set(courier.running), courier.free()):
        ids = claim_rows(
            WebhookEvent,
            select(WebhookEvent.id)
            .where(*_due(utcnow()), WebhookEvent.endpoint_id == endpoint_id)
            .order_by(WebhookEvent.id),
            claim_seconds=limits.claim_seconds,
            batch=PER_ENDPOINT,
        )
        if ids:
            courier.start(endpoint_id, ids, limits, budget)
            started.append(endpoint_id)
    db.session.commit()  # nothing held while the deliveries run (SQLite's write lock)
    if kept is None:
        counts.add(courier.close())
    else:  # what this pass started may finish in it; what an earlier one started runs on
        counts.add(courier.collect(PASS_WAIT, started))
    return counts


def _threads() -> int:
    return int(current_app.config["WEBHOOK_THREADS"])


def _due(now: dt.datetime) -> list:
    # Not paused; or removed, so that a late event is dropped rather than left waiting.
    live_endpoints = select(WebhookEndpoint.id).where(
        or_(WebhookEndpoint.paused_at.is_(None), WebhookEndpoint.url.is_(None))
    )
    return [
        WebhookEvent.status == E.QUEUED.value,
        WebhookEvent.next_attempt_at <= now,
        WebhookEvent.endpoint_id.in_(live_endpoints),
    ]


def _due_endpoints(busy: set[int], free: int) -> list[int]:
    """Up to `free` endpoints with an unclaimed due event, not among `busy` (this process's
    deliveries under way), the one whose oldest such event waits longest first."""
    if free <= 0:
        return []
    now = utcnow()
    stmt = (
        select(WebhookEvent.endpoint_id)
        .where(
            *_due(now),
            or_(WebhookEvent.claimed_until.is_(None), WebhookEvent.claimed_until <= now),
        )
        .group_by(WebhookEvent.endpoint_id)
        .order_by(func.min(WebhookEvent.id))
        .limit(free)
    )
    if busy:
        stmt = stmt.where(WebhookEvent.endpoint_id.not_in(busy))
    return list(db.session.execute(stmt).scalars())


def _deliver_endpoint(event_ids: list[int], limits: _Limits, budget: float) -> DeliveryCounts:
    """One endpoint's claimed events in turn: stops at its first failure (the rest wait for
    the next pass), after `budget` seconds, or when a claim could lapse before a delivery
    ends. Unsent events are released."""
    counts = DeliveryCounts()
    started = time.monotonic()
    pending = list(event_ids)
    try:
        while pending:
            if time.monotonic() - started > budget:
                break
            event_id = pending.pop(0)
            outcome, prepared = _attempt(event_id, limits)
            if outcome is None:
                release(WebhookEvent, event_id)
                continue
            if outcome.delivered:
                counts.delivered += 1
            else:
                counts.failed += 1
                log.info(
                    "webhook %s (endpoint %s) attempt %s failed: %s",
                    prepared.uid,
                    prepared.endpoint_id,
                    prepared.attempt,
                    outcome.error,
                )
                break
    finally:
        for event_id in pending:
            release(WebhookEvent, event_id)
    return counts


def _attempt(event_id: int, limits: _Limits):
    """Send one event and record the outcome. Any exception on the way counts as a failed
    attempt of this event (its backoff, the endpoint's streak), never as a step to retry at
    once. Returns (outcome, prepared), or (None, None) when nothing was to be sent."""
    try:
        prepared = _prepare(event_id, limits)
    except Exception as exc:
        db.session.rollback()
        log.exception("webhook event %s could not be prepared", event_id)
        prepared = _bare(event_id)
        if prepared is None:
            return None, None
        outcome = safe_http.Outcome(None, f"internal error ({type(exc).__name__})", 0)
    else:
        if prepared is None:
            return None, None
        try:
            outcome = _send(prepared, limits)
        except Exception as exc:
            log.exception("webhook %s: sending failed", prepared.uid)
            outcome = safe_http.Outcome(None, f"internal error ({type(exc).__name__})", 0)
    _record(prepared, outcome)
    return outcome, prepared


def _bare(event_id: int) -> _Prepared | None:
    """What `_record` needs of an event that could not be prepared (nothing to send)."""
    try:
        event = db.session.get(WebhookEvent, event_id)
        if event is None or event.status != E.QUEUED.value:
            return None
        return _Prepared(
            event_id=event.id,
            uid=event.uid,
            kind=event.kind,
            endpoint_id=event.endpoint_id,
            url="",
            secret="",
            body=b"",
            attempt=event.attempts + 1,
            max_attempts=_max_attempts(event.kind),
        )
    finally:
        db.session.commit()


def _prepare(event_id: int, limits: _Limits) -> _Prepared | None:
    """Read what one attempt sends; ends the transaction before anything is sent. None when
    there is nothing to send, or when this worker's claim could lapse before the delivery's
    deadline (another worker could then send the event at the same time)."""
    try:
        event = db.session.get(WebhookEvent, event_id)
        if event is None or event.status != E.QUEUED.value:
            return None
        claim_left = (event.claimed_until - utcnow()).total_seconds() if event.claimed_until else 0
        if claim_left < limits.deadline + BOOKKEEPING:
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


def _send(prepared: _Prepared, limits: _Limits) -> safe_http.Outcome:
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
        timeout=(limits.connect, limits.read),
        deadline=limits.deadline,
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
        result = "delivered"
        values.update(status=E.DELIVERED.value, finished_at=now, last_error=None)
    elif prepared.attempt >= prepared.max_attempts:
        result = "failed"
        values.update(status=E.FAILED.value, finished_at=now, last_error=outcome.error)
    else:
        result = "retry"
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
    metrics.WEBHOOK_DELIVERIES.labels(result).inc()


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
