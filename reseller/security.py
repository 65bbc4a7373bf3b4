"""Security headers on every answer, private pages kept out of caches, the input guard, and
what a session is bound to.

The Content Security Policy allows only our own scripts, styles and images: pages carry no
inline script and load nothing from elsewhere.
"""

from __future__ import annotations

import hashlib
import logging

from flask import Flask, abort, request
from flask_login import current_user
from werkzeug.datastructures import Headers

from .rate_limits import remote_address

log = logging.getLogger(__name__)

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)


def register_security_headers(app: Flask) -> None:
    """The headers every answer carries, unless the view set its own."""
    defaults = [
        ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "same-origin"),
    ]
    if app.config.get("ENV_NAME") == "production":
        defaults.append(("Strict-Transport-Security", "max-age=31536000; includeSubDomains"))
    app.wsgi_app = SecurityHeaders(app.wsgi_app, defaults)


class SecurityHeaders:
    """WSGI middleware: adds `defaults` (name, value) to every answer that does not carry a
    header of that name. At the WSGI level rather than in an after_request hook, so that it
    covers every answer Flask sends and costs one pass over the answer's few headers:
    werkzeug would check each constant value again on every response."""

    def __init__(self, wsgi_app, defaults: list[tuple[str, str]]) -> None:
        Headers(defaults)  # the values are checked once, as werkzeug checks any header
        self.wsgi_app = wsgi_app
        self.defaults = list(defaults)
        self.names = frozenset(name.lower() for name, _value in defaults)

    def __call__(self, environ, start_response):
        defaults, names = self.defaults, self.names

        def start(status, headers, exc_info=None):
            present = {name.lower() for name, _value in headers} & names
            extra = (
                defaults if not present else [d for d in defaults if d[0].lower() not in present]
            )
            return start_response(status, [*headers, *extra], exc_info)

        return self.wsgi_app(environ, start)


def register_private_pages(app: Flask) -> None:
    """Every page answered to a logged-in browser says `Cache-Control: no-store`: such pages
    carry the customer's secrets (the API key on the docs and account pages, the webhook
    secret, codes in the history) or the console's data, and no browser or proxy cache may
    keep them. The customer API authenticates with a key, not a session, and static files
    are public: both are left alone (and load no user)."""

    @app.after_request
    def private_pages_are_not_stored(response):
        if (
            request.blueprint != "api"
            and request.endpoint != "static"
            and current_user.is_authenticated
        ):
            response.headers["Cache-Control"] = "no-store"
        return response


def register_input_guard(app: Flask) -> None:
    """Refuse (400) a page request whose parameters carry a NUL character: no form field
    has one, and PostgreSQL refuses it in any text it is asked to compare or store, which
    would otherwise surface as a 500. The customer API refuses it in its own words."""

    @app.before_request
    def refuse_nul_characters():
        if request.blueprint == "api":
            return
        values = [v for _k, vs in request.args.lists() for v in vs]
        values += [v for _k, vs in request.form.lists() for v in vs]
        values += [v for v in (request.view_args or {}).values() if isinstance(v, str)]
        if any("\x00" in value for value in values):
            abort(400)


def session_identifier() -> str:
    """What "strong" session protection binds a session to: the client's address as the app
    trusts it (ProxyFix has taken TRUSTED_PROXIES hops of X-Forwarded-For) and the browser's
    User-Agent. A session replayed with another identifier is dropped.

    Flask-Login's own identifier takes the *first* X-Forwarded-For entry, which the client
    writes (nginx appends to it): a stolen cookie plus a forged header would pass."""
    base = f"{remote_address()}|{request.headers.get('User-Agent', '')}"
    return hashlib.sha512(base.encode()).hexdigest()
