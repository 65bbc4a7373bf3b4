"""Provider accounts and a client for each.

A `Provider` row names a protocol (a key of `upstream.registry.PROTOCOLS`), a base URL and
an API key stored encrypted under a key derived from SECRET_KEY. An instance configured
only by environment variables (`UPSTREAM=grizzly` + `GRIZZLY_API_KEY`/`GRIZZLY_API_URL`, or
`UPSTREAM=sandbox`) gets that provider created on first use (`from_env`: its URL and key
keep coming from the environment).

Clients are built from the row on each use (one primary-key read) and kept per process
keyed by everything they were built from, so a changed row yields a new client: the
cache only saves connection set-up, never decides anything.
"""

from __future__ import annotations

import datetime as dt
import time

from cryptography.fernet import InvalidToken
from flask import Flask, current_app
from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError

from .. import db_reads, metrics
from ..extensions import db
from ..models import JobState, Provider
from ..transactions import writing
from ..upstream import errors as up
from ..upstream.base import Connection, Upstream
from ..upstream.registry import client_class
from . import breaker
from .accounts import fernet_for

EXTENSION_KEY = "reseller.upstream"  # a stand-in client for the default provider (tests)
CLIENTS_KEY = "reseller.upstream.clients"
SEEDED_JOB = "providers_seeded"  # once set, an empty provider list stays empty

# UPSTREAM value → (protocol, display name) of the provider the environment describes.
ENV_PROVIDERS = {"grizzly": ("sms-activate", "GrizzlySMS"), "sandbox": ("sandbox", "Sandbox")}


class UnknownProvider(up.UpstreamUnavailable):
    """No provider of that name (an activation's seller removed): unreachable to us."""

    token = "UNKNOWN_PROVIDER"


# --- keys ---------------------------------------------------------------------------------


def _box():
    return fernet_for(b"provider-keys")


def encrypt_key(key: str) -> str:
    return _box().encrypt(key.encode()).decode() if key else ""


def reveal_key(provider: Provider) -> str:
    """The provider's API key in clear ("" when unset or undecryptable: SECRET_KEY changed)."""
    if provider.from_env:
        return current_app.config.get("GRIZZLY_API_KEY") or ""
    if not provider.api_key_encrypted:
        return ""
    try:
        return _box().decrypt(provider.api_key_encrypted.encode()).decode()
    except (InvalidToken, ValueError):
        return ""


def masked_key(provider: Provider) -> str:
    """What the console shows of a key: its last four characters at most."""
    key = reveal_key(provider)
    if not key:
        return "not set"
    return "…" + key[-4:] if len(key) > 8 else "set"


def failure_reason(exc: BaseException) -> str:
    """Why a provider call failed, in the words the console shows: the client's message
    ("grizzly getBalance: connection refused at 127.0.0.1:5999", "BAD_KEY"). The clients
    keep keys out of their messages; anything else is named by its class only, since its
    text may carry anything."""
    if isinstance(exc, up.UpstreamError):
        return str(exc)[:200] or exc.token
    return type(exc).__name__


# --- rows ---------------------------------------------------------------------------------


def default_name() -> str:
    """The name of the provider the environment describes (`UPSTREAM`)."""
    return current_app.config["UPSTREAM"]


def ensure_default() -> None:
    """Create the environment's provider the first time providers are looked at (once per
    database: after that, removing it is the operator's choice). Commits."""
    if db.session.get(JobState, SEEDED_JOB) is not None:
        return
    name = default_name()
    with writing():  # also from a console page
        try:
            db.session.add(JobState(name=SEEDED_JOB))
            exists = db.session.execute(select(Provider.id).where(Provider.name == name)).first()
            if name in ENV_PROVIDERS and exists is None:
                protocol, display_name = ENV_PROVIDERS[name]
                db.session.add(
                    Provider(
                        name=name,
                        display_name=display_name,
                        protocol=protocol,
                        from_env=True,
                        priority=1,
                        notes="Created from the environment (UPSTREAM and its variables).",
                    )
                )
            db.session.commit()
        except IntegrityError:
            db.session.rollback()  # another process created it first


def all_providers() -> list[Provider]:
    """Every provider, by priority then name (creating the environment's one if none)."""
    ensure_default()
    return list(
        db.session.execute(select(Provider).order_by(Provider.priority, Provider.name)).scalars()
    )


def enabled_display_names() -> list[str]:
    """The display names of the enabled providers, by priority then name (the environment's
    provider is GrizzlySMS, or Sandbox)."""
    return [provider.display_name for provider in all_providers() if provider.enabled]


