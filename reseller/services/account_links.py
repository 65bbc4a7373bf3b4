"""Links mailed to customers: password reset, e-mail verification, e-mail change.

A link carries a random token; the database holds only a keyed hash of it (`AccountToken`).
A token is used at most once (claimed with a guarded UPDATE), runs out after its lifetime,
and is void as soon as a newer one of the same purpose is issued for the account; a reset
token is also void once the password changes (`accounts.set_password`). The mail is queued
in the transaction that issues the token (`mail.queue`).
"""

from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from .. import keyring
from ..extensions import db
from ..models import AccountToken, User, utcnow
from ..models import AccountTokenPurpose as P
from . import accounts, mail
from .accounts import AccountError
from .audit import audit

LIFETIMES = {
    P.RESET_PASSWORD: dt.timedelta(hours=1),
    P.VERIFY_EMAIL: dt.timedelta(days=2),
    P.CHANGE_EMAIL: dt.timedelta(days=1),
}
TOKEN_BYTES = 32
INVALID_LINK = "This link is no longer valid: it was used, it ran out, or a newer one was sent."


def _digest(token: str) -> str:
    return keyring.fingerprint(b"account-links", token, length=64)


def _issue(user: User, purpose: P, email: str) -> str:
    """A new token of `purpose` for `user` (earlier unused ones become void). No commit."""
    now = utcnow()
    db.session.execute(
        update(AccountToken)
        .where(
            AccountToken.user_id == user.id,
            AccountToken.purpose == purpose.value,
            AccountToken.used_at.is_(None),
        )
        .values(used_at=now)
    )
    token = secrets.token_urlsafe(TOKEN_BYTES)
    db.session.add(
        AccountToken(
            user_id=user.id,
            purpose=purpose.value,
            token_hash=_digest(token),
            email=email,
            created_at=now,
            expires_at=now + LIFETIMES[purpose],
        )
    )
    return token


def valid_token(purpose: P, token: str | None) -> AccountToken | None:
    """The unused, unexpired token of `purpose` whose account is active, or None."""
    if not token or len(token) > 100:
        return None
    row = db.session.execute(
        select(AccountToken).where(AccountToken.token_hash == _digest(token))
    ).scalar_one_or_none()
    if row is None or row.purpose != purpose.value or row.used_at is not None:
        return None
    if row.expires_at <= utcnow():
        return None
    user = db.session.get(User, row.user_id)
    if user is None or not user.active:
        return None
    return row


def _use(purpose: P, token: str | None) -> tuple[AccountToken, User]:
    """Claim the token (only one caller can) or raise AccountError. No commit."""
    row = valid_token(purpose, token)
    if row is None:
        raise AccountError(INVALID_LINK)
    claimed = db.session.execute(
        update(AccountToken)
        .where(AccountToken.id == row.id, AccountToken.used_at.is_(None))
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:
        db.session.rollback()
        raise AccountError(INVALID_LINK)
    return row, db.session.get(User, row.user_id)


# --- forgot password ------------------------------------------------------------------------


def request_password_reset(email: str, *, language: str | None = None) -> None:
    """Mail a reset link to `email` when an active account has it; nothing otherwise (the
    caller answers the same either way). Commits."""
    user = accounts.user_by_email(email)
    if user is None or not user.active:
        return
    token = _issue(user, P.RESET_PASSWORD, user.email)
    mail.queue(
        "password_reset",
        user.email,
        user_id=user.id,
        language=language,
        link=mail.link("auth.reset_password", token=token),
        hours=int(LIFETIMES[P.RESET_PASSWORD].total_seconds() // 3600),
    )
    db.session.commit()


def reset_password(token: str, password: str) -> User:
    """Set a new password through a reset link (used up by this) and commit: every session
    of the account ends, and every other reset link becomes void. Raises AccountError for an
    invalid link or a weak password (the link then stays usable)."""
    accounts.check_password_strength(password)
    _row, user = _use(P.RESET_PASSWORD, token)
    accounts.set_password(user, password, action="user.password_reset")
    return user


# --- e-mail verification ----------------------------------------------------------------------


def send_verification(user: User, *, language: str | None = None) -> None:
    """Mail `user` a link that confirms their address (earlier links become void). Commits."""
    token = _issue(user, P.VERIFY_EMAIL, user.email)
    mail.queue(
        "verify_email",
        user.email,
        user_id=user.id,
        language=language,
        link=mail.link("auth.verify_email", token=token),
    )
    db.session.commit()


def verify_email(token: str) -> User:
    """Mark the account's address verified through its link, and commit. Raises AccountError
    for an invalid link (also one mailed to an address the account no longer has)."""
    row, user = _use(P.VERIFY_EMAIL, token)
    if row.email != user.email:
        db.session.rollback()
        raise AccountError(INVALID_LINK)
    user.email_verified_at = utcnow()
    audit(user, "user.email_verified", f"user:{user.id}")
    db.session.commit()
    return user


def mark_verified(user: User, actor: User | None) -> None:
    """The operator confirms the account's address (no link); commits with an audit row."""
    if user.email_verified_at is None:
        user.email_verified_at = utcnow()
        audit(actor, "user.email_verified", f"user:{user.id}", None, {"by": "operator"})
    db.session.commit()


# --- e-mail change ----------------------------------------------------------------------------


def _new_address(email: str) -> str:
    email = accounts.normalise_email(email)
    if not email or "@" not in email or len(email) > 254:
        raise AccountError("Enter a valid email address.")
    return email


def request_email_change(
    user: User, new_email: str, password: str, *, language: str | None = None
) -> str:
    """Mail a confirmation link to `new_email`; the address changes only when it is opened.
    Needs the current password. Commits; returns the new address. Raises AccountError."""
    checked = accounts.authenticate(user.email, password)
    if checked is None or checked.id != user.id:
        raise AccountError("This is not your current password.")
    email = _new_address(new_email)
    if email == user.email:
        raise AccountError("This is already your address.")
    if accounts.user_by_email(email) is not None:
        raise AccountError("An account with this email already exists.")
    token = _issue(user, P.CHANGE_EMAIL, email)
    mail.queue(
        "change_email",
        email,
        user_id=user.id,
        language=language,
        link=mail.link("auth.confirm_email_change", token=token),
        old_email=user.email,
    )
    db.session.commit()
    return email


def confirm_email_change(token: str) -> User:
    """Switch the account to the address its link was mailed to (now verified), and commit
    with an audit row. Raises AccountError for an invalid link or an address taken since."""
    row, user = _use(P.CHANGE_EMAIL, token)
    before = user.email
    user.email, user.email_verified_at = row.email, utcnow()
    audit(user, "user.email_change", f"user:{user.id}", {"email": before}, {"email": row.email})
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise AccountError("An account with this email already exists.") from None
    return user
