"""The Rent page: rent a number for hours or days, see every SMS it receives, continue,
cancel or finish it. services.rentals decides and bills (the API's money path); this
module parses and renders."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from wtforms import HiddenField, SelectField, SubmitField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length

from ..auth.forms import PostForm
from ..extensions import db
from ..forms import PageForm
from ..models import RentalStatus as R
from ..services import catalog, rent_offers, rentals, settings
from ..services import errors as err
from ..services.rentals import RentRequest
from . import bp
from .cards import country_name, duration, service_name

LENGTHS = (
    (4, "4 hours"),
    (12, "12 hours"),
    (24, "1 day"),
    (72, "3 days"),
    (168, "7 days"),
    (720, "30 days"),
)
STATUS_TEXT = {
    R.PENDING.value: "Being rented",
    R.UNKNOWN.value: "Being checked",
    R.ACTIVE.value: "Active",
    R.FINISHED.value: "Finished",
    R.CANCELLED.value: "Cancelled (refunded)",
    R.EXPIRED.value: "Time over",
    R.FAILED.value: "Not rented (refunded)",
}
# What the page says when the service refuses (a missing kind: the error's own message).
MESSAGES = {
    "NO_BALANCE": "Your balance is too low for this rent. Nothing was charged; top up first.",
    "NO_NUMBERS": "No number is available for this service and country right now. "
    "Nothing was charged; try another country or later.",
    "INVALID_TIME": "This rent length is not available.",
    "CANT_CANCEL": "This number can no longer be cancelled: an SMS arrived, it was "
    "continued, or the cancel window is over. Finish it instead.",
    "ALREADY_FINISH": "This rent has already ended.",
    "ALREADY_CANCEL": "This rent was already cancelled.",
    "RENT_DIE": "This rent cannot be continued (it has ended, or the provider does not "
    "extend it). Nothing was charged.",
    "SERVICE_UNAVAILABLE": "Our provider is not answering right now; please try again in a "
    "minute. Any amount held is returned automatically if nothing was rented.",
}


class RentForm(PageForm):
    service = HiddenField(validators=[DataRequired(), Length(max=40)])
    country = HiddenField(validators=[DataRequired(), Length(max=10)])
    hours = HiddenField(validators=[DataRequired(), Length(max=5)])
    submit = SubmitField("Rent")


class ContinueForm(PageForm):
    hours = SelectField("Extend by", choices=[SelectChoice(str(h), label) for h, label in LENGTHS])
    submit = SubmitField("Continue")


def _failure(exc: err.ServiceError) -> str:
    return MESSAGES.get(exc.kind, str(exc))


def _hours_asked() -> int:
    try:
        return rent_offers.parse_hours(request.args.get("hours") or "4")
    except err.InvalidTime:
        return rent_offers.DEFAULT_HOURS


def _country_asked() -> int:
    try:
        return rentals.offer_country(request.args.get("country"))
    except err.BadCountry:
        return settings.get("default_country")


@bp.get("/rent")
def rent_page():
    hours, country_id = _hours_asked(), _country_asked()
    try:
        quotes = rent_offers.quotes(country_id, hours)
    except err.ServiceError:
        quotes = []
    rows = [
        {
            "rental": r,
            "status": STATUS_TEXT.get(r.status, r.status),
            "left": duration(rentals.time_left(r)) if rentals.time_left(r) else "",
            "service": service_name(r.service),
            "country": country_name(r.country_id),
        }
        for r in rentals.recent_for_user(current_user)
    ]
    return render_template(
        "dashboard/rent.html",
        quotes=[(q, service_name(q.service)) for q in quotes],
        rows=rows,
        hours=hours,
        country_id=country_id,
        countries=catalog.enabled_countries(),
        lengths=LENGTHS,
        length_label=dict(LENGTHS).get(hours, f"{hours} hours"),
        rent_form=RentForm(),
        post_form=PostForm(),
        continue_form=ContinueForm(),
        active=R.ACTIVE.value,
    )


@bp.post("/rent")
def rent_submit():
    form = RentForm()
    if not form.validate_on_submit():
        flash("Please choose a number to rent.", "error")
        return redirect(url_for(".rent_page"))
    request_ = RentRequest(
        service=form.service.data, country=form.country.data, hours=form.hours.data
    )
    try:
        rental = rentals.rent_number(current_user, request_)
    except err.ServiceError as exc:
        db.session.rollback()
        flash(_failure(exc), "error")
        return redirect(url_for(".rent_page", country=form.country.data, hours=form.hours.data))
    flash(
        f"You rented {rental.phone} for {service_name(rental.service)} until "
        f"{rental.ends_at:%Y-%m-%d %H:%M} UTC. Every SMS it receives appears in its inbox.",
        "success",
    )
    return redirect(url_for(".rent_inbox", rental_id=rental.id))


@bp.get("/rent/<int:rental_id>")
def rent_inbox(rental_id: int):
    try:
        rental = rentals.status(current_user, rental_id)
    except err.RentNotFound:
        abort(404)
    return render_template(
        "dashboard/rent_number.html",
        rental=rental,
        status=STATUS_TEXT.get(rental.status, rental.status),
        left=duration(rentals.time_left(rental)) if rentals.time_left(rental) else "",
        service=service_name(rental.service),
        country=country_name(rental.country_id),
        messages=rentals.messages_page(rental),
        post_form=PostForm(),
        continue_form=ContinueForm(),
        active=rental.status == R.ACTIVE.value,
    )


DONE = {
    "cancel": "The rent of {phone} is cancelled and its price is back on your balance.",
    "finish": "The rent of {phone} is finished.",
    "continue": "The rent of {phone} now ends {ends:%Y-%m-%d %H:%M} UTC.",
}


@bp.post("/rent/<int:rental_id>/<any(cancel, finish, continue):action>")
def rent_act(rental_id: int, action: str):
    form = ContinueForm() if action == "continue" else PostForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        rental = rentals.get_for_user(current_user, rental_id)
    except err.RentNotFound:
        abort(404)
    try:
        if action == "continue":
            rental = rentals.continue_rent(current_user, rental_id, form.hours.data)
        elif action == "cancel":
            rental = rentals.cancel(rental)
        else:
            rental = rentals.finish(rental)
    except err.ServiceError as exc:
        db.session.rollback()
        flash(_failure(exc), "error")
    else:
        flash(DONE[action].format(phone=rental.phone, ends=rental.ends_at), "success")
    return redirect(url_for(".rent_inbox", rental_id=rental_id))
