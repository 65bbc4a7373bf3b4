"""The customer API: one handler at /api/customer and /stubs/handler_api.php."""

from flask import Blueprint

bp = Blueprint("api", __name__)

from . import routes  # noqa: E402,F401
