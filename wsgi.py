"""WSGI entry point: `gunicorn wsgi:app`, `flask --app wsgi …`."""

import os

from config import ConfigError
from reseller import create_app

try:
    app = create_app()
except ConfigError as exc:
    # One line naming the variable, never a traceback. Run as production (RESELLER_ENV unset),
    # the usual cause is a command typed on a developer's machine: say how to run there.
    hint = ""
    if os.environ.get("RESELLER_ENV", "") in ("", "production"):
        hint = (
            ". To run in development: RESELLER_ENV=development flask --app wsgi … "
            "(or `make run`); see docs/configuration.md"
        )
    raise SystemExit(f"reseller: {exc}{hint}") from None
