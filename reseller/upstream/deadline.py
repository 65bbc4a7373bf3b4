"""A time budget for upstream calls, set by the caller and honoured by every provider module.

A web request may let its status polls wait on the upstream only a couple of seconds in all
(`activations.PollBudget`), and a worker pass bounds the time it spends polling; inside
`within(deadline)` a provider caps each network wait at the time left, retries only while
time is left, and sends nothing once it is spent (raising `UpstreamUnavailable`: nothing was
sent). Outside any budget, calls keep their own timeouts. Per context (thread), so
concurrent requests keep separate budgets.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_deadline: ContextVar[float | None] = ContextVar("upstream_deadline", default=None)


@contextmanager
def within(deadline: float | None) -> Iterator[None]:
    """Run the block under `deadline` (a `time.monotonic()` instant; None: no budget). A
    nested budget never extends an outer one."""
    outer = _deadline.get()
    if deadline is None or (outer is not None and outer < deadline):
        deadline = outer
    token = _deadline.set(deadline)
    try:
        yield
    finally:
        _deadline.reset(token)


def time_left() -> float | None:
    """Seconds left in the current budget (never below 0), or None without one."""
    deadline = _deadline.get()
    if deadline is None:
        return None
    return max(0.0, deadline - time.monotonic())


def capped(timeout: tuple[float, float]) -> tuple[float, float] | None:
    """(connect, read) timeouts cut to the time left; None when the budget is spent."""
    left = time_left()
    if left is None:
        return timeout
    if left <= 0.01:
        return None
    return (min(timeout[0], left), min(timeout[1], left))
