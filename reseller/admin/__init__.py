"""The operator console: admins only, every action audited."""

from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin")

from . import broadcast_views, payment_views, rent_views, routes  # noqa: E402,F401
