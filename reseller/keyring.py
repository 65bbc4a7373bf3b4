"""Keys derived from SECRET_KEY, one per purpose (API-key lookup and encryption, rate-limit
counters, login sessions). Below the models and the services: both use it."""

from __future__ import annotations

import functools
import hashlib
import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app


def derive(purpose: bytes) -> bytes:
    """The 32-byte key for `purpose` under the app's SECRET_KEY."""
    secret = current_app.config["SECRET_KEY"]
    if not secret:
        raise RuntimeError("SECRET_KEY is required for API keys")
    return _hkdf(secret.encode() if isinstance(secret, str) else secret, purpose)


@functools.lru_cache(maxsize=16)
def _hkdf(secret: bytes, purpose: bytes) -> bytes:
    # A pure function of SECRET_KEY: derived once per process, not on every API request.
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"reseller-api-keys", info=purpose
    ).derive(secret)


def fingerprint(purpose: bytes, value: str, length: int = 32) -> str:
    """A keyed hex digest of `value` (HMAC-SHA256 under the key for `purpose`)."""
    return hmac.new(derive(purpose), value.encode(), hashlib.sha256).hexdigest()[:length]
