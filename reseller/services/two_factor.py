"""Two-factor sign-in: TOTP (RFC 6238, 30-second steps, 6 digits) and recovery codes.

The secret is stored encrypted (Fernet under a key derived from SECRET_KEY); until a first
code confirms it, it is a set-up in progress (`User.totp_enabled_at` is None). A code is
accepted within one step either side of now, and never twice: the step of the last accepted
code is stored, and a code is taken only with a guarded UPDATE that raises it. Recovery codes
(`xxxxx-xxxxx`, ten at a time, shown once) are stored as keyed hashes and used once each.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
import secrets
import string

import pyotp
import segno
from sqlalchemy import delete, func, or_, select, update

from .. import keyring
from ..extensions import db
from ..models import RecoveryCode, User, utcnow
from ..transactions import writing
from .accounts import fernet_for
from .audit import audit

STEP = 30  # seconds
DIGITS = 6
WINDOW = 1  # steps either side of now that are accepted (clock drift, typing time)
RECOVERY_CODES = 10
RECOVERY_ALPHABET = string.ascii_lowercase + string.digits
RECOVERY_FORMAT = re.compile(r"[a-z0-9]{5}-[a-z0-9]{5}")


class TwoFactorError(ValueError):
    """A two-factor request that cannot be done; the message is for people."""


WRONG_CODE = "This code is not right. Enter the current code from your app, or a recovery code."


def _fernet():
    return fernet_for(b"two-factor")


def _secret(user: User) -> str | None:
    if not user.totp_secret_encrypted:
        return None
    try:
        return _fernet().decrypt(user.totp_secret_encrypted.encode()).decode()
    except ValueError:  # InvalidToken is a ValueError: SECRET_KEY changed
        return None


def pending_secret(user: User) -> str:
    """The secret of the set-up in progress (made, stored and committed on first call; the
    same on a reload, so a scanned code keeps working). Raises TwoFactorError when two-factor
    is already on."""
    if user.two_factor_enabled:
        raise TwoFactorError("Two-factor authentication is already on.")
    secret = _secret(user)
    if secret is None:
        secret = pyotp.random_base32()
        with writing():  # the set-up page is a GET (a read-only page view on SQLite)
            user.totp_secret_encrypted = _fernet().encrypt(secret.encode()).decode()
            db.session.commit()
    return secret


def provisioning_uri(user: User, secret: str, issuer: str) -> str:
    """The otpauth:// URI authenticator apps read from the QR code."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP).provisioning_uri(
        name=user.email, issuer_name=issuer
    )


def qr_code(uri: str) -> str:
    """`uri` as a QR code: an SVG data URI for an <img> (pure Python, no request leaves)."""
    return segno.make(uri, error="m").svg_data_uri(scale=5, border=2, dark="#000", light="#fff")


def _now_step(now: dt.datetime | None = None) -> int:
    moment = (now or utcnow()).replace(tzinfo=dt.UTC)
    return int(moment.timestamp()) // STEP


