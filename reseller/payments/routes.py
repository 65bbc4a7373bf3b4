"""Webhooks and the sandbox's pay page. The webhook is the only CSRF-exempt view: a
gateway cannot hold our CSRF token, and its signature is checked (inside the gateway
module) before anything reads the body."""

from __future__ import annotations

import logging

from flask import abort, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from ..auth.forms import PostForm
from ..extensions import csrf, db
from ..gateways import GATEWAYS
from ..gateways.base import BadNotification, BadSignature, MalformedNotification
from ..models import Payment
from ..models import PaymentStatus as P
from ..money import format_amount
from ..services import payments
from . import bp

log = logging.getLogger(__name__)

GATEWAY_NAMES = ", ".join(GATEWAYS)
MAX_BODY = 64 * 1024  # a notification is a few kilobytes


@bp.post(f"/<any({GATEWAY_NAMES}):gateway>/webhook")
@csrf.exempt
def webhook(gateway: str):
    body = request.stream.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        abort(413)
    try:
        outcome = payments.handle_notification(gateway, body, request.headers)
    except BadSignature as exc:
        status, reason = 401, str(exc)
    except payments.UnknownInvoice as exc:
        status, reason = 404, str(exc)
    except MalformedNotification as exc:
        status, reason = 400, str(exc)
    except BadNotification as exc:
        status, reason = 404, str(exc)
    else:
        log.info("%s notification: payment %s %s", gateway, outcome.payment_id, outcome.result)
        return jsonify({"ok": True})
    # Never the body or the headers: they may carry what a secret was derived from.
    log.warning(
        "%s notification refused (%s): %s from %s", gateway, status, reason, request.remote_addr
    )
    return jsonify({"ok": False, "error": reason}), status


def _own_sandbox_payment(invoice_id: str) -> Payment:
    payment = db.session.execute(
        db.select(Payment).where(Payment.gateway == "sandbox", Payment.invoice_id == invoice_id)
    ).scalar_one_or_none()
    if payment is None or payment.user_id != current_user.id:
        abort(404)
    return payment


@bp.get("/sandbox/<invoice_id>")
@login_required
def sandbox_page(invoice_id: str):
    payment = _own_sandbox_payment(invoice_id[:100])
    return render_template(
        "payments/sandbox.html",
        payment=payment,
        amount=format_amount(payment.amount),
        form=PostForm(),
    )


@bp.post("/sandbox/<invoice_id>/pay")
@login_required
def sandbox_pay(invoice_id: str):
    payment = _own_sandbox_payment(invoice_id[:100])
    if not PostForm().validate_on_submit():
        abort(400)
    back = url_for("dashboard.topup", payment=payment.id)
    if payment.status != P.PENDING.value:
        flash(f"This invoice is {payment.status}; there is nothing to pay.", "info")
        return redirect(back)
    outcome = payments.sandbox_pay(payment)
    if outcome.result == "credited":
        flash(
            f"Sandbox payment received: {format_amount(payment.amount)} {payment.currency} "
            "is on your balance.",
            "success",
        )
    return redirect(back)
