"""Logs, health and metrics: structured logs with a request id, `/healthz` for load
balancers, `/metrics` for Prometheus (the counters themselves are in reseller.metrics).

Log lines never carry API keys, passwords, cookies or the tokens of mailed links: query
strings are not logged by us, and a filter blanks `api_key=…`, `password=…`, session cookies
and the token in `/password/reset/…`, `/email/verify/…` and `/email/change/…` in any message.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
import sys
import time

from flask import Flask, Response, abort, current_app, g, has_request_context, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from . import metrics

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"[\w\-]{8,64}", re.ASCII)  # ASCII: \w alone takes é
# Each pattern with the text (lower case) any match of it contains: a pattern runs only on
# a message that has its marker (a case-insensitive regex scan costs microseconds a pattern,
# and gunicorn's access log passes every request's line through here).
_SECRET_PATTERNS = (
    ("api_key=", re.compile(r"(api_key=)[^&\s\"']+", re.IGNORECASE)),
    ("password", re.compile(r"(password\w*=)[^&\s\"']+", re.IGNORECASE)),
    ("session=", re.compile(r"(session=)[^;\s\"']+", re.IGNORECASE)),
    ("remember_token=", re.compile(r"(remember_token=)[^;\s\"']+", re.IGNORECASE)),
    # The tokens of mailed links (password reset, e-mail verification and change) travel in
    # the path, which access logs record.
    ("/password/reset/", re.compile(r"(/password/reset/)[^/?#\s\"']+", re.IGNORECASE)),
    ("/email/verify/", re.compile(r"(/email/verify/)[^/?#\s\"']+", re.IGNORECASE)),
    ("/email/change/", re.compile(r"(/email/change/)[^/?#\s\"']+", re.IGNORECASE)),
)


def redact(message: str) -> str:
    # The markers as the patterns' IGNORECASE sees them: casefold() maps "ſ" to "s" and the
    # Kelvin sign to "k"; the dotless "ı" it keeps, and IGNORECASE takes for "i".
    lowered = message.casefold().replace("\u0131", "i")
    for marker, pattern in _SECRET_PATTERNS:
        if marker in lowered:
            message = pattern.sub(r"\1***", message)
    return message


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        # The message is formatted once, here, and kept formatted: the handlers (and any
        # filter after this one) read it without formatting it again — for gunicorn's
        # access line, formatting is most of the line's cost.
        record.msg, record.args = redact(record.getMessage()), None
        if has_request_context():
            record.request_id = getattr(g, "request_id", None)
        elif not hasattr(record, "request_id"):
            record.request_id = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if getattr(record, "request_id", None):
            data["request_id"] = record.request_id
        if record.exc_info:
            data["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(data, ensure_ascii=False)


def configure_logging(app: Flask) -> None:
    """JSON lines to stdout outside tests and debug runs (gunicorn collects stdout)."""
    root = logging.getLogger()
    for logger in (root, logging.getLogger("werkzeug"), logging.getLogger("gunicorn.access")):
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    if app.testing or app.debug or app.config.get("LOG_FORMAT") == "plain":
        return
    if any(getattr(h, "_reseller", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stdout)
    handler._reseller = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    root.addHandler(handler)
    root.setLevel(app.config.get("LOG_LEVEL", "INFO"))


def register_request_id(app: Flask) -> None:
    @app.before_request
    def assign_request_id():
        incoming = request.environ.get("HTTP_X_REQUEST_ID")
        if incoming and _VALID_REQUEST_ID.fullmatch(incoming):
            g.request_id = incoming
        else:
            g.request_id = os.urandom(16).hex()  # as random as uuid4().hex, a third the cost
        g.request_started = time.perf_counter()

    @app.after_request
    def echo_request_id(response):
        request_id = getattr(g, "request_id", None)
        if request_id:
            response.headers[REQUEST_ID_HEADER] = request_id
        return response


def sees_private_health() -> bool:
    """Whether this request may see the operator's figures in health reports (the upstream
    balance; per-provider readings): a logged-in admin, or `Authorization: Bearer
    <HEALTHZ_TOKEN>` (compared in constant time; no token configured, no bearer access).
    The one rule for every health answer."""
    from flask_login import current_user

    if bearer_is(current_app.config.get("HEALTHZ_TOKEN")):
        return True
    return bool(current_user.is_authenticated and current_user.is_admin)


def bearer_is(token: str | None) -> bool:
    """Whether the request says `Authorization: Bearer <token>`, compared in constant time
    (no token configured: never)."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if not token or scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def register_health(app: Flask) -> None:
    @app.get("/healthz")
    def healthz():
        """Database reachable (checked now); the upstream reading's health and age (cached);
        its balance only for `sees_private_health()`."""
        from .services import health

        report = health.check(private=sees_private_health())
        response = jsonify(report)
        response.status_code = 200 if report["database"] == "ok" else 503
        response.headers["Cache-Control"] = "no-store"  # private answers must not be cached
        return response


