"""Dashboard views. They parse the request and render; the services decide, and buying goes
through `activations.buy_number`, the same money path as the API."""

from __future__ import annotations

import secrets
from urllib.parse import urlencode

from flask import abort, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user, login_user

from ..auth.forms import PostForm
from ..extensions import db, limiter, login_manager
from ..models import Activation, LedgerKind, utcnow
from ..models import ActivationStatus as S
from ..money import format_amount, to_units
from ..pagination import page_number
from ..services import accounts, activations, catalog, history, pricing, settings, webhooks
from ..services import errors as err
from ..services import telegram as telegram_accounts
from ..services.activations import PurchaseRequest
from . import bp
from .cards import STATUS_LABELS, card, country_name, duration, service_name
from .forms import BuyForm, ChangePasswordForm, HistoryFilterForm, WebhookForm
from .messages import failure

HISTORY_PAGE_SIZE = 20
LEDGER_PAGE_SIZE = 25
MAX_FEED_IDS = 50

LEDGER_LABELS = {
    LedgerKind.TOPUP.value: "Top-up",
    LedgerKind.PURCHASE.value: "Number bought",
    LedgerKind.REFUND.value: "Refund",
    LedgerKind.ADJUSTMENT.value: "Adjustment",
    LedgerKind.PAYMENT.value: "Top-up",
    LedgerKind.PAYMENT_BONUS.value: "Top-up bonus",
    LedgerKind.PAYMENT_REFUND.value: "Top-up refunded",
}


@bp.before_request
def require_login():
    """Every dashboard page needs a logged-in account (a disabled one counts as logged out:
    Flask-Login's UserMixin ties is_authenticated to is_active)."""
    if current_user.is_authenticated:
        return None
    if request.path.endswith(".json"):
        return jsonify({"error": "LOGIN_REQUIRED"}), 401
    return login_manager.unauthorized()


def _money(units: int) -> str:
    return f"{format_amount(units)} {current_app.config['CURRENCY']}"


@bp.context_processor
def formatting():
    return {"money": _money, "duration": duration}


def _live_activations() -> list[Activation]:
    """The customer's open activations, each brought up to date with the upstream when its
    poll slot is due (the poll cap holds however many tabs are open), within one small time
    budget for the whole request: past it, the database answers and the worker polls."""
    budget = activations.web_poll_budget()
    return [
        activations.refresh_status(a, budget=budget)
        for a in activations.active_for_user(current_user)
    ]


# --- the dashboard ------------------------------------------------------------------


def _matches(text: str, *values: str) -> bool:
    text = text.casefold()
    return any(text in value.casefold() for value in values)


@bp.get("")
def index():
    q = (request.args.get("q") or "").strip()[:60]
    selected = (request.args.get("service") or "").strip()[:40]
    country_q = (request.args.get("cq") or "").strip()[:60]

    offers = pricing.service_offers()
    shown = [o for o in offers if not q or _matches(q, o.service, o.name)]
    if not selected and q and len(shown) == 1:
        selected = shown[0].service
    offer = next((o for o in offers if o.service == selected), None)
    if offer is not None and offer not in shown:
        shown.insert(0, offer)

    countries = []
    if offer is not None:
        for quote in pricing.price_table(service=offer.service):
            name = country_name(quote.country_id)
            if not country_q or _matches(country_q, name):
                countries.append(
                    {
                        "quote": quote,
                        "name": name,
                        "max_price": format_amount(quote.price),
                        # One key per Buy button per page load (dashboard.js draws new ones
                        # when the browser shows the page again): the same button sent twice
                        # buys once, another button or a later visit buys again.
                        "order_id": f"web-{secrets.token_urlsafe(12)}",
                    }
                )
        countries.sort(key=lambda row: row["name"].casefold())

    live = [card(a) for a in _live_activations() if S(a.status) in activations.ACTIVE_STATES]
    page = render_template(
        "dashboard/index.html",
        activations=live,
        offers=shown,
        all_offers=len(offers),
        q=q,
        selected=offer,
        selected_code=selected,
        country_q=country_q,
        countries=countries,
        topup_instructions=settings.get("topup_instructions"),
        support_contact=settings.get("support_contact"),
        poll_interval=settings.get("poll_interval"),
    )
    # Back/forward loads the page anew (fresh order keys, live numbers), never from cache.
    return page, 200, {"Cache-Control": "no-store"}


