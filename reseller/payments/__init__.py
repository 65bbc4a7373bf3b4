"""Payment gateways talking to us: their webhooks, and the sandbox gateway's pay page."""

from flask import Blueprint

bp = Blueprint("payments", __name__, url_prefix="/payments")

from . import routes  # noqa: E402,F401
