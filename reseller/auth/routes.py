import datetime as dt
from urllib.parse import urlsplit

from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user

from .. import clock
from ..extensions import limiter
from ..security import session_identifier
from ..services import account_links, accounts, mail
from ..services import two_factor as two_factor_service
from . import bp
from .forms import LoginForm, PostForm, SignupForm, TwoFactorCodeForm
from .links import request_language

TWO_FACTOR_STEP_SECONDS = 300  # the code must follow the password within this


def _safe_next(target: str | None) -> str | None:
    """`next` only when it is a local path (no scheme, no host, no `//` or backslash tricks)."""
    if not target:
        return None
    target = target.strip()
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    if "\\" in target or any(ord(c) < 32 for c in target):
        return None
    return target


def _login_email_key() -> str:
    """Per email, as an HMAC: the limiter's counters (in Redis in production) hold no
    addresses."""
    email = accounts.normalise_email(request.form.get("email", ""))[:254]
    return "login-email:" + accounts.private_digest(email)


def _login_limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT"]


@bp.route("/signup", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def signup():
    if current_user.is_authenticated:
        return redirect(url_for("docs.index"))
    form = SignupForm()
    if form.validate_on_submit():
        try:
            user = accounts.create_user(form.email.data, form.password.data)
        except accounts.AccountError as exc:
            form.email.errors.append(str(exc))
        else:
            session.clear()
            login_user(user)
            accounts.record_login(user)
            if current_app.config["REQUIRE_EMAIL_VERIFICATION"] and mail.available():
                account_links.send_verification(user, language=request_language())
                flash(
                    "Welcome! We sent you a link to confirm your e-mail address: your API "
                    "key works once it is opened.",
                    "success",
                )
            else:
                flash("Welcome! Your account is ready; your API key is below.", "success")
            return redirect(url_for("docs.index"))
    return render_template(
        "auth/signup.html",
        form=form,
        min_length=accounts.MIN_PASSWORD_LENGTH,
        max_length=accounts.MAX_PASSWORD_LENGTH,
    )


def _landing(user) -> str:
    """Where a log-in without `next` goes: the console for admins, the dashboard else."""
    return url_for("admin.index") if user.is_admin else url_for("dashboard.index")


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
@limiter.limit(_login_limit, methods=["POST"], key_func=_login_email_key)
def login():
    if current_user.is_authenticated:
        return redirect(_landing(current_user))
    form = LoginForm()
    if form.validate_on_submit():
        user = accounts.authenticate(form.email.data, form.password.data)
        if user is None or not user.is_active:
            form.email.errors.append("Wrong email or password, or the account is disabled.")
        else:
            next_url = _safe_next(request.args.get("next"))
            session.clear()  # a fresh session at login
            if user.two_factor_enabled:
                # Half-way: the password is right; the code step logs the session in.
                session["two_factor"] = {
                    "user": user.get_id(),
                    "client": session_identifier(),
                    "at": _now(),
                    "next": next_url,
                }
                return redirect(url_for("auth.two_factor"))
            login_user(user)
            accounts.record_login(user)
            return redirect(next_url or _landing(user))
    return render_template("auth/login.html", form=form)


def _now() -> int:
    return int(clock.utcnow().replace(tzinfo=dt.UTC).timestamp())


def _two_factor_pending():
    """The account whose password was just given in this session (and browser), or None."""
    pending = session.get("two_factor")
    if not isinstance(pending, dict):
        return None
    if pending.get("client") != session_identifier():
        return None
    if not isinstance(pending.get("at"), int) or (_now() - pending["at"] > TWO_FACTOR_STEP_SECONDS):
        return None
    user = accounts.user_for_session(pending.get("user"))
    if user is None or not user.is_active or not user.two_factor_enabled:
        return None
    return user


def check_code_limit(user) -> None:
    """Count one two-factor code tried for `user` (any page); raises RateLimitExceeded past
    TWO_FACTOR_RATE_LIMIT."""
    limiter.hit(current_app.config["TWO_FACTOR_RATE_LIMIT"], f"account:{user.id}", "two-factor")


@bp.route("/login/two-factor", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def two_factor():
    if current_user.is_authenticated:
        return redirect(_landing(current_user))
    user = _two_factor_pending()
    if user is None:
        session.pop("two_factor", None)
        flash("Log in again: the code must follow the password within five minutes.", "info")
        return redirect(url_for("auth.login"))
    form = TwoFactorCodeForm()
    if form.validate_on_submit():
        check_code_limit(user)
        if two_factor_service.check_login_code(user, form.code.data):
            next_url = _safe_next(session["two_factor"].get("next"))
            session.clear()
            login_user(user)
            accounts.record_login(user)
            return redirect(next_url or _landing(user))
        form.code.errors.append(two_factor_service.WRONG_CODE)
    return render_template("auth/two_factor.html", form=form)


@bp.post("/logout")
@login_required
def logout():
    form = PostForm()
    if form.validate_on_submit():
        logout_user()
        session.clear()
        flash("You are logged out.", "info")
    return redirect(url_for("main.index"))
