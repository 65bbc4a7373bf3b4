"""Prometheus metrics: counters the code moves as things happen, and figures read from the
database when Prometheus scrapes `/metrics` (docs/metrics.md).

Under gunicorn every worker process counts into files of one directory
(`PROMETHEUS_MULTIPROC_DIR`, prometheus-client's multiprocess mode, set up by
gunicorn.conf.py) and a scrape of any worker sums them all, so the counts are exact however
the requests were spread. Without the directory (development, tests) a process counts in
memory and exposes its own.

Label values come from bounded sets only: an API action we know (else "other"), a protocol
token, a provider's or gateway's configured name, a result from a fixed list. Never a key,
a phone number, an id or free text.
"""

from __future__ import annotations

from time import perf_counter

from flask import Flask
from prometheus_client import Counter, Histogram
from sqlalchemy import event
from sqlalchemy.orm import Session

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"  # set: the counts go to files there

# A customer API call takes a millisecond when it only reads, up to the upstream's read
# timeout (15 s) when it buys; upstream calls 0.1-15 s.
_API_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20)
_UPSTREAM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30)

# Not registered anywhere at import: each scrape builds its registry
# (`observability.exposition`).
API_REQUESTS = Counter(
    "reseller_api_requests_total",
    "Customer API calls by action and answer (the classic protocol token before ':').",
    ["action", "answer"],
    registry=None,
)
API_DURATION = Histogram(
    "reseller_api_request_duration_seconds",
    "Time to answer a customer API call, by action.",
    ["action"],
    buckets=_API_BUCKETS,
    registry=None,
)
HTTP_RESPONSES = Counter(
    "reseller_http_responses_total",
    "Every HTTP answer (pages, API, payment notifications) by status class: 2xx … 5xx.",
    ["code"],
    registry=None,
)
UPSTREAM_DURATION = Histogram(
    "reseller_upstream_request_duration_seconds",
    "Time of a call to a provider, by provider and client method (failures included).",
    ["provider", "action"],
    buckets=_UPSTREAM_BUCKETS,
    registry=None,
)
UPSTREAM_ERRORS = Counter(
    "reseller_upstream_errors_total",
    "Provider calls that raised, by the error's protocol token (UNAVAILABLE, NO_NUMBERS…).",
    ["provider", "kind"],
    registry=None,
)
PURCHASES = Counter(
    "reseller_purchases_total",
    "Purchase attempts at a provider by outcome: sold, refused, price_refused, unknown.",
    ["provider", "outcome"],
    registry=None,
)
TOPUPS = Counter(
    "reseller_topups_total",
    "Top-up status changes, counted when committed: pending (started), paid, expired…",
    ["gateway", "status"],
    registry=None,
)
WEBHOOK_DELIVERIES = Counter(
    "reseller_webhook_deliveries_total",
    "Webhook delivery attempts: delivered, retry (failed, tried again later), failed.",
    ["result"],
    registry=None,
)
COUNTED = (
    API_REQUESTS,
    API_DURATION,
    HTTP_RESPONSES,
    UPSTREAM_DURATION,
    UPSTREAM_ERRORS,
    PURCHASES,
    TOPUPS,
    WEBHOOK_DELIVERIES,
)

# The figures read at scrape time (`observability.DatabaseCollector`), with their help texts.
FIGURES = {
    "reseller_activations_open": "Activations not finished yet (held, waiting for a code…).",
    "reseller_outbox_pending": "Outbox rows waiting to be sent, by kind (webhook, telegram).",
    "reseller_worker_last_pass_timestamp_seconds": "When a `flask worker` last ended a pass "
    "(unix seconds; 0: never).",
    "reseller_provider_balance": "Each provider's last balance reading, in our currency.",
    "reseller_breaker_open": "1 while a provider's circuit breaker is open.",
    "reseller_customer_wallets_total": "What customers hold in their wallets (what we owe).",
}


def metric_names() -> set[str]:
    """Every sample name /metrics can carry (histograms' `_bucket`, `_sum` and `_count`,
    counters' `_total`; `_created` without PROMETHEUS_MULTIPROC_DIR): what deploy/'s rules
    and dashboard may use."""
    names = set(FIGURES)
    for metric in COUNTED:
        for family in metric.describe():
            if family.type == "histogram":
                suffixes = ("_bucket", "_sum", "_count", "_created")
                names.update(family.name + suffix for suffix in suffixes)
            elif family.type == "counter":
                names.update((family.name + "_total", family.name + "_created"))
            else:
                names.add(family.name)
    return names


# -- the web's own measurements -------------------------------------------------------------


def observe_api_call(action: str, answer: str, started: float | None) -> None:
    """One customer API call answered (`action` and `answer` already bounded by the caller),
    begun at `started` (perf_counter; None: unknown)."""
    _child(API_REQUESTS, action, answer).inc()
    if started is not None:
        _child(API_DURATION, action).observe(perf_counter() - started)


_STATUS_CLASS = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}


def count_response(status_code: int) -> None:
    _child(HTTP_RESPONSES, _STATUS_CLASS.get(status_code // 100, "other")).inc()


# The hot path's labelled children, kept: `labels()` takes a lock and builds a key each call
# (2 of the 6 µs a getBalance's counting cost). Bounded like the labels; a cache, no state.
_CHILDREN: dict[tuple, object] = {}


def _child(metric, *labels: str):
    key = (metric, *labels)
    child = _CHILDREN.get(key)
    if child is None:
        child = _CHILDREN[key] = metric.labels(*labels)
    return child


# -- counts that stand for committed changes --------------------------------------------------

_UNCOMMITTED = "reseller.metrics.uncommitted"


def count_when_committed(counter: Counter, *labels: str) -> None:
    """Count one on `counter` once the current transaction commits (never, if it rolls
    back): for counts of changes that a later failure in the same transaction may undo."""
    from .extensions import db

    db.session().info.setdefault(_UNCOMMITTED, []).append((counter, labels))


@event.listens_for(Session, "after_commit")
def _count_committed(session: Session) -> None:
    for counter, labels in session.info.pop(_UNCOMMITTED, ()):
        counter.labels(*labels).inc()


@event.listens_for(Session, "after_soft_rollback")
def _forget_rolled_back(session: Session, previous_transaction) -> None:
    if not previous_transaction.nested:  # a savepoint's rollback leaves the rest standing
        session.info.pop(_UNCOMMITTED, None)


def observe_upstream_call(
    provider: str, method: str, started: float, error: str | None = None
) -> None:
    """A provider call that began at `started` (perf_counter) ended, raising `error` (the
    error's protocol token) or not."""
    UPSTREAM_DURATION.labels(provider, method).observe(perf_counter() - started)
    if error is not None:
        UPSTREAM_ERRORS.labels(provider, error).inc()


def enabled(app: Flask) -> bool:
    """Metrics are on when METRICS_TOKEN is set: /metrics answers, requests are counted."""
    return bool(app.config.get("METRICS_TOKEN"))
