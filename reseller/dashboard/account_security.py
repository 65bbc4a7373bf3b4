"""The Account page's security: two-factor set-up, recovery codes, logging out other
sessions, the e-mail address (change, verification)."""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, url_for
from flask_login import current_user, login_user

from ..auth.forms import PostForm, TwoFactorCodeForm
from ..auth.links import request_language
from ..auth.routes import check_code_limit
from ..extensions import limiter
from ..services import account_links, accounts, mail, settings, two_factor
from . import bp
from .forms import ChangeEmailForm


def _me():
    return current_user._get_current_object()


def _login_limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT"]


def _mail_limit() -> str:
    return current_app.config["MAIL_RATE_LIMIT"]


def _account_key() -> str:
    return f"account:{current_user.id}"


def _issuer() -> str:
    return settings.get("site_name") or current_app.config["SITE_NAME"]


@bp.route("/account/two-factor", methods=["GET", "POST"])
def two_factor_page():
    user = _me()
    form = TwoFactorCodeForm()
    if user.two_factor_enabled:
        return render_template(
            "dashboard/two_factor.html",
            user=user,
            form=TwoFactorCodeForm(formdata=None),
            codes_left=two_factor.recovery_codes_left(user),
        )
    secret = two_factor.pending_secret(user)
    if form.validate_on_submit():
        check_code_limit(user)
        try:
            codes = two_factor.enable(user, form.code.data)
        except two_factor.TwoFactorError as exc:
            form.code.errors.append(str(exc))
        else:
            flash("Two-factor authentication is on.", "success")
            return render_template("dashboard/recovery_codes.html", codes=codes)
    uri = two_factor.provisioning_uri(user, secret, _issuer())
    return render_template(
        "dashboard/two_factor.html",
        user=user,
        form=form,
        secret=secret,
        qr=two_factor.qr_code(uri),
    )


def _with_code(action) -> tuple[bool, object]:
    """Run `action(user, code)` for the code the form carries: (done, its result)."""
    user = _me()
    form = TwoFactorCodeForm()
    if not form.validate_on_submit():
        flash("Enter a code from your app, or a recovery code.", "error")
        return False, None
    check_code_limit(user)
    try:
        return True, action(user, form.code.data)
    except two_factor.TwoFactorError as exc:
        flash(str(exc), "error")
        return False, None


@bp.post("/account/two-factor/disable")
def two_factor_disable():
    done, _ = _with_code(two_factor.disable)
    if not done:
        return redirect(url_for(".two_factor_page"))
    flash("Two-factor authentication is off.", "success")
    return redirect(url_for(".account"))


@bp.post("/account/two-factor/recovery-codes")
def two_factor_recovery_codes():
    done, codes = _with_code(two_factor.regenerate_recovery_codes)
    if not done:
        return redirect(url_for(".two_factor_page"))
    flash("New recovery codes: the old ones no longer work.", "success")
    return render_template("dashboard/recovery_codes.html", codes=codes)


@bp.post("/account/sessions")
def end_other_sessions():
    if not PostForm().validate_on_submit():
        abort(400)
    user = _me()
    accounts.end_other_sessions(user)
    login_user(user)  # this session goes on under the new identity
    flash("Every other session of your account is logged out.", "success")
    return redirect(url_for(".account"))


@bp.post("/account/email")
@limiter.limit(_login_limit)  # the current password is a guessable secret
@limiter.limit(_mail_limit, key_func=_account_key)
def change_email():
    form = ChangeEmailForm()
    if not mail.available():
        flash(_no_mail_message(), "error")
    elif form.validate_on_submit():
        try:
            address = account_links.request_email_change(
                _me(), form.email.data, form.password.data, language=request_language()
            )
        except accounts.AccountError as exc:
            flash(str(exc), "error")
        else:
            flash(
                f"We sent a link to {address}: your address changes when it is opened.",
                "success",
            )
    else:
        flash("Enter the new address and your current password.", "error")
    return redirect(url_for(".account") + "#email-address")


@bp.post("/account/verify")
@limiter.limit(_mail_limit, key_func=_account_key)
def resend_verification():
    if not PostForm().validate_on_submit():
        abort(400)
    user = _me()
    if user.email_verified_at is not None:
        flash("Your e-mail address is already confirmed.", "info")
    elif not mail.available():
        flash(_no_mail_message(), "error")
    else:
        account_links.send_verification(user, language=request_language())
        flash(f"We sent a new link to {user.email}.", "success")
    return redirect(url_for(".account") + "#email-address")


def _no_mail_message() -> str:
    support = current_app.config["SUPPORT_CONTACT"] or "the operator"
    return f"This site cannot send e-mail: contact {support}."


@bp.context_processor
def account_security_context():
    # Callables: only the templates that show these ask for them.
    return {
        "change_email_form": lambda: ChangeEmailForm(formdata=None),
        "mail_available": mail.available,
        "verification_required": current_app.config["REQUIRE_EMAIL_VERIFICATION"],
    }
