"""Operational signals: /healthz for load balancers (database now, the upstream as the worker
last saw it), recovery after the database drops its connections, request ids, and
structured JSON logs on stdout."""

from __future__ import annotations

import io
import json
import logging
import sys
import time
from decimal import Decimal

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.pool import NullPool

from reseller import create_app
from reseller.extensions import db
from reseller.services import catalog, wallet
from reseller.services.provider import raw_upstream, upstream, use_upstream
from reseller.upstream.sms_activate import SmsActivateClient as GrizzlyClient
from tests.conftest import Api, api_key_of, isolate_requests, make_config, reset_database

UNREACHABLE_URL = "http://127.0.0.1:9/stubs/handler_api.php"  # the discard port: refused
HEALTHZ_TOKEN = "monitoring-token-0123456789"


@pytest.fixture
def config_overrides():
    return {"HEALTHZ_TOKEN": HEALTHZ_TOKEN}


class CountingUpstream:
    """The app's provider, counting the balance questions it is asked."""

    name = "counting"

    def __init__(self, inner):
        self.inner = inner
        self.balance_calls = 0

    def get_balance(self):
        self.balance_calls += 1
        return self.inner.get_balance()

    def __getattr__(self, attribute):
        return getattr(self.inner, attribute)


def healthz(client) -> tuple[int, dict]:
    """/healthz as monitoring sees it: with the bearer token (the balance included)."""
    response = client.get("/healthz", headers={"Authorization": f"Bearer {HEALTHZ_TOKEN}"})
    assert response.mimetype == "application/json"
    return response.status_code, response.get_json()


# --- /healthz ---------------------------------------------------------------------------------


def refresh_reading() -> None:
    """What `flask worker` does each pass for the shared upstream reading."""
    from reseller.services import worker

    worker.refresh_upstream_balance(worker.PassReport())


def test_healthz_reports_the_database_and_the_upstream_reading(app, client, clock):
    status, report = healthz(client)
    assert status == 200
    assert report["status"] == "ok" and report["database"] == "ok"
    assert report["upstream"]["reachable"] is None  # no worker pass yet: nothing known
    assert report["upstream"]["checked_at"] is None

    refresh_reading()
    clock.travel(20)
    upstream_report = healthz(client)[1]["upstream"]
    assert upstream_report["reachable"] is True
    assert Decimal(upstream_report["balance"]) > 0  # the sandbox's starting balance
    assert upstream_report["checked_at"]
    assert 20 <= upstream_report["age_seconds"] <= 21


def test_healthz_never_asks_the_upstream_and_the_worker_asks_once_a_minute(
    app, client, clock, tmp_path
):
    counting = CountingUpstream(raw_upstream())
    use_upstream(app, counting)
    for _ in range(5):
        healthz(client)
    assert counting.balance_calls == 0
    refresh_reading()
    first = healthz(client)[1]
    clock.travel(30)
    refresh_reading()  # within the minute: the reading is reused
    assert counting.balance_calls == 1
    assert healthz(client)[1]["upstream"]["checked_at"] == first["upstream"]["checked_at"]

    # Another process (another app on the same database) reads the same answer.
    db.session.commit()
    other = create_app(make_config(tmp_path))
    other_counting = CountingUpstream(raw_upstream())
    db.session.commit()  # reading the provider's row began a transaction (on SQLite, a lock)
    use_upstream(other, other_counting)
    with other.app_context():
        refresh_reading()
        other_report = healthz(other.test_client())[1]
        db.session.remove()
        db.engine.dispose()
    assert other_report["upstream"]["checked_at"] == first["upstream"]["checked_at"]
    assert other_counting.balance_calls == 0

    clock.travel(31)  # a minute after the first question: asked again, once
    refresh_reading()
    refresh_reading()
    assert healthz(client)[1]["upstream"]["checked_at"] != first["upstream"]["checked_at"]
    assert counting.balance_calls == 2


def test_an_unreachable_upstream_is_reported_and_never_slows_healthz(app, client):
    grizzly = GrizzlyClient(
        "operator-secret-key", url=UNREACHABLE_URL, connect_timeout=0.2, read_timeout=0.2, retries=0
    )
    use_upstream(app, grizzly)
    refresh_reading()
    slow = CountingUpstream(grizzly)
    slow.get_balance = lambda: time.sleep(30)  # were /healthz to ask, it would hang
    use_upstream(app, slow)
    started = time.monotonic()
    response = client.get("/healthz", headers={"Authorization": f"Bearer {HEALTHZ_TOKEN}"})
    assert time.monotonic() - started < 2
    assert response.status_code == 200  # the app serves; the load balancer keeps it
    report = response.get_json()
    assert report["database"] == "ok"
    assert report["upstream"]["reachable"] is False
    assert report["upstream"]["balance"] is None
    assert report["upstream"]["error"] == "grizzly getBalance: connection refused at 127.0.0.1:9"
    assert "operator-secret-key" not in response.get_data(as_text=True)


