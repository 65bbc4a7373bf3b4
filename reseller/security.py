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
    hsts = app.config.get("ENV_NAME") == "production"

    @app.after_request
    def set_headers(response):
        headers = response.headers
        headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "same-origin")
        if hsts:
            headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
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