# -- /metrics -------------------------------------------------------------------------------


class DatabaseCollector(Collector):
    """The figures `services.health.scrape_figures` reads, as gauges: read at each scrape,
    so every worker and host answers the same."""

    def collect(self):
        from .services.health import scrape_figures

        figures = scrape_figures()
        help_of = metrics.FIGURES
        yield GaugeMetricFamily(
            "reseller_activations_open",
            help_of["reseller_activations_open"],
            value=figures.activations_open,
        )
        outbox = GaugeMetricFamily(
            "reseller_outbox_pending", help_of["reseller_outbox_pending"], labels=["kind"]
        )
        for kind, count in figures.outbox_pending.items():
            outbox.add_metric([kind], count)
        yield outbox
        yield GaugeMetricFamily(
            "reseller_worker_last_pass_timestamp_seconds",
            help_of["reseller_worker_last_pass_timestamp_seconds"],
            value=figures.worker_last_pass,
        )
        balances = GaugeMetricFamily(
            "reseller_provider_balance", help_of["reseller_provider_balance"], labels=["provider"]
        )
        for name, balance in figures.provider_balances.items():
            balances.add_metric([name], balance)
        yield balances
        breakers = GaugeMetricFamily(
            "reseller_breaker_open", help_of["reseller_breaker_open"], labels=["provider"]
        )
        for name, is_open in figures.breakers_open.items():
            breakers.add_metric([name], 1 if is_open else 0)
        yield breakers
        yield GaugeMetricFamily(
            "reseller_customer_wallets_total",
            help_of["reseller_customer_wallets_total"],
            value=figures.customer_wallets,
        )


def exposition() -> bytes:
    """The Prometheus text of this host: the counts of every process that writes to the
    shared directory (without one, of this process alone), then the database's figures."""
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get(metrics.MULTIPROC_DIR):
        multiprocess.MultiProcessCollector(registry)
    else:
        for metric in metrics.COUNTED:
            registry.register(metric)
    registry.register(DatabaseCollector())
    return generate_latest(registry)


def register_metrics(app: Flask) -> None:
    """`GET /metrics` for the METRICS_TOKEN bearer, and every response counted by status
    class; without the token, neither (404, and the hot path pays nothing)."""
    from .extensions import db

    directory = os.environ.get(metrics.MULTIPROC_DIR)
    if directory:  # a missing directory would fail every count, and what it counts with it
        os.makedirs(directory, exist_ok=True)

    @app.get("/metrics")
    def prometheus_metrics():
        if not metrics.enabled(current_app):
            abort(404)
        if not bearer_is(current_app.config.get("METRICS_TOKEN")):
            return Response(
                "Authorization: Bearer <METRICS_TOKEN> required\n",
                401,
                mimetype="text/plain",
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
        try:
            body = exposition()
        finally:
            db.session.rollback()  # only read: hand the connection back
        return Response(body, mimetype=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})

    if metrics.enabled(app):

        @app.after_request
        def count_response(response):
            metrics.count_response(response.status_code)
            return response
