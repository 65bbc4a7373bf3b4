"""Shared fixtures: an app per test on a fresh database (SQLite file, or the PostgreSQL
server named by TEST_DATABASE_URL), clients, data factories and a network guard."""

from __future__ import annotations

import contextlib
import socket
import threading

import pytest
from sqlalchemy import text

from config import TestConfig
from reseller import create_app
from reseller.extensions import db
from reseller.money import parse_amount
from reseller.services import accounts, wallet

ON_POSTGRES = bool(TestConfig().SQLALCHEMY_DATABASE_URI.startswith("postgresql"))


def pytest_collection_modifyitems(config, items):
    skip_pg = pytest.mark.skip(reason="PostgreSQL-only test (set TEST_DATABASE_URL)")
    for item in items:
        if "postgres_only" in item.keywords and not ON_POSTGRES:
            item.add_marker(skip_pg)


@pytest.fixture(autouse=True)
def no_external_network(monkeypatch):
    """Fail any connection to a non-loopback address: GrizzlySMS is never contacted."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and not (
            host.startswith("127.") or host in ("localhost", "::1") or host.startswith("/")
        ):
            raise RuntimeError(f"test tried to reach the network: {address!r}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


def make_config(tmp_path, **overrides) -> TestConfig:
    config = TestConfig()
    if not ON_POSTGRES:
        config.SQLALCHEMY_DATABASE_URI = f"sqlite:///{tmp_path / 'test.sqlite'}"
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def reset_database() -> None:
    """A fresh schema: create on first use, empty every table before each test."""
    if ON_POSTGRES:
        db.create_all()
        names = ", ".join(t.name for t in db.metadata.sorted_tables)
        db.session.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        db.session.commit()
    else:
        db.create_all()


@pytest.fixture
def config_overrides():
    """Override in a test module to change settings: return a dict."""
    return {}


def isolate_requests(app) -> None:
    """Test requests share the test's app context (and so `g`); drop what must not carry
    over from one request to the next: the logged-in user and the CSRF token."""
    from flask import g

    @app.before_request
    def _forget_request_state():
        for name in ("_login_user", "csrf_token"):
            g.pop(name, None)


@pytest.fixture(autouse=True)
def fast_password_hashing(request, monkeypatch):
    """scrypt costs ~0.2 s a hash; tests use a cheap PBKDF2 unless marked
    `real_password_hash`. Production hashing is tested on its own."""
    if request.node.get_closest_marker("real_password_hash"):
        return
    import functools

    from werkzeug.security import generate_password_hash

    monkeypatch.setattr(
        accounts,
        "generate_password_hash",
        functools.partial(generate_password_hash, method="pbkdf2:sha256:1000"),
    )


@pytest.fixture
def app(tmp_path, config_overrides):
    app = create_app(make_config(tmp_path, **config_overrides))
    isolate_requests(app)
    with app.app_context():
        reset_database()
        yield app
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def make_user(app):
    counter = iter(range(1, 10_000))

    def factory(email=None, password="password123", balance="0", is_admin=False):
        user = accounts.create_user(
            email or f"user{next(counter)}@example.com", password, is_admin=is_admin
        )
        units = parse_amount(balance)
        if units:
            wallet.adjust(user.id, units, note="test balance")
        return user

    return factory


class AuthActions:
    def __init__(self, client):
        self.client = client

    def login(self, email, password="password123", **kwargs):
        return self.client.post("/login", data={"email": email, "password": password}, **kwargs)

    def logout(self):
        return self.client.post("/logout")


@pytest.fixture
def auth(client):
    return AuthActions(client)


ADMIN_EMAIL = "boss@example.com"


@pytest.fixture
def boss(make_user, auth):
    """A logged-in admin (ADMIN_EMAIL)."""
    admin = make_user(email=ADMIN_EMAIL, is_admin=True)
    auth.login(ADMIN_EMAIL)
    return admin


@pytest.fixture(autouse=True)
def clock():
    """Injected time: `clock.travel(seconds)` moves the app's clock forward."""
    from reseller import clock as app_clock

    app_clock.reset()
    yield app_clock
    app_clock.reset()


@pytest.fixture
def stocked(app):
    """The catalog (services, countries, prices) filled from the app's upstream (sandbox)."""
    from reseller.services import catalog
    from reseller.services.provider import upstream

    catalog.refresh(upstream())
    return app


