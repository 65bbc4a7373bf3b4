"""Mail to customers: an outbox written in the transaction that causes the mail, sent by the
worker.

`queue` renders a mail (plain text and HTML, from templates/mail/) and adds it to the outbox
(`MailMessage`) in the caller's transaction; the message is sealed (it carries links) and
dropped once sent or given up. `flask worker` sends what is due (`deliver_due`): rows claimed
with the one background pattern (`jobs.claim_rows`), each SMTP step bounded by MAIL_TIMEOUT,
retried with exponential backoff (about a minute first, six hours last), then failed. No web
request ever waits on a mail server.

Without MAIL_SERVER: outside production the mail is written to the log when queued (so that
`make run` shows the links) and not stored; in production nothing is queued and the pages
that need mail tell the customer to contact SUPPORT_CONTACT (`available`). Nothing else ever
logs a mail's text.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import smtplib
import time
from dataclasses import dataclass

from flask import current_app, render_template
from flask_mail import Connection, Message
from sqlalchemy import delete, select

from ..extensions import db
from ..models import MailMessage, MailStatus, utcnow
from .accounts import fernet_for
from .jobs import backoff_seconds, claim_job, claim_rows, finish_job, release

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8  # the first try and 7 retries, 1 minute … 6 hours apart
FIRST_RETRY = 60
LAST_RETRY = 6 * 3600
BATCH = 50  # mails claimed per pass
PASS_BUDGET = 20.0  # seconds after which a pass starts no new mail (the rest wait)
RETENTION = dt.timedelta(days=30)  # sent and failed mails (without their text) kept this long
PRUNE_EVERY = 3600

# The subject of each mail, by template name.
SUBJECTS = {
    "password_reset": "Reset your password",
    "verify_email": "Confirm your e-mail address",
    "change_email": "Confirm your new e-mail address",
}


def _fernet():
    return fernet_for(b"mail-outbox")


def available() -> bool:
    """Whether mails reach people: a mail server is configured, or (outside production) the
    log stands in for one."""
    config = current_app.config
    return bool(config.get("MAIL_SERVER")) or config.get("ENV_NAME") != "production"


def queue(kind: str, recipient: str, *, user_id: int | None, language: str | None, **context):
    """Render mail `kind` (templates mail/KIND.txt and mail/KIND.html, `context` their
    variables) for `recipient` and add it to the outbox, in the caller's transaction (the
    caller commits). Links in `context` are absolute (see `link`).

    Without MAIL_SERVER, outside production, the mail goes to the log instead; in
    production without one it is dropped (callers check `available` first)."""
    subject = SUBJECTS[kind]
    text = render_template(f"mail/{kind}.txt", subject=subject, **context)
    html = render_template(f"mail/{kind}.html", subject=subject, **context)
    if not current_app.config.get("MAIL_SERVER"):
        if available():
            # A warning: it is shown by `flask run` as it is (no logging set up in debug), and
            # no mail leaves. Outside production only (`available`).
            log.warning(
                "no MAIL_SERVER: this mail is logged, not sent. To %s: %s\n%s",
                recipient,
                subject,
                text,
            )
        return None
    sealed = (
        _fernet()
        .encrypt(json.dumps({"subject": subject, "text": text, "html": html}).encode())
        .decode()
    )
    message = MailMessage(
        user_id=user_id,
        kind=kind,
        recipient=recipient,
        language=language,
        sealed=sealed,
        status=MailStatus.QUEUED.value,
        next_attempt_at=utcnow(),
    )
    db.session.add(message)
    return message


def link(endpoint: str, **values) -> str:
    """An absolute link to `endpoint` for a mail: under PUBLIC_URL when set, else the
    address the current request came to."""
    from flask import url_for

    base = (current_app.config.get("PUBLIC_URL") or "").rstrip("/")
    if base:
        return base + url_for(endpoint, **values)
    return url_for(endpoint, _external=True, **values)


# --- sending ------------------------------------------------------------------------------


class TimedConnection(Connection):
    """Flask-Mail's connection with a timeout on every socket step: a mail server that
    stalls costs the worker MAIL_TIMEOUT seconds, not its pass."""

    def configure_host(self):
        mail, timeout = self.mail, current_app.config["MAIL_TIMEOUT"]
        if mail.use_ssl:
            host = smtplib.SMTP_SSL(mail.server, mail.port, timeout=timeout)
        else:
            host = smtplib.SMTP(mail.server, mail.port, timeout=timeout)
        if mail.use_tls:
            host.starttls()
        if mail.username and mail.password:
            host.login(mail.username, mail.password)
        return host


@dataclass
class DeliveryCounts:
    sent: int = 0
    failed: int = 0  # given up after MAX_ATTEMPTS
    retried: int = 0


def retry_delay(attempt: int) -> float:
    return backoff_seconds(attempt, first=FIRST_RETRY, last=LAST_RETRY, steps=MAX_ATTEMPTS - 1)


def deliver_due(*, budget: float = PASS_BUDGET) -> DeliveryCounts:
    """Send the queued mails that are due, over one SMTP connection. Rows not reached
    within `budget` seconds are left for the next pass."""
    counts = DeliveryCounts()
    if not current_app.config.get("MAIL_SERVER"):
        return counts
    now = utcnow()
    ids = claim_rows(
        MailMessage,
        select(MailMessage.id)
        .where(
            MailMessage.status == MailStatus.QUEUED.value,
            MailMessage.next_attempt_at <= now,
        )
        .order_by(MailMessage.next_attempt_at, MailMessage.id),
        # Past the budget no send starts; one started may take several SMTP steps.
        claim_seconds=int(budget + 10 * current_app.config["MAIL_TIMEOUT"]) + 30,
        batch=BATCH,
    )
    if not ids:
        return counts
    started = time.monotonic()
    connection = None
    try:
        for message_id in ids:
            if time.monotonic() - started > budget:
                release(MailMessage, message_id)
                continue
            try:
                if connection is None:
                    connection = TimedConnection(current_app.extensions["mail"]).__enter__()
                sent = _send(connection, message_id)
            except Exception as exc:  # noqa: BLE001 - any failure is this mail's, retried
                # The connection may be unusable: the next mail opens a new one.
                _close(connection)
                connection = None
                _record_failure(message_id, exc, counts)
            else:
                counts.sent += sent
    finally:
        _close(connection)
    return counts


def _send(connection: Connection, message_id: int) -> bool:
    """Send one claimed mail and record it sent; False when it is no longer queued."""
    row = db.session.get(MailMessage, message_id)
    if row is None or row.status != MailStatus.QUEUED.value or row.sealed is None:
        db.session.rollback()
        return False
    content = json.loads(_fernet().decrypt(row.sealed.encode()))
    message = Message(
        subject=content["subject"],
        recipients=[row.recipient],
        body=content["text"],
        html=content["html"],
        sender=current_app.config["MAIL_DEFAULT_SENDER"],
    )
    connection.send(message)
    row.status, row.sent_at, row.sealed = MailStatus.SENT.value, utcnow(), None
    row.attempts += 1
    row.claimed_until, row.last_error = None, None
    db.session.commit()
    return True


def _record_failure(message_id: int, exc: Exception, counts: DeliveryCounts) -> None:
    db.session.rollback()
    row = db.session.get(MailMessage, message_id)
    if row is None or row.status != MailStatus.QUEUED.value:
        return
    row.attempts += 1
    # The error's kind and the server's code only: an SMTP answer may quote the message.
    code = getattr(exc, "smtp_code", None)
    row.last_error = f"{type(exc).__name__}{f' {code}' if code else ''}"[:200]
    row.claimed_until = None
    if row.attempts >= MAX_ATTEMPTS:
        row.status, row.sealed = MailStatus.FAILED.value, None
        counts.failed += 1
        log.warning("mail %s to user %s given up: %s", row.id, row.user_id, row.last_error)
    else:
        row.next_attempt_at = utcnow() + dt.timedelta(seconds=retry_delay(row.attempts))
        counts.retried += 1
        log.info("mail %s not sent (%s): retried later", row.id, row.last_error)
    db.session.commit()


def _close(connection) -> None:
    if connection is None:
        return
    with contextlib.suppress(smtplib.SMTPException, OSError):
        connection.__exit__(None, None, None)


def prune(now: dt.datetime | None = None) -> int:
    """Delete the outbox rows of mails sent or given up more than RETENTION ago (their text
    is gone already); commits. Returns how many."""
    cutoff = (now or utcnow()) - RETENTION
    result = db.session.execute(
        delete(MailMessage).where(
            MailMessage.status.in_([MailStatus.SENT.value, MailStatus.FAILED.value]),
            MailMessage.created_at < cutoff,
        )
    )
    db.session.commit()
    return result.rowcount


def prune_if_due() -> None:
    if claim_job("mail_prune", every=PRUNE_EVERY, hold=300):
        try:
            prune()
        finally:
            finish_job("mail_prune")
