"""The app's upstream provider, built once per app from the configuration."""

from __future__ import annotations

from flask import Flask, current_app

from ..extensions import db
from ..upstream.base import Upstream

EXTENSION_KEY = "reseller.upstream"


def build_upstream(app: Flask) -> Upstream:
    config = app.config
    if config["UPSTREAM"] == "sandbox":
        from ..upstream.sandbox import SandboxUpstream

        return SandboxUpstream(
            code_delay=config["SANDBOX_CODE_DELAY"],
            lifetime=config["ACTIVATION_LIFETIME"],
            early_cancel=config["EARLY_CANCEL_WINDOW"],
        )
    from ..upstream.grizzly import GrizzlyClient

    return GrizzlyClient(
        api_key=config["GRIZZLY_API_KEY"] or "",
        url=config["GRIZZLY_API_URL"],
        connect_timeout=config["UPSTREAM_CONNECT_TIMEOUT"],
        read_timeout=config["UPSTREAM_READ_TIMEOUT"],
    )


class OutsideTransaction:
    """Wraps the provider so that every call first ends the session's transaction.

    No upstream call may run inside a database transaction: it would hold row locks (on
    SQLite, the whole database) for the length of a network round trip. Callers have
    already committed what they mean to keep; this makes the rule impossible to forget.
    """

    def __init__(self, provider: Upstream):
        self._provider = provider
        self.name = provider.name

    def __getattr__(self, attribute):
        target = getattr(self._provider, attribute)
        if not callable(target):
            return target

        def call(*args, **kwargs):
            db.session.commit()
            return target(*args, **kwargs)

        return call


def raw_upstream() -> Upstream:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    provider = app.extensions.get(EXTENSION_KEY)
    if provider is None:
        provider = app.extensions[EXTENSION_KEY] = build_upstream(app)
    return provider


def upstream() -> OutsideTransaction:
    """The current app's upstream (tests may replace it with `use_upstream`)."""
    provider = raw_upstream()
    if provider.name == "sandbox":
        _follow_settings(provider)
    return OutsideTransaction(provider)


def _follow_settings(sandbox) -> None:
    """The sandbox plays by the operator's current lifetime and early-cancel settings."""
    import datetime as dt

    from . import settings

    sandbox.lifetime = dt.timedelta(seconds=settings.get("activation_lifetime"))
    sandbox.early_cancel = dt.timedelta(seconds=settings.get("early_cancel_window"))


def use_upstream(app: Flask, provider: Upstream) -> None:
    app.extensions[EXTENSION_KEY] = provider