def _buy_context(service: str, country: str, max_price: str) -> dict:
    """What the failure messages may mention, in the customer's words."""
    try:
        country_label = country_name(catalog.parse_country(country))
    except catalog.UnknownCountry:
        country_label = country
    try:
        price = _money(to_units(max_price))
    except ValueError:
        price = max_price
    return {
        "service": service_name(service),
        "country": country_label,
        "price": price,
        "balance": _money(current_user.balance),
        "limit": settings.get("max_active_activations"),
    }


@bp.post("/buy")
def buy():
    form = BuyForm()
    service = (form.service.data or "").strip()
    back = url_for(".index", service=service or None) + "#buy"
    if not form.validate_on_submit():
        flash("Please choose a service and a country, then press Buy.", "error")
        return redirect(back)
    purchase = PurchaseRequest(
        service=service,
        country=form.country.data,
        max_price=form.max_price.data,
        order_id=form.order_id.data or None,
    )
    try:
        activation = activations.buy_number(current_user, purchase)
    except err.ServiceError as exc:
        db.session.rollback()
        context = _buy_context(service, form.country.data, form.max_price.data)
        if isinstance(exc, err.WrongMaxPrice):
            context["new_price"] = _money(exc.min_price)
        flash(failure(exc, "buy", **context), "error")
        return redirect(back)
    shown = card(activation)
    flash(
        f"You bought {shown['phone']} for {shown['service_name']} ({shown['country_name']}) "
        f"for {_money(activation.price)}. The code appears below as soon as the SMS arrives.",
        "success",
    )
    return redirect(url_for(".index", service=service) + f"#activation-{activation.id}")


ACTIONS = {
    "cancel": activations.cancel,
    "retry": activations.request_another_sms,
    "complete": activations.complete,
}

DONE = {
    "cancel": "The number {phone} is cancelled and {price} is back on your balance.",
    "retry": "Another SMS was requested for {phone}; the new code appears here when it arrives.",
    "complete": "The activation of {phone} is complete. You find it in your history.",
}


@bp.post("/activations/<int:activation_id>/<any(cancel, retry, complete):action>")
def act(activation_id: int, action: str):
    form = PostForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        activation = activations.get_for_user(current_user, activation_id)
    except err.ActivationNotFound:
        abort(404)
    try:
        # A code may have arrived since the page was drawn (within the poll cap).
        fresh = activations.refresh_status(activation, budget=activations.web_poll_budget())
        activation = ACTIONS[action](fresh)
    except err.ServiceError as exc:
        db.session.rollback()
        activation = db.session.get(Activation, activation_id)
        cancel_at = activations.cancel_available_at(activation)
        wait = 0
        if cancel_at is not None:
            wait = (cancel_at - utcnow()).total_seconds()
        flash(
            failure(
                exc,
                action,
                window=duration(settings.get("early_cancel_window")),
                wait=duration(max(1, wait)),
            ),
            "error",
        )
    else:
        shown = card(activation)
        flash(DONE[action].format(phone=shown["phone"], price=_money(activation.price)), "success")
    return redirect(url_for(".index") + f"#activation-{activation_id}")


