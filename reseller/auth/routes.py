from urllib.parse import urlsplit

from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user

from ..extensions import limiter
from ..services import accounts
from . import bp
from .forms import LoginForm, PostForm, SignupForm


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
            login_user(user)
            accounts.record_login(user)
            return redirect(next_url or _landing(user))
    return render_template("auth/login.html", form=form)


@bp.post("/logout")
@login_required
def logout():
    form = PostForm()
    if form.validate_on_submit():
        logout_user()
        session.clear()
        flash("You are logged out.", "info")
    return redirect(url_for("main.index"))
