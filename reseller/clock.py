"""The one clock. Timestamps are naive UTC.

Tests move time with `travel(seconds)` instead of sleeping; production never calls it.
"""

from __future__ import annotations

import datetime as dt

_offset = dt.timedelta(0)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None) + _offset


def travel(seconds: float) -> None:
    """Move this process's clock forward (tests only)."""
    global _offset
    _offset += dt.timedelta(seconds=seconds)


def reset() -> None:
    global _offset
    _offset = dt.timedelta(0)