@bp.get("/activations.json")
def feed():
    """The live feed for dashboard.js: open activations, refreshed within the poll cap, plus
    any of `ids` (comma-separated, the cards on the page) that have closed since."""
    rows = {a.id: a for a in _live_activations()}
    wanted = []
    for part in (request.args.get("ids") or "").split(",")[:MAX_FEED_IDS]:
        part = part.strip()
        # int() refuses '²'; ids past the column's range are no ids of ours (PostgreSQL
        # would refuse to compare them with an integer column).
        if part.isascii() and part.isdigit() and len(part) <= 10 and int(part) <= 2**31 - 1:
            wanted.append(int(part))
    closed = history.activations_by_id(current_user.id, set(wanted) - set(rows))
    rows.update(closed)
    response = jsonify(
        {
            "balance": format_amount(current_user.balance),
            "currency": current_app.config["CURRENCY"],
            "poll_interval": settings.get("poll_interval"),
            "activations": [
                {k: v for k, v in card(a).items() if k not in ("created_at", "closed_at")}
                for a in sorted(rows.values(), key=lambda a: a.id, reverse=True)
            ],
        }
    )
    response.headers["Cache-Control"] = "no-store"
    return response


# --- history and ledger ---------------------------------------------------------------


def _page_url(endpoint: str, page: int, **filters) -> str:
    params = {k: v for k, v in filters.items() if v}
    if page > 1:
        params["page"] = page
    return url_for(endpoint) + ("?" + urlencode(params) if params else "")


@bp.get("/history")
def history_page():
    used = history.services_used(current_user.id)
    form = HistoryFilterForm(request.args)
    form.status.choices = [("", "All statuses")] + [(s.value, STATUS_LABELS[s]) for s in S]
    form.service.choices = [("", "All services")] + [(c, service_name(c)) for c in used]
    status = form.status.data if form.status.data in {s.value for s in S} else ""
    service = form.service.data if form.service.data in used else ""
    stmt = history.activations_query(
        current_user.id, statuses=[status] if status else None, service=service or None
    )
    page = db.paginate(stmt, page=page_number(), per_page=HISTORY_PAGE_SIZE, error_out=False)
    filters = {"status": status, "service": service}
    return render_template(
        "dashboard/history.html",
        form=form,
        rows=[card(a) for a in page.items],
        page=page,
        filtered=bool(status or service),
        prev_url=_page_url(".history_page", page.prev_num, **filters) if page.has_prev else None,
        next_url=_page_url(".history_page", page.next_num, **filters) if page.has_next else None,
    )


@bp.get("/ledger")
def ledger():
    page = db.paginate(
        history.ledger_query(current_user.id),
        page=page_number(),
        per_page=LEDGER_PAGE_SIZE,
        error_out=False,
    )
    linked = history.activations_by_id(
        current_user.id, [e.activation_id for e in page.items if e.activation_id]
    )
    rows = []
    for entry in page.items:
        activation = linked.get(entry.activation_id)
        if activation is not None:
            detail = (
                f"{service_name(activation.service)}, {country_name(activation.country_id)}"
                + (f", +{activation.phone}" if activation.phone else "")
            )
        else:
            detail = entry.note or ""
        rows.append(
            {
                "entry": entry,
                "label": LEDGER_LABELS.get(entry.kind, entry.kind),
                "detail": detail,
                "activation_id": entry.activation_id,
            }
        )
    return render_template(
        "dashboard/ledger.html",
        rows=rows,
        page=page,
        prev_url=_page_url(".ledger", page.prev_num) if page.has_prev else None,
        next_url=_page_url(".ledger", page.next_num) if page.has_next else None,
    )


# --- account --------------------------------------------------------------------------


def _login_limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT"]


@bp.route("/account", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])  # the current password is a guessable secret
def account():
    form = ChangePasswordForm()
    if form.validate_on_submit():
        checked = accounts.authenticate(current_user.email, form.current_password.data)
        if checked is None or checked.id != current_user.id:
            form.current_password.errors.append("This is not your current password.")
        else:
            user = current_user._get_current_object()
            try:
                accounts.set_password(user, form.new_password.data)
            except accounts.AccountError as exc:
                form.new_password.errors.append(str(exc))
            else:
                login_user(user)  # this session goes on; every other one ends
                flash("Your password is changed. Other sessions are logged out.", "success")
                return redirect(url_for(".account"))
    return _render_account(form=form)