def _matching_step(secret: str, code: str) -> int | None:
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP)
    now = _now_step()
    for step in range(now - WINDOW, now + WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def _take_step(user: User, step: int) -> bool:
    """Record `step` as the last one used, only when it is later than the last: a code (and
    any earlier one) is accepted once, also by two requests at the same moment. No commit."""
    taken = db.session.execute(
        update(User)
        .where(
            User.id == user.id,
            or_(User.totp_last_step.is_(None), User.totp_last_step < step),
        )
        .values(totp_last_step=step)
        .execution_options(synchronize_session=False)
    )
    return taken.rowcount == 1


def _totp_code(code: str) -> str | None:
    code = re.sub(r"\s", "", code or "")
    return code if len(code) == DIGITS and code.isascii() and code.isdigit() else None


def _recovery_code(code: str) -> str | None:
    code = re.sub(r"\s", "", code or "").lower()
    if len(code) == 10 and "-" not in code:
        code = f"{code[:5]}-{code[5:]}"
    return code if RECOVERY_FORMAT.fullmatch(code) else None


def _recovery_digest(user_id: int, code: str) -> str:
    return keyring.fingerprint(b"recovery-codes", f"{user_id}:{code}", length=64)


def _use_code(user: User, code: str) -> str | None:
    """Accept a current TOTP code or an unused recovery code of `user` (using it up): which
    kind it was, or None. No commit (the caller commits with what the code allows)."""
    totp = _totp_code(code)
    if totp is not None:
        secret = _secret(user)
        step = _matching_step(secret, totp) if secret else None
        return "totp" if step is not None and _take_step(user, step) else None
    recovery = _recovery_code(code)
    if recovery is None:
        return None
    used = db.session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == _recovery_digest(user.id, recovery),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return "recovery" if used.rowcount == 1 else None


def check_login_code(user: User, code: str) -> bool:
    """The log-in step: whether `code` (TOTP or recovery code) lets `user` in. Commits (a
    code used is used up, whatever happens next)."""
    if not user.two_factor_enabled:
        return False
    kind = _use_code(user, code)
    if kind == "recovery":
        audit(user, "user.recovery_code_used", f"user:{user.id}")
    db.session.commit()
    return kind is not None


def _new_recovery_codes(user: User) -> list[str]:
    """Replace the account's recovery codes with ten new ones (no commit)."""
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(10))
        code = f"{raw[:5]}-{raw[5:]}"
        codes.append(code)
        db.session.add(RecoveryCode(user_id=user.id, code_hash=_recovery_digest(user.id, code)))
    return codes


def enable(user: User, code: str) -> list[str]:
    """Confirm the set-up in progress with a code from the app; commits. Returns the ten
    recovery codes (shown once: only their hashes are kept). Raises TwoFactorError."""
    if user.two_factor_enabled:
        raise TwoFactorError("Two-factor authentication is already on.")
    secret, totp = _secret(user), _totp_code(code)
    step = _matching_step(secret, totp) if secret and totp else None
    if step is None or not _take_step(user, step):
        db.session.rollback()
        raise TwoFactorError("This code is not right. Enter the current code from your app.")
    user.totp_enabled_at = utcnow()
    codes = _new_recovery_codes(user)
    audit(user, "user.two_factor_enable", f"user:{user.id}")
    db.session.commit()
    db.session.refresh(user)
    return codes


def regenerate_recovery_codes(user: User, code: str) -> list[str]:
    """Ten new recovery codes (the old ones stop working) for a current code; commits.
    Raises TwoFactorError."""
    if not user.two_factor_enabled or _use_code(user, code) is None:
        db.session.commit()  # a recovery code given here is used up all the same
        raise TwoFactorError(WRONG_CODE)
    codes = _new_recovery_codes(user)
    audit(user, "user.recovery_codes_regenerate", f"user:{user.id}")
    db.session.commit()
    return codes


def _turn_off(user: User) -> None:
    user.totp_secret_encrypted = None
    user.totp_enabled_at = None
    user.totp_last_step = None
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))


def disable(user: User, code: str) -> None:
    """Turn two-factor off for a current code (TOTP or recovery); commits. Raises
    TwoFactorError."""
    if not user.two_factor_enabled or _use_code(user, code) is None:
        db.session.commit()
        raise TwoFactorError(WRONG_CODE)
    _turn_off(user)
    audit(user, "user.two_factor_disable", f"user:{user.id}")
    db.session.commit()


def reset(user: User, actor: User | None = None) -> None:
    """The operator turns two-factor off for a lost authenticator; commits with an audit
    row (`actor` None: the command line)."""
    was = user.two_factor_enabled
    _turn_off(user)
    audit(
        actor,
        "user.two_factor_reset",
        f"user:{user.id}",
        {"two_factor": was},
        {"two_factor": False},
    )
    db.session.commit()


def recovery_codes_left(user: User) -> int:
    return db.session.execute(
        select(func.count(RecoveryCode.id)).where(
            RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None)
        )
    ).scalar_one()
