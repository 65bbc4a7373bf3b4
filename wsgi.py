"""WSGI entry point: `gunicorn wsgi:app`, `flask --app wsgi …`."""

from config import ConfigError
from reseller import create_app

try:
    app = create_app()
except ConfigError as exc:
    # One line naming the variable, never a traceback: the usual cause is a command run
    # without RESELLER_ENV=development on a developer's machine.
    raise SystemExit(
        f"reseller: {exc}. To run in development: RESELLER_ENV=development flask --app wsgi … "
        "(or `make run`); see docs/configuration.md"
    ) from None