def by_name(name: str) -> Provider | None:
    row = db.session.execute(select(Provider).where(Provider.name == name)).scalar_one_or_none()
    if row is None and name == default_name() and name in ENV_PROVIDERS:
        ensure_default()
        row = db.session.execute(select(Provider).where(Provider.name == name)).scalar_one_or_none()
    return row


# --- clients ------------------------------------------------------------------------------


def _connection(provider: Provider) -> Connection:
    config = current_app.config
    url = config["GRIZZLY_API_URL"] if provider.from_env else provider.base_url
    return Connection(
        name=provider.name,
        url=url or "",
        api_key=reveal_key(provider),
        connect_timeout=config["UPSTREAM_CONNECT_TIMEOUT"],
        read_timeout=config["UPSTREAM_READ_TIMEOUT"],
    )


def client_for(provider: Provider) -> Upstream:
    """The raw client for a provider row (no transaction guard)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if provider.from_env and EXTENSION_KEY in app.extensions:
        return app.extensions[EXTENSION_KEY]
    connection = _connection(provider)
    key = (provider.id, provider.protocol, connection)
    clients = app.extensions.setdefault(CLIENTS_KEY, {})
    client = clients.get(key)
    if client is None:
        client = clients[key] = client_class(provider.protocol).connect(connection)
    return client


def session_holds_work() -> bool:
    """Whether the session has a transaction open or changes not yet flushed: what must be
    committed before work that runs outside it (an upstream call, a statement on a
    connection of its own)."""
    session = db.session()
    return bool(session.in_transaction() or session.new or session.dirty or session.deleted)


class OutsideTransaction:
    """Wraps a provider's client so that every call first ends the session's transaction,
    and its outcome feeds the provider's circuit breaker (services.breaker).

    No upstream call may run inside a database transaction: it would hold row locks (on
    SQLite, the whole database) for the length of a network round trip. Callers have
    already committed what they mean to keep; this makes the rule impossible to forget.
    """

    def __init__(self, provider: Upstream, name: str | None = None):
        self._provider = provider
        self.name = name or provider.name

    def __getattr__(self, attribute):
        target = getattr(self._provider, attribute)
        if not callable(target):
            return target

        def call(*args, **kwargs):
            # (nothing to end, and nothing to flush, is the common case: skip the commit)
            if session_holds_work():
                db.session.commit()
            started = time.perf_counter()
            try:
                result = target(*args, **kwargs)
            except up.UpstreamError as exc:
                metrics.observe_upstream_call(self.name, attribute, started, exc.token)
                if breaker.counts_against(exc):
                    breaker.record_failure(self.name, failure_reason(exc))
                raise
            except Exception:
                metrics.observe_upstream_call(self.name, attribute, started, "EXCEPTION")
                raise
            metrics.observe_upstream_call(self.name, attribute, started)
            # Not judged from the row this client was built from: another process may
            # have counted a failure since.
            breaker.record_success(self.name)
            return result

        return call


# A provider's row by name for building its client, built once at import and read outside
# any transaction: the Core twin of `by_name` (tests/test_routing.py checks both agree); its
# row has the model's column names.
_NAMED = db_reads.HotRead(
    select(Provider.__table__).where(Provider.__table__.c.name == bindparam("name"))
)


def _row(name: str | None) -> Provider:
    name = name or default_name()
    provider = _NAMED.first(name=name)
    if provider is None:
        provider = by_name(name)  # perhaps the environment's, not created yet
    if provider is None:
        raise UnknownProvider(name)
    return provider


def raw_upstream(name: str | None = None) -> Upstream:
    """The client of the provider `name` (default: the environment's). Raises
    UnknownProvider."""
    return client_for(_row(name))


def upstream(name: str | None = None) -> OutsideTransaction:
    """The provider `name`'s client (default: the environment's), guarded so that no call
    runs inside a transaction. Raises UnknownProvider."""
    return guarded(_row(name))


def guarded(provider: Provider) -> OutsideTransaction:
    """The provider row's client, guarded: no call inside a transaction, every outcome fed
    to the breaker."""
    from . import settings

    client = client_for(provider)
    client.adopt_timings(
        dt.timedelta(seconds=settings.get("activation_lifetime")),
        dt.timedelta(seconds=settings.get("early_cancel_window")),
    )
    return OutsideTransaction(client, provider.name)


def use_upstream(app: Flask, provider: Upstream) -> None:
    """Make `provider` the client of the environment's provider (tests, tools)."""
    app.extensions[EXTENSION_KEY] = provider