DEAD_DATABASES = {
    "sqlite": "sqlite:////nonexistent-directory/reseller.sqlite",
    "postgresql": "postgresql+psycopg://reseller:db-password-secret@127.0.0.1:1/reseller",
}


@pytest.mark.parametrize("kind", sorted(DEAD_DATABASES))
def test_an_unreachable_database_is_503_and_clean_errors(tmp_path, kind):
    config = make_config(tmp_path, TESTING=False, LOG_FORMAT="plain")
    config.SQLALCHEMY_DATABASE_URI = DEAD_DATABASES[kind]
    app = create_app(config)
    isolate_requests(app)
    client = app.test_client()
    with app.app_context():
        response = client.get("/healthz")
        assert response.status_code == 503
        assert response.get_json() == {"database": "unreachable", "status": "degraded"}
        body = response.get_data(as_text=True)
        assert "db-password-secret" not in body and "nonexistent" not in body

        # The API still answers in its protocol (HTTP 200, a retryable error) …
        api = Api(client, "any-key")
        assert api.text("getBalance") == "ERROR_SQL"
        assert api.json("getBalance") == {"error": "SERVICE_UNAVAILABLE"}
        # … and pages that need the database show the error page, no traceback.
        response = client.post("/login", data={"email": "a@example.com", "password": "x" * 8})
        assert response.status_code == 500
        page = response.get_data(as_text=True)
        assert "Traceback" not in page and "db-password-secret" not in page
        assert client.get("/").status_code == 200  # what does not need it still works
        db.engine.dispose()


