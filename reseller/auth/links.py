"""The pages mailed links open (password reset, e-mail verification and change), and the
forgot-password form. A link's page shows a button: the link is used by that POST, never by
a GET (mail scanners open links)."""

from __future__ import annotations

import re

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, logout_user

from ..extensions import limiter
from ..models import AccountTokenPurpose as P
from ..services import account_links, accounts, mail
from . import bp
from .forms import ForgotPasswordForm, PostForm, ResetPasswordForm

_LANGUAGE_TAG = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})?")


def request_language() -> str | None:
    """The language the browser prefers most, as a tag (`de`, `pt-BR`), or None: kept with
    each mail for its translation."""
    best = request.accept_languages.best
    return best if best and _LANGUAGE_TAG.fullmatch(best) else None


def _login_limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT"]


def _mail_limit() -> str:
    return current_app.config["MAIL_RATE_LIMIT"]


def _email_key() -> str:
    email = accounts.normalise_email(request.form.get("email", ""))[:254]
    return "mail-to:" + accounts.private_digest(email)


@bp.route("/password/forgot", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
@limiter.limit(_mail_limit, methods=["POST"], key_func=_email_key)
def forgot_password():
    form = ForgotPasswordForm()
    sent = False
    if mail.available() and form.validate_on_submit():
        account_links.request_password_reset(form.email.data, language=request_language())
        sent = True  # the same answer whether or not the address has an account
    return render_template(
        "auth/forgot_password.html",
        form=form,
        sent=sent,
        mail_available=mail.available(),
        support=current_app.config["SUPPORT_CONTACT"],
    )


@bp.route("/password/reset/<token>", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def reset_password(token: str):
    if account_links.valid_token(P.RESET_PASSWORD, token) is None:
        return render_template("auth/link_invalid.html", message=account_links.INVALID_LINK), 404
    form = ResetPasswordForm()
    if form.validate_on_submit():
        try:
            account_links.reset_password(token, form.password.data)
        except accounts.AccountError as exc:
            form.password.errors.append(str(exc))
        else:
            if current_user.is_authenticated:
                logout_user()
            flash("Your password is changed and every session is logged out. Log in.", "success")
            return redirect(url_for("auth.login"))
    return render_template("auth/reset_password.html", form=form)


def _link_page(purpose: P, token: str, action, title: str, done: str, endpoint: str):
    if account_links.valid_token(purpose, token) is None:
        return render_template("auth/link_invalid.html", message=account_links.INVALID_LINK), 404
    form = PostForm()
    if form.validate_on_submit():
        try:
            action(token)
        except accounts.AccountError as exc:
            return render_template("auth/link_invalid.html", message=str(exc)), 409
        flash(done, "success")
        return redirect(
            url_for("dashboard.account" if current_user.is_authenticated else "auth.login")
        )
    return render_template(
        "auth/confirm_link.html", form=form, title=title, endpoint=endpoint, token=token
    )


@bp.route("/email/verify/<token>", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def verify_email(token: str):
    return _link_page(
        P.VERIFY_EMAIL,
        token,
        account_links.verify_email,
        "Confirm your e-mail address",
        "Your e-mail address is confirmed.",
        "auth.verify_email",
    )


@bp.route("/email/change/<token>", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def confirm_email_change(token: str):
    return _link_page(
        P.CHANGE_EMAIL,
        token,
        account_links.confirm_email_change,
        "Confirm your new e-mail address",
        "Your e-mail address is changed.",
        "auth.confirm_email_change",
    )
