"""The operator console: admins only, every action audited."""

from flask import Blueprint

from ..transactions import read_only_pages

bp = Blueprint("admin", __name__, url_prefix="/admin")
read_only_pages(bp)  # first: its views read beside the writer (SQLite)

from . import broadcast_views, payment_views, rent_views, routes  # noqa: E402,F401