def drop_every_connection() -> int:
    """What a PostgreSQL restart or failover does to its clients: every server connection
    ends. Returns how many ended, once their server processes are gone (clients coming back
    after a restart find them so)."""
    others = "WHERE pid <> pg_backend_pid() AND datname = current_database()"
    db.session.remove()  # as at the end of a request: the session holds no connection
    admin_engine = create_engine(db.engine.url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with admin_engine.connect() as connection:
            killed = connection.execute(
                text(f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity {others}")
            ).scalar_one()
            deadline = time.monotonic() + 10
            while connection.execute(
                text(f"SELECT count(*) FROM pg_stat_activity {others}")
            ).scalar_one():
                assert time.monotonic() < deadline, "the terminated backends did not go away"
                time.sleep(0.02)
    finally:
        admin_engine.dispose()
    return killed


@pytest.fixture
def statement_errors(app):
    """Errors raised by statements sent on the app's connections."""
    errors = []

    def record(context):
        errors.append(context.original_exception)

    event.listen(db.engine, "handle_error", record)
    yield errors
    event.remove(db.engine, "handle_error", record)


@pytest.mark.postgres_only
def test_the_database_dropping_every_connection_is_survived_without_a_restart(
    app, client, customer, api, statement_errors
):
    assert api.text("getBalance") == "ACCESS_BALANCE:10.00"
    assert api.text("getNumber", service="tg", country="0").startswith("ACCESS_NUMBER:")
    balance = api.json("getBalance")["balance"]
    assert healthz(client)[0] == 200
    assert drop_every_connection() >= 1
    # reseller.pool sees the closed sockets at checkout and replaces those connections
    # (no pre-ping round trip): no statement is ever sent on a dead one.
    assert api.json("getBalance") == {"balance": balance}
    assert api.text("getNumber", service="tg", country="0").startswith("ACCESS_NUMBER:")
    status, report = healthz(client)
    assert status == 200 and report["database"] == "ok"
    assert statement_errors == []


@pytest.mark.postgres_only
def test_a_connection_dying_after_the_checkout_check_is_retried_or_answered_cleanly(
    app, client, customer, api, statement_errors, monkeypatch, clock
):
    """The race the socket check cannot see: the server goes away just after it looked."""
    from reseller import pool

    monkeypatch.setattr(pool, "socket_has_news", lambda dbapi_connection: False)
    assert api.text("getBalance") == "ACCESS_BALANCE:10.00"
    drop_every_connection()
    # The hot read meets the dead connection, which invalidates the pool, and reads again.
    invalidated = []
    event.listen(db.engine.pool, "invalidate", lambda *args: invalidated.append(args))
    assert api.text("getBalance") == "ACCESS_BALANCE:10.00"
    assert len(invalidated) == 1 and statement_errors == []  # (the read is below the engine)
    # The pool was invalidated: a request that writes gets fresh connections.
    assert api.text("getNumber", service="tg", country="0").startswith("ACCESS_NUMBER:")

    # A write whose first statement meets a dead connection answers a clean, retryable
    # error and changes nothing; trying again works.
    from reseller.services import accounts, activations

    number = api.text("getNumber", service="ot", country="0").split(":")[1]  # never an SMS
    balance = api.text("getBalance")
    clock.travel(600)  # past the early-cancel window
    read = activations.caller_and_set_status_row(accounts.api_key_digest(api.key), int(number))
    drop_every_connection()
    with monkeypatch.context() as patched:
        # skip the hot read (setStatus's of the key and the activation), which would be retried
        patched.setattr(activations, "caller_and_set_status_row", lambda *given: read)
        # and the due poll's claim, a hot statement too (below: it runs again as well)
        patched.setattr(activations._CLAIM_POLL, "first", lambda **given: None)
        assert api.text("setStatus", id=number, status="8") == "ERROR_SQL"
    assert api.text("getStatus", id=number) == "STATUS_WAIT_CODE"
    assert api.text("getBalance") == balance  # nothing was refunded by the failed try
    assert api.text("setStatus", id=number, status="8") == "ACCESS_CANCEL"
    assert api.text("getBalance") != balance

    # The due poll's claim, one statement outside any transaction, meets the dead
    # connection, invalidates the pool and runs again: the slot is taken once.
    from reseller.services import settings

    other = int(api.text("getNumber", service="ot", country="0").split(":")[1])
    clock.travel(600)
    db.session.commit()
    settings.get("poll_interval")  # (read now: the claim's statement is the first)
    drop_every_connection()
    before = len(invalidated)
    assert activations._claim_poll(other) is not None
    assert len(invalidated) == before + 1
    assert activations._claim_poll(other) is None


def test_the_socket_check_tells_a_closed_connection_from_an_idle_one(app):
    from reseller.pool import socket_has_news

    with db.engine.connect() as connection:
        dbapi_connection = connection.connection.dbapi_connection
        connection.exec_driver_sql("SELECT 1")
        assert socket_has_news(dbapi_connection) is False  # idle, healthy (or SQLite)
    if db.engine.dialect.name == "postgresql":
        raw = db.engine.raw_connection()
        try:
            assert socket_has_news(raw.dbapi_connection) is False
            drop_every_connection()
            assert socket_has_news(raw.dbapi_connection) is True
        finally:
            raw.invalidate()


# --- request ids ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "incoming",
    ["req-12345678", "0f8fad5b-d9cb-469f-a165-70867728950e", "a" * 64, "TRACE_abc_123"],
)
def test_a_valid_request_id_is_kept(client, incoming):
    for path in ("/", "/healthz", "/stubs/handler_api.php", "/no-such-page"):
        response = client.get(path, headers={"X-Request-ID": incoming})
        assert response.headers["X-Request-ID"] == incoming, path


@pytest.mark.parametrize(
    "junk",
    [
        "short",
        "a" * 65,
        "has spaces in it",
        "../../etc/passwd",
        "<script>alert(1)</script>",
        "id;drop table users",
        "ÀÁÂÃÄÅÆÇÈÉ",  # letters, but not ASCII
        "",
    ],
)
def test_a_junk_request_id_is_replaced(client, junk):
    response = client.get("/", headers={"X-Request-ID": junk})
    assigned = response.headers["X-Request-ID"]
    assert assigned != junk
    assert len(assigned) == 32 and int(assigned, 16) >= 0


def test_every_request_gets_its_own_id(client):
    ids = {client.get("/stubs/handler_api.php").headers["X-Request-ID"] for _ in range(5)}
    assert len(ids) == 5


# --- structured logs on stdout ------------------------------------------------------------------


@pytest.fixture
def json_logging_app(tmp_path, monkeypatch):
    """The app logging as in production (not testing, not debug): JSON lines on stdout,
    captured here, at DEBUG so that nothing is filtered by level."""
    stdout = io.StringIO()
    monkeypatch.setattr(sys, "stdout", stdout)
    root = logging.getLogger()
    level = root.level
    # An app built earlier in this process (a production config) may have installed its
    # handler already; configure_logging installs one only once.
    earlier = [h for h in root.handlers if getattr(h, "_reseller", False)]
    for handler in earlier:
        root.removeHandler(handler)
    app = create_app(make_config(tmp_path, TESTING=False, LOG_LEVEL="DEBUG"))
    isolate_requests(app)
    try:
        with app.app_context():
            reset_database()
            catalog.refresh(upstream())
            yield app, stdout
            db.session.remove()
            db.engine.dispose()
    finally:
        for handler in [h for h in root.handlers if getattr(h, "_reseller", False)]:
            root.removeHandler(handler)
        for handler in earlier:
            root.addHandler(handler)
        root.setLevel(level)


def log_lines(stdout) -> list[dict]:
    """Every line on stdout, each of which must be one JSON object."""
    return [json.loads(line) for line in stdout.getvalue().splitlines()]


def test_logs_are_json_lines_with_the_request_id(json_logging_app, monkeypatch):
    from reseller.services import accounts, activations

    app, stdout = json_logging_app
    user = accounts.create_user("me@example.com", "password123")
    wallet.adjust(user.id, 100_000, note="test")

    def broken(_user):
        raise RuntimeError("the activation list is broken")

    monkeypatch.setattr(activations, "active_for_user", broken)
    client = app.test_client()
    response = client.get(
        "/stubs/handler_api.php",
        query_string={"api_key": api_key_of(user), "action": "getActiveActivations"},
        headers={"X-Request-ID": "trace-0001-abcd"},
    )
    assert response.get_data(as_text=True) == "ERROR_SQL"
    logging.getLogger("reseller.test").warning("outside any request")

    lines = log_lines(stdout)
    failure = next(line for line in lines if line["message"].startswith("API action"))
    assert failure["level"] == "ERROR"
    assert failure["request_id"] == "trace-0001-abcd"
    assert "the activation list is broken" in failure["exception"]
    outside = next(line for line in lines if line["message"] == "outside any request")
    assert "request_id" not in outside
    assert {"time", "level", "logger", "message"} <= set(outside)


def test_the_test_app_leaves_logging_alone(tmp_path):
    """Testing and debug runs keep pytest's or Flask's logging; only a real run adds the
    stdout JSON handler."""
    before = list(logging.getLogger().handlers)
    create_app(make_config(tmp_path))
    assert logging.getLogger().handlers == before


# --- who sees the operator's figures ------------------------------------------------------------


def _upstream_report(client, **headers) -> dict:
    response = client.get("/healthz", headers=headers)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    return response.get_json()["upstream"]


def test_anonymous_healthz_shows_health_and_age_but_no_balance(app, client, clock):
    refresh_reading()
    clock.travel(5)
    report = _upstream_report(client)
    assert report == {
        "reachable": True,
        "checked_at": report["checked_at"],
        "age_seconds": report["age_seconds"],
    }
    assert 5 <= report["age_seconds"] <= 6
    for wrong in (
        "Bearer nope",
        f"Bearer {HEALTHZ_TOKEN}x",
        f"Basic {HEALTHZ_TOKEN}",
        HEALTHZ_TOKEN,
    ):
        assert "balance" not in _upstream_report(client, Authorization=wrong)


def test_the_failure_reason_is_private_too(app, client):
    use_upstream(
        app,
        GrizzlyClient("k", url=UNREACHABLE_URL, connect_timeout=0.2, read_timeout=0.2, retries=0),
    )
    refresh_reading()
    assert _upstream_report(client) == {
        "reachable": False,
        "checked_at": _upstream_report(client)["checked_at"],
        "age_seconds": 0,
    }
    assert _upstream_report(client, Authorization=f"Bearer {HEALTHZ_TOKEN}")["error"] == (
        "grizzly getBalance: connection refused at 127.0.0.1:9"
    )


def test_the_balance_is_shown_to_the_token_and_to_admins_only(app, client, make_user, auth):
    refresh_reading()
    private = _upstream_report(client, Authorization=f"Bearer {HEALTHZ_TOKEN}")
    assert Decimal(private["balance"]) > 0
    assert "balance" in _upstream_report(client, Authorization=f"bearer  {HEALTHZ_TOKEN}")

    make_user(email="customer@example.com")
    auth.login("customer@example.com")
    assert "balance" not in _upstream_report(client)
    auth.logout()
    make_user(email="boss@example.com", is_admin=True)
    auth.login("boss@example.com")
    assert Decimal(_upstream_report(client)["balance"]) == Decimal(private["balance"])


def test_without_a_token_configured_no_bearer_opens_the_balance(app, client):
    app.config["HEALTHZ_TOKEN"] = None
    refresh_reading()
    for header in ("Bearer ", "Bearer None", "Bearer"):
        assert "balance" not in _upstream_report(client, Authorization=header)


def test_a_short_healthz_token_stops_start_up(tmp_path):
    from config import ConfigError

    with pytest.raises(ConfigError, match="HEALTHZ_TOKEN"):
        create_app(make_config(tmp_path, HEALTHZ_TOKEN="short"))


def test_per_provider_readings_follow_the_same_rule(app, client):
    refresh_reading()
    public = client.get("/healthz").get_json()["providers"]
    assert public, "every provider is listed"
    for reading in public.values():
        assert set(reading) == {"enabled", "breaker", "reachable", "checked_at", "age_seconds"}
    private = client.get("/healthz", headers={"Authorization": f"Bearer {HEALTHZ_TOKEN}"})
    for name, reading in private.get_json()["providers"].items():
        assert Decimal(reading["balance"]) > 0, name
