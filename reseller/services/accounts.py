"""Accounts: sign-up, credentials, sessions and API keys.

API keys are long random tokens. The database holds only an HMAC of the key (for lookup)
and the key encrypted under a key derived from SECRET_KEY (so its owner can see it again);
a database dump alone reveals no usable key.
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import secrets
from typing import NamedTuple

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from .. import db_reads, keyring
from ..extensions import db
from ..models import AccountToken, AccountTokenPurpose, User, utcnow
from .audit import audit

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 256
API_KEY_BYTES = 32
API_KEY_TAIL = 4  # characters of a key kept in clear (User.api_key_tail)


class AccountError(ValueError):
    """A request about accounts that cannot be done; the message is for people."""


def normalise_email(email: str) -> str:
    return (email or "").strip().lower()


def api_key_digest(key: str) -> str:
    """The lookup hash of an API key (hex HMAC-SHA256)."""
    return keyring.fingerprint(b"lookup", key, length=64)


def private_digest(value: str) -> str:
    """A keyed hash naming `value` in shared storage (rate-limit counters) without showing it."""
    return keyring.fingerprint(b"counters", value)


def fernet_for(purpose: bytes) -> Fernet:
    """A Fernet under a key derived from SECRET_KEY for one purpose (API keys, provider
    keys): each purpose its own key."""
    return Fernet(base64.urlsafe_b64encode(keyring.derive(purpose)))


def _fernet() -> Fernet:
    return fernet_for(b"encryption")


def new_api_key() -> str:
    return secrets.token_urlsafe(API_KEY_BYTES)


def _store_api_key(user: User, key: str) -> None:
    user.api_key_hash = api_key_digest(key)
    user.api_key_encrypted = seal(key)
    user.api_key_tail = key[-API_KEY_TAIL:]


def seal(text: str) -> str:
    """`text` encrypted under a key derived from SECRET_KEY (API keys, webhook secrets)."""
    return _fernet().encrypt(text.encode()).decode()


def unseal(token: str) -> str | None:
    """What `seal` encrypted, or None when it cannot be decrypted (SECRET_KEY changed)."""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except (InvalidToken, ValueError):
        return None


def reveal_api_key(user: User) -> str | None:
    """The user's API key in clear, or None when it cannot be decrypted (SECRET_KEY changed)."""
    return unseal(user.api_key_encrypted)


class KeySearchTooShort(AccountError):
    pass


def users_with_key_ending(text: str) -> list[int]:
    """The ids of the accounts whose API key ends with `text` (at least API_KEY_TAIL
    characters): the stored tail narrows the search, each candidate's key is then
    compared. Raises KeySearchTooShort for a shorter text."""
    text = (text or "").strip()
    if len(text) < API_KEY_TAIL:
        raise KeySearchTooShort(f"Give at least {API_KEY_TAIL} characters of the key.")
    candidates = db.session.execute(
        select(User.id, User.api_key_encrypted).where(User.api_key_tail == text[-API_KEY_TAIL:])
    ).all()
    return [
        user_id
        for user_id, sealed in candidates
        if len(text) == API_KEY_TAIL or (unseal(sealed) or "").endswith(text)
    ]


def fill_key_tails(batch: int = 500) -> int:
    """Store the tail of every key issued before tails were kept (decrypting it). Commits
    per batch; returns how many were filled. Keys that cannot be decrypted are left."""
    filled = 0
    last_id = 0
    while True:
        rows = (
            db.session.execute(
                select(User)
                .where(User.api_key_tail.is_(None), User.id > last_id)
                .order_by(User.id)
                .limit(batch)
            )
            .scalars()
            .all()
        )
        if not rows:
            return filled
        for user in rows:
            last_id = user.id
            key = reveal_api_key(user)
            if key:
                user.api_key_tail = key[-API_KEY_TAIL:]
                filled += 1
        db.session.commit()


def regenerate_api_key(user: User) -> str:
    """Give the user a new key; the old one stops working at commit. Commits."""
    key = new_api_key()
    _store_api_key(user, key)
    db.session.commit()
    return key


class ApiCaller(NamedTuple):
    """What the customer API needs of the account behind a key: one narrow row, read with a
    single indexed query on every API call (no ORM object, no secrets loaded)."""

    id: int
    active: bool
    balance: int
    last_activity_at: dt.datetime | None
    email_verified_at: dt.datetime | None


# The users columns of an ApiCaller, in its order (also read with getStatus's activation,
# services.activations.caller_and_status_row).
CALLER_COLUMNS = (
    User.id,
    User.active,
    User.balance,
    User.last_activity_at,
    User.email_verified_at,
)
# Built once at import, with a bind parameter: building and caching-keying a statement on
# every API call cost more than running it. The Core twin of loading the User through the
# ORM (`select(User).where(User.api_key_hash == …)`); tests check both agree.
_CALLER_BY_KEY_HASH = db_reads.HotRead(
    select(*CALLER_COLUMNS).where(User.api_key_hash == bindparam("key_hash"))
)


def api_caller(key: str | None) -> ApiCaller | None:
    """The account behind an API key, or None. One indexed read outside any transaction."""
    if not key or len(key) > 200:
        return None
    return api_caller_by_digest(api_key_digest(key))


