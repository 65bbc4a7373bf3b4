"""Console: the Broadcast page (a message to every Telegram bot user, sent by the worker)."""

from __future__ import annotations

from flask import current_app, flash, redirect, render_template, url_for
from flask_login import current_user
from wtforms import IntegerField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from ..extensions import db
from ..forms import PageForm
from ..services import admin
from ..services import telegram as telegram_accounts
from . import bp
from .routes import admin_required


class BroadcastForm(PageForm):
    text = TextAreaField("Message", validators=[DataRequired(), Length(max=4096)])
    active_days = IntegerField(
        "Only users active in the last … days (empty: everyone)",
        validators=[Optional(), NumberRange(min=1, max=3650)],
    )
    submit = SubmitField("Send to bot users")


@bp.route("/broadcast", methods=["GET", "POST"])
@admin_required
def broadcast_page():
    form = BroadcastForm()
    status = 200
    if form.validate_on_submit():
        try:
            sent = telegram_accounts.start_broadcast(
                form.text.data, form.active_days.data, current_user
            )
        except telegram_accounts.BroadcastError as exc:
            db.session.rollback()
            form.text.errors.append(str(exc))
        else:
            admin.audit(current_user, "telegram.broadcast", f"broadcast:{sent.id}", None, sent.text)
            db.session.commit()
            flash(f"Broadcast #{sent.id} queued for {sent.recipients} bot users.", "success")
            return redirect(url_for(".broadcast_page"))
    if form.is_submitted() and form.errors:
        status = 400
    return (
        render_template(
            "admin/broadcast.html",
            form=form,
            enabled=bool(current_app.config.get("TELEGRAM_BOT_TOKEN")),
            users=telegram_accounts.bot_users(),
            broadcasts=telegram_accounts.broadcasts(),
        ),
        status,
    )
