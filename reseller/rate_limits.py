"""Rate limits: fixed-window counters in shared storage, checked by the views that need them.

Built on the `limits` package (the one Flask-Limiter wraps), used directly: a limited view
costs one counter increment — one Redis round trip in production — and every other request
costs nothing (no global per-request check). The counters live in RATELIMIT_STORAGE_URI:
`memory://` counts per process; `redis://…` is shared by every process and host.

A breached limit raises `RateLimitExceeded` (HTTP 429); the answer carries `Retry-After`, the
seconds until the breached window resets (read from the storage only then). When the storage
is unreachable and RATELIMIT_SWALLOW_ERRORS is set, limits lapse (logged) rather than failing
the request.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask, current_app, g, request
from limits import RateLimitItem, parse_many
from limits.storage import Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter
from werkzeug.exceptions import TooManyRequests

log = logging.getLogger(__name__)

EXTENSION = "rate_limits"


class RateLimitExceeded(TooManyRequests):
    """A limit is used up; `retry_after` seconds until its window resets."""

    def __init__(self, retry_after: int):
        super().__init__()
        self.retry_after = retry_after


@dataclass(frozen=True)
class _Counters:
    storage: Storage
    strategy: FixedWindowRateLimiter
    enabled: bool
    swallow_errors: bool


@functools.lru_cache(maxsize=64)
def _items(limit: str) -> tuple[RateLimitItem, ...]:
    """A limit such as "10 per minute;100 per hour", parsed once per process."""
    return tuple(parse_many(limit))


def remote_address() -> str:
    """The client's address (ProxyFix applies TRUSTED_PROXIES before we see it)."""
    return request.remote_addr or "127.0.0.1"


class RateLimiter:
    """The extension: `init_app` opens the storage; `hit` counts; `limit` decorates a view."""

    def init_app(self, app: Flask) -> None:
        storage = storage_from_string(app.config.get("RATELIMIT_STORAGE_URI") or "memory://")
        app.extensions[EXTENSION] = _Counters(
            storage=storage,
            strategy=FixedWindowRateLimiter(storage),
            enabled=bool(app.config.get("RATELIMIT_ENABLED", True)),
            swallow_errors=bool(app.config.get("RATELIMIT_SWALLOW_ERRORS", False)),
        )
        app.after_request(_set_retry_after)

    @staticmethod
    def _counters() -> _Counters:
        return current_app.extensions[EXTENSION]

    @property
    def storage(self) -> Storage:
        return self._counters().storage

    def reset(self) -> None:
        """Forget every counter (tests)."""
        self._counters().storage.reset()

    def hit(self, limit: str, key: str, scope: str) -> None:
        """Count one request of `key` against `limit` (e.g. "60 per second") in `scope`.

        Raises RateLimitExceeded when any of the limit's windows is used up."""
        counters = self._counters()
        if not counters.enabled:
            return
        try:
            for item in _items(limit):
                if not counters.strategy.hit(item, key, scope):
                    g.rate_limit_retry_after = _seconds_to_reset(counters, item, key, scope)
                    raise RateLimitExceeded(g.rate_limit_retry_after)
        except RateLimitExceeded:
            raise
        except Exception as exc:
            if not counters.swallow_errors:
                raise
            log.warning("rate limits lapse: the counter storage failed (%s)", exc)

    def limit(
        self,
        limit: Callable[[], str],
        *,
        key_func: Callable[[], str] = remote_address,
        methods: tuple[str, ...] | None = None,
    ):
        """Decorate a view: each request (of `methods`, default all) counts against the
        limit `limit()` returns, per `key_func()`, in the view's own scope."""

        def decorator(view):
            @functools.wraps(view)
            def limited(*args, **kwargs):
                if methods is None or request.method in methods:
                    self.hit(limit(), key_func(), request.endpoint or view.__name__)
                return view(*args, **kwargs)

            return limited

        return decorator


def _seconds_to_reset(counters: _Counters, item: RateLimitItem, key: str, scope: str) -> int:
    try:
        reset_at = counters.strategy.get_window_stats(item, key, scope).reset_time
    except Exception:  # the storage went away meanwhile: a short wait is still right
        log.warning("rate-limit storage unreadable for Retry-After", exc_info=True)
        return 1
    return max(1, int(reset_at - time.time()))


def _set_retry_after(response):
    if response.status_code == 429 and "Retry-After" not in response.headers:
        response.headers["Retry-After"] = str(g.get("rate_limit_retry_after", 1))
    return response
