"""Security headers on every answer, and the input guard.

The Content Security Policy allows only our own scripts, styles and images: pages carry no
inline script and load nothing from elsewhere.
"""

from __future__ import annotations

import logging

from flask import Flask, abort, request

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
    names = frozenset(name.lower() for name, _ in defaults)

    @app.after_request
    def set_headers(response):
        # One pass over the few headers the answer has (a lookup per default header costs
        # more: werkzeug raises and catches a KeyError for each one missing).
        headers = response.headers
        present = {name.lower() for name, _value in headers} & names
        if not present:
            headers.extend(defaults)
        else:
            headers.extend((n, v) for n, v in defaults if n.lower() not in present)
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