def api_caller_by_digest(digest: str) -> ApiCaller | None:
    """`api_caller` for a key whose `api_key_digest` the caller has at hand."""
    row = _CALLER_BY_KEY_HASH.first(key_hash=digest)
    return ApiCaller(*row) if row is not None else None


def record_api_activity(caller: ApiCaller, now: dt.datetime) -> None:
    """Note the account's last API use, at most once a minute (saves a write per poll).
    Commits."""
    last = caller.last_activity_at
    if last is not None and (now - last).total_seconds() <= 60:
        return
    db.session.execute(update(User).where(User.id == caller.id).values(last_activity_at=now))
    db.session.commit()


def user_for_session(value: str | None) -> User | None:
    """The user a session identity names, if it is still valid (same password)."""
    user_id, _, _fingerprint = (value or "").partition(".")
    if not (user_id.isascii() and user_id.isdigit()) or len(user_id) > 10:
        return None
    user = db.session.get(User, int(user_id))
    if user is None or not hmac.compare_digest(user.get_id(), value or ""):
        return None
    return user


def user_by_email(email: str) -> User | None:
    return db.session.execute(
        select(User).where(User.email == normalise_email(email))
    ).scalar_one_or_none()


def check_password_strength(password: str) -> None:
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise AccountError(f"Use at least {MIN_PASSWORD_LENGTH} characters.")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise AccountError("Use at most 256 characters.")


def create_user(
    email: str, password: str, *, is_admin: bool = False, verified: bool = False
) -> User:
    """Create and commit an account (`verified`: its address is known to be its owner's).
    Raises AccountError for a taken email (also when a concurrent sign-up takes it first) or
    a weak password."""
    email = normalise_email(email)
    if not email or "@" not in email:
        raise AccountError("Enter a valid email address.")
    check_password_strength(password)
    if user_by_email(email) is not None:
        raise AccountError("An account with this email already exists.")
    user = User(
        email=email,
        password_hash=generate_password_hash(password),
        is_admin=is_admin,
        email_verified_at=utcnow() if verified else None,
    )
    _store_api_key(user, new_api_key())
    db.session.add(user)
    try:
        db.session.commit()
    except IntegrityError:
        # A sign-up with the same email committed between our check and our insert.
        db.session.rollback()
        if user_by_email(email) is not None:
            raise AccountError("An account with this email already exists.") from None
        raise
    return user


# Accounts made by a front-end without e-mail (the Telegram bot) get an address under the
# reserved .invalid domain (never deliverable) and a random password nobody knows.
NO_EMAIL_DOMAIN = "telegram.invalid"


def create_user_without_email(label: str) -> User:
    """An account with a wallet and an API key but no e-mail login, added to the session
    (flushed, not committed: the caller commits it with what it belongs to)."""
    email = f"{label}-{secrets.token_hex(4)}@{NO_EMAIL_DOMAIN}"
    user = User(email=email, password_hash=generate_password_hash(secrets.token_urlsafe(32)))
    _store_api_key(user, new_api_key())
    db.session.add(user)
    db.session.flush()
    return user


def has_email_login(user: User) -> bool:
    return not user.email.endswith("@" + NO_EMAIL_DOMAIN)


def authenticate(email: str, password: str) -> User | None:
    """The user for these credentials, or None (same answer for every kind of failure)."""
    user = user_by_email(email)
    if user is None:
        # Spend the same time as a real check so response time does not reveal accounts.
        check_password_hash(_DUMMY_HASH, password or "")
        return None
    if not check_password_hash(user.password_hash, password or ""):
        return None
    return user


def set_password(user: User, password: str, *, action: str = "user.password_change") -> None:
    """Change the password and commit, with an audit row (`action`). Every other session of
    the account ends (its identity carries the password hash, see `User.get_id`) and every
    password-reset link not yet used becomes void. Raises AccountError for a weak password."""
    check_password_strength(password)
    user.password_hash = generate_password_hash(password)
    db.session.execute(
        update(AccountToken)
        .where(
            AccountToken.user_id == user.id,
            AccountToken.purpose == AccountTokenPurpose.RESET_PASSWORD.value,
            AccountToken.used_at.is_(None),
        )
        .values(used_at=utcnow())
    )
    audit(user, action, f"user:{user.id}")
    db.session.commit()


def end_other_sessions(user: User) -> None:
    """Log out every session of the account, remember-me cookies included, and commit with
    an audit row: their identity carries the session generation raised here. The caller
    logs the current session in again (`login_user`) to keep it."""
    db.session.execute(
        update(User)
        .where(User.id == user.id)
        .values(session_generation=User.session_generation + 1)
        .execution_options(synchronize_session=False)
    )
    audit(user, "user.sessions_cut", f"user:{user.id}")
    db.session.commit()
    db.session.refresh(user)


def record_login(user: User) -> None:
    user.last_login_at = utcnow()
    db.session.commit()


def count_users() -> int:
    return db.session.execute(select(func.count(User.id))).scalar_one()


_DUMMY_HASH = generate_password_hash("not-a-real-password")
