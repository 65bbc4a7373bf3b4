"""The customer dashboard: buy numbers, watch codes arrive, history, balance and account."""

from flask import Blueprint

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")

from . import account_security, rent, routes, topup  # noqa: E402,F401
