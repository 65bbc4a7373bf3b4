"""The customer dashboard: buy numbers, watch codes arrive, history, balance and account."""

from flask import Blueprint

from ..transactions import read_only_pages

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")
read_only_pages(bp)  # first: its views read beside the writer (SQLite)

from . import account_security, rent, routes, topup  # noqa: E402,F401
