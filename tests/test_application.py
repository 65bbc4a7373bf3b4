"""reseller.application: Flask minus two per-request costs, with Flask's behaviour kept."""

from __future__ import annotations

import inspect

from flask.sessions import SecureCookieSessionInterface

from reseller.application import Application, CookieSessions


def test_the_app_is_built_on_the_application_class(app):
    assert isinstance(app, Application)
    assert isinstance(app.session_interface, CookieSessions)


def test_a_request_without_a_session_cookie_builds_no_serializer(app, api, monkeypatch):
    def refuse(self, app):
        raise AssertionError("a serializer was built for a request without a session cookie")

    monkeypatch.setattr(SecureCookieSessionInterface, "get_signing_serializer", refuse)
    assert api.text("getBalance") == "ACCESS_BALANCE:10.00"


def test_sessions_still_round_trip_and_refuse_forged_cookies(app):
    @app.get("/test-session-put")
    def put():
        from flask import session

        session["seen"] = 42
        return "put"

    @app.get("/test-session-get")
    def get():
        from flask import session

        return str(session.get("seen"))

    browser = app.test_client()
    browser.get("/test-session-put")
    assert browser.get("/test-session-get").get_data(as_text=True) == "42"
    stranger = app.test_client()
    stranger.set_cookie(app.config.get("SESSION_COOKIE_NAME", "session"), "forged.cookie.value")
    assert stranger.get("/test-session-get").get_data(as_text=True) == "None"
    assert app.test_client().get("/test-session-get").get_data(as_text=True) == "None"


def test_ensure_sync_asks_once_per_function(app, monkeypatch):
    asked = []
    real = inspect.iscoroutinefunction

    def counting(func):
        asked.append(func)
        return real(func)

    import flask.app

    monkeypatch.setattr(flask.app, "iscoroutinefunction", counting)

    def view():
        return "ok"

    assert app.ensure_sync(view) is view
    assert app.ensure_sync(view) is view
    assert asked.count(view) == 1