def _render_account(form=None, webhook_form=None, telegram_link=None):
    endpoint = webhooks.endpoint_for(current_user.id)
    if webhook_form is None:
        webhook_form = WebhookForm(formdata=None, url=endpoint.url if endpoint else None)
    return render_template(
        "dashboard/account.html",
        form=form or ChangePasswordForm(formdata=None),
        api_key=accounts.reveal_api_key(current_user),
        regenerate_form=PostForm(),
        webhook_form=webhook_form,
        webhook=endpoint,
        webhook_secret=webhooks.reveal_secret(endpoint) if endpoint else None,
        webhook_attempts=webhooks.recent_attempts(endpoint.id) if endpoint else [],
        webhook_queued=webhooks.queued_count(endpoint.id) if endpoint else 0,
        telegram_bot=telegram_accounts.bot_username(),
        telegram_account=telegram_accounts.account_of_user(current_user.id),
        telegram_link=telegram_link,
    )


def _webhook_limit() -> str:
    return "30 per minute"  # saving resolves the host name; testing queues a request


def _account_key() -> str:
    return f"account:{current_user.id}"


@bp.post("/account/webhook")
@limiter.limit(_webhook_limit, key_func=_account_key)
def webhook_save():
    form = WebhookForm()
    if form.validate_on_submit():
        was = webhooks.endpoint_for(current_user.id)
        paused = was is not None and was.paused_at is not None
        try:
            webhooks.save_url(current_user, form.url.data)
        except webhooks.WebhookError as exc:
            db.session.rollback()
            form.url.errors.append(str(exc))
        else:
            if was is None:
                message = "Webhook saved. Copy the signing secret below to verify our requests."
            elif paused:
                message = "Webhook saved and delivery resumed; waiting events go out now."
            else:
                message = "Webhook saved."
            flash(message, "success")
            return redirect(url_for(".account") + "#webhook")
    return _render_account(webhook_form=form)


def _webhook_action(action, done: str):
    form = PostForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        action(current_user)
    except webhooks.WebhookError as exc:
        db.session.rollback()
        flash(str(exc), "error")
    else:
        flash(done, "success")
    return redirect(url_for(".account") + "#webhook")


@bp.post("/account/webhook/test")
@limiter.limit(_webhook_limit, key_func=_account_key)
def webhook_test():
    return _webhook_action(
        webhooks.send_test,
        "A test event is queued: it is sent within seconds; reload to see the attempt below.",
    )


@bp.post("/account/webhook/secret")
def webhook_secret():
    return _webhook_action(
        webhooks.regenerate_secret,
        "A new signing secret was made; every request from now on is signed with it.",
    )


@bp.post("/account/webhook/remove")
def webhook_remove():
    return _webhook_action(webhooks.remove, "Webhook removed: no more events are sent.")


@bp.post("/account/telegram/link")
@limiter.limit(_webhook_limit, key_func=_account_key)
def telegram_link():
    """A one-time link that opens the bot and links this account (valid 15 minutes)."""
    if not PostForm().validate_on_submit():
        abort(400)
    bot = telegram_accounts.bot_username()
    if not bot:
        abort(404)
    payload = telegram_accounts.new_link(current_user)
    return _render_account(telegram_link=f"https://t.me/{bot}?start={payload}")


@bp.post("/account/telegram/unlink")
def telegram_unlink():
    if not PostForm().validate_on_submit():
        abort(400)
    if telegram_accounts.unlink(current_user):
        flash("Telegram is unlinked: the bot no longer uses this account.", "success")
    return redirect(url_for(".account") + "#telegram")
