"""The Top up page: choose an amount and a payment method, pay on the gateway's page, see
every payment and its status. The payments service decides; this module renders."""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from wtforms import RadioField, StringField, SubmitField
from wtforms.validators import Length

from ..auth.forms import PostForm
from ..extensions import db
from ..forms import PageForm
from ..money import format_amount
from ..pagination import page_number
from ..services import payments, settings
from . import bp

PAGE_SIZE = 20
STATUS_TEXT = {
    "pending": "Waiting for payment",
    "paid": "Paid",
    "expired": "Expired",
    "failed": "Failed",
    "flagged": "Under review",
    "cancelled": "Cancelled",
    "refunded": "Refunded",
}


class TopUpForm(PageForm):
    amount = StringField(
        "Amount",
        filters=[lambda v: v.strip() if v else v],
        validators=[Length(max=20)],
        # A numeric keypad with a decimal point on phones.
        render_kw={"inputmode": "decimal", "autocomplete": "off"},
    )
    gateway = RadioField("Pay with", choices=[])
    submit = SubmitField("Continue to payment")


def _urls(gateway: str) -> payments.Urls:
    """Our URLs for the gateway: from PUBLIC_URL when set (behind a proxy the request may
    not know the public name), else from this request."""
    root = (current_app.config.get("PUBLIC_URL") or request.url_root).rstrip("/")
    return payments.Urls(
        callback=root + url_for("payments.webhook", gateway=gateway),
        back=root + url_for("dashboard.topup"),
        site=root + "/",
    )


def _form() -> TopUpForm:
    form = TopUpForm()
    offered = payments.offered()
    form.gateway.choices = [(g.name, g.label) for g in offered]
    if not form.gateway.data and offered:
        form.gateway.data = offered[0].name
    return form


@bp.route("/topup", methods=["GET", "POST"])
def topup():
    form = _form()
    status = 200
    if request.method == "GET" and not form.amount.data:
        # A preset amount's link (without JavaScript): it fills the field, it pays nothing.
        form.amount.data = (request.args.get("amount") or "").strip()[:20] or None
    if request.method == "POST":
        if form.validate_on_submit():
            try:
                amount = payments.parse_topup_amount(form.amount.data or "")
                payment = payments.start_topup(
                    current_user, amount, form.gateway.data, _urls(form.gateway.data)
                )
            except payments.BadTopUpAmount as exc:
                db.session.rollback()
                form.amount.errors = [str(exc)]
            except payments.TopUpError as exc:
                db.session.rollback()
                flash(str(exc), "error")
                return redirect(url_for(".topup"))
            else:
                return redirect(payment.pay_url)
        status = 400
    shown = None
    shown_id = request.args.get("payment", type=int)
    if shown_id and 0 < shown_id < 2**31:
        shown = payments.get_for_user(current_user, shown_id)
    page = db.paginate(
        payments.history_query(current_user.id),
        page=page_number(),
        per_page=PAGE_SIZE,
        error_out=False,
    )
    rules = payments.limits()
    return (
        render_template(
            "dashboard/topup.html",
            form=form,
            rules=rules,
            page=page,
            shown=shown,
            status_text=STATUS_TEXT,
            label=payments.gateway_label,
            fmt=format_amount,
            instructions=settings.get("topup_instructions"),
            cancel_form=PostForm(),
            prev_url=url_for(".topup", page=page.prev_num) if page.has_prev else None,
            next_url=url_for(".topup", page=page.next_num) if page.has_next else None,
        ),
        status,
    )


@bp.post("/topup/<int:payment_id>/cancel")
def cancel_topup(payment_id: int):
    if not PostForm().validate_on_submit():
        abort(400)
    try:
        payment = payments.cancel_topup(current_user, payment_id)
    except payments.TopUpError:
        flash("This payment is not waiting any more; there is nothing to cancel.", "error")
        return redirect(url_for(".topup"))
    flash(
        f"Payment #{payment.id} is cancelled. If you have paid it already, the amount is still "
        "added to your balance when the payment provider confirms it.",
        "success",
    )
    return redirect(url_for(".topup", payment=payment.id))
