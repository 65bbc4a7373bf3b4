"""reseller: a self-hosted SMS-activation reseller on top of GrizzlySMS."""

from __future__ import annotations

import logging

from flask import Flask, render_template
from werkzeug.routing import IntegerConverter

from .application import Application
from .extensions import babel, csrf, db, limiter, login_manager, mail, migrate
from .models import User
from .security import session_identifier


def create_app(config=None) -> Flask:
    """Build the application.

    `config` is a config object (an instance of a class in config.py); by default the one
    named by RESELLER_ENV. Invalid configurations raise `config.ConfigError`.
    """
    from config import config_from_env

    if config is None:
        config = config_from_env()
    if hasattr(config, "validate"):
        config.validate()
    check_setting_defaults(config)

    app = Application(__name__, instance_relative_config=True)
    app.config.from_object(config)
    register_database_dialect_tweaks()
    register_extensions(app)
    register_url_converters(app)
    register_blueprints(app)
    register_errorhandlers(app)
    register_context(app)
    register_commands(app)
    register_operations(app)
    return app


def check_setting_defaults(config) -> None:
    """The environment's defaults for operator settings (PRICE_MARKUP_PERCENT…) in range,
    or a one-line ConfigError naming the variable: caught at start-up, not by every quote."""
    from config import ConfigError

    from .services import settings

    try:
        settings.check_defaults(config)
    except settings.SettingError as exc:
        raise ConfigError(str(exc)) from None


def register_operations(app: Flask) -> None:
    from .observability import (
        configure_logging,
        register_health,
        register_metrics,
        register_request_id,
    )
    from .security import (
        register_input_guard,
        register_private_pages,
        register_security_headers,
    )

    configure_logging(app)
    register_proxy_fix(app)
    register_request_id(app)
    register_security_headers(app)
    register_private_pages(app)
    register_input_guard(app)
    register_health(app)
    register_metrics(app)


def register_proxy_fix(app: Flask) -> None:
    """Behind TRUSTED_PROXIES reverse proxies, take the client's address and scheme from
    their X-Forwarded-For/-Proto headers (the proxies must overwrite, not pass on, these)."""
    hops = app.config.get("TRUSTED_PROXIES", 0)
    if hops:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)


def register_database_dialect_tweaks() -> None:
    from . import pool, sqlite  # noqa: F401  (install engine and pool event listeners once)


def register_extensions(app: Flask) -> None:
    db.init_app(app)
    migrate.init_app(app, db, render_as_batch=True, compare_type=True)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please log in to see this page."
    login_manager.login_message_category = "info"
    login_manager.session_protection = "strong"
    # Flask-Login 0.6 has no public setting for this; login_user() and the protection check
    # both call this attribute.
    login_manager._session_identifier_generator = session_identifier
    csrf.init_app(app)
    limiter.init_app(app)
    from .i18n import select_locale

    babel.init_app(
        app, locale_selector=select_locale, default_translation_directories="translations"
    )
    mail.init_app(app)


@login_manager.user_loader
def load_user(session_id: str) -> User | None:
    from .services.accounts import user_for_session

    return user_for_session(session_id)


class IdConverter(IntegerConverter):
    """`<int:…>` in our URLs is a database id: past a 32-bit INTEGER it is no id of ours, and
    passed on it would be a database error (SQLite: OverflowError; PostgreSQL: out of range)
    instead of a 404."""

    def __init__(self, map, *args, max=2**31 - 1, **kwargs):
        super().__init__(map, *args, max=max, **kwargs)


def register_url_converters(app: Flask) -> None:
    app.url_map.converters["int"] = IdConverter  # before any route is added


def register_blueprints(app: Flask) -> None:
    from .admin import bp as admin_bp
    from .api import bp as api_bp
    from .auth import bp as auth_bp
    from .dashboard import bp as dashboard_bp
    from .docs import bp as docs_bp
    from .main import bp as main_bp
    from .payments import bp as payments_bp
    from .telegram import bp as telegram_bp

    for blueprint in (
        main_bp,
        auth_bp,
        docs_bp,
        api_bp,
        dashboard_bp,
        admin_bp,
        payments_bp,
        telegram_bp,
    ):
        app.register_blueprint(blueprint)


def register_errorhandlers(app: Flask) -> None:
    def render_error(error):
        code = getattr(error, "code", 500) or 500
        if code >= 500:
            db.session.rollback()
        return render_template("error.html", code=code, error=error), code

    for code in (400, 403, 404, 405, 429, 500):
        app.register_error_handler(code, render_error)


def register_context(app: Flask) -> None:
    from .services import settings

    @app.before_request
    def fresh_settings():
        settings.forget()  # settings are read once per request, never carried over

    @app.context_processor
    def inject_site():
        try:
            site_name = settings.get("site_name") or app.config["SITE_NAME"]
            support_contact = settings.get("support_contact")
        except Exception:  # no database yet (e.g. before migrations): fall back to config
            db.session.rollback()
            site_name = app.config["SITE_NAME"]
            support_contact = app.config["SUPPORT_CONTACT"]
        return {
            "site_name": site_name,
            "support_contact": support_contact,
            "currency": app.config["CURRENCY"],
            "sandbox_mode": app.config.get("UPSTREAM") == "sandbox",
        }


def register_commands(app: Flask) -> None:
    from .commands import register

    register(app)
    logging.getLogger(__name__).debug("commands registered")