def api_key_of(user) -> str:
    return accounts.reveal_api_key(user)


class Api:
    """Calls the customer API like a client program would."""

    def __init__(self, client, key, path="/stubs/handler_api.php"):
        self.client, self.key, self.path = client, key, path

    def __call__(self, action, method="GET", fmt=None, **params):
        params = {"api_key": self.key, "action": action, **params}
        if fmt:
            params["format"] = fmt
        if method == "GET":
            response = self.client.get(self.path, query_string=params)
        elif method == "POST-QUERY":
            response = self.client.post(self.path, query_string=params)
        else:
            response = self.client.post(self.path, data=params)
        assert response.status_code == 200, response.status_code
        return response

    def text(self, action, **params):
        return self(action, **params).get_data(as_text=True)

    def json(self, action, **params):
        response = self(action, fmt="json", **params)
        assert response.mimetype == "application/json"
        return response.get_json()


@pytest.fixture
def customer(stocked, make_user):
    """A customer with 10.00 and the API client for their key."""
    return make_user(email="customer@example.com", balance="10.00")


@pytest.fixture
def api(client, customer):
    return Api(client, api_key_of(customer))


# --- the GrizzlySMS client against the fake upstream ---------------------------------


@pytest.fixture
def fake():
    """A running FakeGrizzly (no early-cancel lock); fails the test on bugs in the fake."""
    from tests.fake_grizzly import FakeGrizzly

    with FakeGrizzly(early_cancel_seconds=0) as server:
        yield server
    assert not server.errors


@pytest.fixture
def grizzly(app, fake):
    """The app's upstream: a GrizzlyClient against `fake`, the catalog filled from it."""
    from reseller.services import catalog
    from reseller.services.provider import use_upstream
    from reseller.upstream.sms_activate import SmsActivateClient as GrizzlyClient

    client = GrizzlyClient(
        "test-key", url=fake.url, connect_timeout=2, read_timeout=2, retries=1, backoff=0
    )
    client._sleep = lambda seconds: None
    use_upstream(app, client)
    catalog.refresh(client)
    return client


@pytest.fixture
def gapi(client, grizzly, make_user):
    """The customer API of buyer@example.com (10.00 on the wallet) over `grizzly`."""
    user = make_user(email="buyer@example.com", balance="10.00")
    api = Api(client, api_key_of(user))
    api.user_id = user.id
    return api


def run_threads(n, target):
    """Start `target(i)` in `n` threads at once (a barrier), wait; their results in order
    (an exception raised by a thread is its result)."""
    barrier = threading.Barrier(n)
    results = [None] * n

    def run(i):
        barrier.wait()
        try:
            results[i] = target(i)
        except BaseException as exc:  # noqa: BLE001 - the caller asserts on results
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


@contextlib.contextmanager
def driver_statements(record):
    """Call `record(sql, in_transaction)` for every SQL statement handed to the database
    driver while the block runs, whoever sends it: SQLAlchemy's execution, a db_reads.HotRead
    on a raw pooled connection or a db_reads.InSession on the session's (neither of which the
    engine's before_cursor_execute sees). `in_transaction`: whether it runs inside one (a
    HotRead runs in autocommit)."""
    engine = db.engine
    if engine.dialect.name == "sqlite":
        from sqlalchemy import event

        # SQLite reports every statement it runs on a connection, BEGIN and COMMIT included.
        def on_checkout(dbapi_connection, connection_record, proxy):
            dbapi_connection.set_trace_callback(
                lambda sql: record(sql, dbapi_connection.in_transaction)
            )

        def on_checkin(dbapi_connection, connection_record):
            if dbapi_connection is not None:
                dbapi_connection.set_trace_callback(None)

        event.listen(engine.pool, "checkout", on_checkout)
        event.listen(engine.pool, "checkin", on_checkin)
        try:
            yield
        finally:
            event.remove(engine.pool, "checkout", on_checkout)
            event.remove(engine.pool, "checkin", on_checkin)
    else:
        import psycopg

        execute = psycopg.Cursor.execute

        def recording(cursor, query, *args, **kwargs):
            record(str(query), not cursor.connection.autocommit)
            return execute(cursor, query, *args, **kwargs)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(psycopg.Cursor, "execute", recording)
            yield
