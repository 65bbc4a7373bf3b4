"""Console: the Payments page (every top-up, filters, totals, timeline, "check now")."""

from __future__ import annotations

import json

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from wtforms import BooleanField, DateField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length, Optional

from ..auth.forms import PostForm
from ..extensions import db
from ..gateways import GATEWAYS
from ..gateways.base import GatewayError
from ..models import Payment, PaymentStatus
from ..pagination import page_number
from ..services import admin, payments
from . import bp
from .forms import _SearchForm, _strip
from .routes import PER_PAGE, admin_required


class PaymentFilterForm(_SearchForm):
    status = SelectField(
        "Status",
        choices=[SelectChoice("", "any")] + [SelectChoice(s.value) for s in PaymentStatus],
        validators=[Optional()],
    )
    gateway = SelectField(
        "Gateway",
        choices=[SelectChoice("", "any")] + [SelectChoice(n, c.label) for n, c in GATEWAYS.items()],
        validators=[Optional()],
    )
    email = StringField("Customer email", filters=[_strip], validators=[Length(max=254)])
    flagged = BooleanField("Flagged only")
    created_from = DateField("From", validators=[Optional()])
    created_to = DateField("To", validators=[Optional()])


@bp.get("/payments")
@admin_required
def payments_page():
    form = PaymentFilterForm(formdata=request.args)
    page = None
    if form.validate():
        spec = payments.PaymentFilter(
            status=form.status.data or None,
            gateway=form.gateway.data or None,
            email=form.email.data or None,
            flagged=bool(form.flagged.data),
            created_from=form.created_from.data,
            created_to=form.created_to.data,
        )
        page = db.paginate(
            payments.console_query(spec), page=page_number(), per_page=PER_PAGE, error_out=False
        )
    args = {k: v for k, v in request.args.items() if k != "page"}
    return render_template(
        "admin/payments.html",
        form=form,
        page=page,
        args=args,
        label=payments.gateway_label,
        totals=payments.totals(),
        running=payments.available(),
        offered=[g.name for g in payments.offered()],
    )


@bp.get("/payments/<int:payment_id>")
@admin_required
def payment(payment_id: int):
    item = db.get_or_404(Payment, payment_id)
    return render_template(
        "admin/payment.html",
        item=item,
        label=payments.gateway_label,
        ledger=payments.ledger_rows(item.id),
        action_form=PostForm(),
        can_check=payments.can_check(item),
        can_refund=payments.can_refund(item),
        pretty=_pretty_json,
    )


def _pretty_json(text: str) -> str:
    """A notification body, indented when it is JSON (it is shown as received otherwise)."""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


@bp.post("/payments/<int:payment_id>/check")
@admin_required
def payment_check(payment_id: int):
    item = db.get_or_404(Payment, payment_id)
    if not PostForm().validate_on_submit():
        flash("The form expired; try again.", "error")
        return redirect(url_for(".payment", payment_id=payment_id))
    before = item.status
    try:
        outcome = payments.check_now(item)
    except GatewayError as exc:
        db.session.rollback()
        flash(f"The gateway did not answer: {exc}", "error")
        return redirect(url_for(".payment", payment_id=payment_id))
    item = db.session.get(Payment, payment_id)
    admin.audit(current_user, "payment.check", f"payment:{payment_id}", before, item.status)
    db.session.commit()
    if outcome is None:
        flash("The gateway knows nothing new about this payment.", "info")
    else:
        flash(f"Checked: {outcome.result}; the payment is {item.status}.", "success")
    return redirect(url_for(".payment", payment_id=payment_id))


@bp.post("/payments/<int:payment_id>/refund")
@admin_required
def payment_refund(payment_id: int):
    """Give a paid top-up back at its gateway (Telegram Stars: refundStarPayment) and debit
    the wallet."""
    item = db.get_or_404(Payment, payment_id)
    if not PostForm().validate_on_submit():
        flash("The form expired; try again.", "error")
        return redirect(url_for(".payment", payment_id=payment_id))
    before = item.status
    try:
        outcome = payments.refund(item, source=f"admin:{current_user.id}")
    except (payments.RefundRefused, GatewayError) as exc:
        db.session.rollback()
        admin.audit(
            current_user, "payment.refund", f"payment:{payment_id}", before, f"refused: {exc}"
        )
        db.session.commit()
        flash(f"Not refunded: {exc}", "error")
        return redirect(url_for(".payment", payment_id=payment_id))
    item = db.session.get(Payment, payment_id)
    admin.audit(current_user, "payment.refund", f"payment:{payment_id}", before, item.status)
    db.session.commit()
    flash(f"Refund: {outcome.result}; the payment is {item.status}.", "success")
    return redirect(url_for(".payment", payment_id=payment_id))
