"""Console: the Rents page (every rented number, filters, figures per period and per
provider) and one rental's periods and inbox."""

from __future__ import annotations

from flask import render_template, request

from ..extensions import db
from ..models import Rental, RentalStatus
from ..pagination import page_number
from ..services import rent_stats
from . import bp
from .routes import PER_PAGE, admin_required


@bp.get("/rents")
@admin_required
def rents_page():
    status = (request.args.get("status") or "").strip()
    if status not in {s.value for s in RentalStatus}:
        status = ""
    provider = (request.args.get("provider") or "").strip()[:20]
    page = db.paginate(
        rent_stats.rentals_query(status or None, provider or None),
        page=page_number(),
        per_page=PER_PAGE,
        error_out=False,
    )
    return render_template(
        "admin/rents.html",
        page=page,
        status=status,
        provider=provider,
        statuses=[s.value for s in RentalStatus],
        periods=rent_stats.by_period(),
        providers=rent_stats.by_provider(),
        args={k: v for k, v in request.args.items() if k != "page"},
    )


@bp.get("/rents/<int:rental_id>")
@admin_required
def rent_detail(rental_id: int):
    return render_template("admin/rent.html", item=db.get_or_404(Rental, rental_id))
