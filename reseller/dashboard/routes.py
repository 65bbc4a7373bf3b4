"""Dashboard views. They parse the request and render; the services decide, and buying goes
through `activations.buy_number`, the same money path as the API."""

from __future__ import annotations

import secrets
from urllib.parse import urlencode

from flask import abort, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user, login_user

from ..auth.forms import PostForm
from ..extensions import db, limiter, login_manager
from ..main import storefront
from ..models import Activation, LedgerKind, utcnow
from ..models import ActivationStatus as S
from ..money import format_amount, to_units
from ..pagination import page_number
from ..services import (
    accounts,
    activations,
    bulk,
    catalog,
    favourites,
    history,
    payments,
    pricing,
    settings,
    webhooks,
)
from ..services import errors as err
from ..services import telegram as telegram_accounts
from ..services.activations import PurchaseRequest
from ..services.bulk import MAX_QUANTITY
from . import bp
from .cards import STATUS_LABELS, card, cards, country_name, duration, service_name
from .forms import BuyForm, ChangePasswordForm, FavouriteForm, HistoryFilterForm, WebhookForm
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
    LedgerKind.RENT.value: "Number rented",
    LedgerKind.RENT_EXTENSION.value: "Rent extended",
    LedgerKind.RENT_REFUND.value: "Rent refund",
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


_money = storefront.money


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


def _order_key() -> str:
    # One key per Buy button per page load (dashboard.js draws new ones when the browser
    # shows the page again): the same button sent twice buys once, another button or a
    # later visit buys again.
    return f"web-{secrets.token_urlsafe(12)}"


def _offer_row(quote, name: str, iso: str, favourite: bool) -> dict:
    return {
        "quote": quote,
        "name": name,
        "iso": iso,
        "flag": storefront.flag(iso),
        "max_price": format_amount(quote.price),
        "order_id": _order_key(),
        "favourite": favourite,
        "affordable": quote.price <= current_user.balance,
    }


def _favourite_rows() -> list[dict]:
    """The customer's favourites with today's price (None when not on sale now)."""
    rows = []
    for fav in favourites.for_user(current_user.id):
        offer = pricing.offer(fav.service, fav.country_id)
        country = catalog.country(fav.country_id)
        name = country.name if country is not None else str(fav.country_id)
        iso = (country.iso if country is not None else None) or ""
        on_sale = (
            offer is not None
            and offer.service_enabled
            and offer.country_enabled
            and offer.quote is not None
            and offer.quote.count > 0
        )
        row = {
            "service": fav.service,
            "service_name": service_name(fav.service),
            "mark": storefront.service_mark(fav.service, service_name(fav.service)),
            "country_id": fav.country_id,
            "name": name,
            "flag": storefront.flag(iso),
            "offer": _offer_row(offer.quote, name, iso, True) if on_sale else None,
        }
        rows.append(row)
    return rows


@bp.get("")
def index():
    q = (request.args.get("q") or "").strip()[:60]
    selected = (request.args.get("service") or "").strip()[:40]
    sort = storefront.sort_key(request.args.get("sort"))
    view = "list" if request.args.get("view") == "list" else "cards"
    refused = (request.args.get("refused") or "").strip()[:10]

    offers = pricing.service_offers()
    # One search field: it narrows the services by name or code; a text that names no
    # service is taken as a country's name, and narrows the countries instead.
    shown = storefront.service_rows(offers, query=q)
    if not shown:
        shown = list(offers)
    if not selected and q and len(shown) == 1:
        selected = shown[0].service
    offer = next((o for o in offers if o.service == selected), None)
    if offer is not None and offer not in shown:
        shown.insert(0, offer)

    countries = []
    if offer is not None:
        country_q = "" if storefront.matches(q, offer.name, offer.service) else q
        fav_pairs = {(f.service, f.country_id) for f in favourites.for_user(current_user.id)}
        countries = [
            _offer_row(
                row.quote, row.name, row.iso, (offer.service, row.quote.country_id) in fav_pairs
            )
            for row in storefront.country_rows(offer.service, query=country_q, sort=sort)
        ]

    live = cards(a for a in _live_activations() if S(a.status) in activations.ACTIVE_STATES)
    page = render_template(
        "dashboard/index.html",
        activations=live,
        offers=shown,
        all_offers=len(offers),
        q=q,
        sort=sort,
        view=view,
        refused=refused,
        selected=offer,
        selected_code=selected,
        countries=countries,
        favourites=_favourite_rows(),
        mark=storefront.service_mark,
        max_quantity=min(MAX_QUANTITY, settings.get("max_active_activations")),
        topup_instructions=settings.get("topup_instructions"),
        gateways_running=bool(payments.offered()),
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


# Flashed next to the refused Buy button (dashboard/index.html), not at the top of the page.
REFUSED = "buy-refused"

BOUGHT_ONE = (
    "You bought {phone} for {service} ({country}) for {price}. The code appears below as "
    "soon as the SMS arrives."
)
BOUGHT_ALL = (
    "You bought {bought} {service} numbers ({country}) for {charged} in all. Their codes "
    "appear below as soon as the SMS arrive."
)
BOUGHT_SOME = (
    "Only {bought} of the {wanted} numbers were bought ({charged} charged for them; they are "
    "listed under “Your numbers”). The rest were not bought and not charged: {reason}"
)
QUANTITY_RANGE = "Choose how many numbers to buy: from 1 to {most}. Nothing was bought."


@bp.post("/buy")
def buy():
    form = BuyForm()
    service = (form.service.data or "").strip()
    country = (form.country.data or "").strip()
    if not form.validate_on_submit():
        if form.quantity.errors and not form.service.errors and not form.country.errors:
            flash(QUANTITY_RANGE.format(most=MAX_QUANTITY), REFUSED)
            return redirect(
                url_for(".index", service=service, refused=country) + f"#offer-{country}"
            )
        flash("Please choose a service and a country, then press Buy.", "error")
        return redirect(url_for(".index", service=service or None) + "#buy")
    quantity = form.quantity.data or 1
    purchase = PurchaseRequest(
        service=service,
        country=country,
        max_price=form.max_price.data,
        order_id=form.order_id.data or None,
    )
    result = bulk.buy_several(current_user, purchase, quantity)
    back = url_for(".index", service=service, refused=country) + f"#offer-{country}"
    if result.refusal is not None:
        exc = result.refusal
        context = _buy_context(service, country, form.max_price.data)
        if isinstance(exc, err.WrongMaxPrice):
            context["new_price"] = _money(exc.min_price)
        reason = failure(exc, "buy", **context)
        if not result.bought:
            flash(reason, REFUSED)
            return redirect(back)
        # Some were bought before the refusal: say both, honestly, where the customer looks.
        flash(
            BOUGHT_SOME.format(
                bought=len(result.bought),
                wanted=result.wanted,
                charged=_money(sum(a.price for a in result.bought)),
                reason=reason,
            ),
            REFUSED,
        )
        return redirect(back)
    if len(result.bought) == 1:
        shown = card(result.bought[0])
        flash(
            BOUGHT_ONE.format(
                phone=shown["phone"],
                service=shown["service_name"],
                country=shown["country_name"],
                price=_money(result.bought[0].price),
            ),
            "success",
        )
    else:
        flash(
            BOUGHT_ALL.format(
                bought=len(result.bought),
                service=service_name(service),
                country=country_name(result.bought[0].country_id),
                charged=_money(sum(a.price for a in result.bought)),
            ),
            "success",
        )
    first = result.bought[0]
    return redirect(url_for(".index", service=service) + f"#activation-{first.id}")


@bp.post("/favourites")
def favourite():
    form = FavouriteForm()
    if not form.validate_on_submit():
        abort(400)
    service, country = form.service.data.strip(), form.country.data.strip()
    if form.keep.data == "1":
        try:
            favourites.add(current_user, service, country)
        except favourites.FavouriteError:
            db.session.rollback()
            flash(
                "This favourite could not be kept: the list is full (remove one first) or the "
                "service or country is no longer sold.",
                "error",
            )
    else:
        favourites.remove(current_user, service, country)
    back = request.form.get("back") or ""
    target = url_for(".index", service=service) if back != "top" else url_for(".index")
    return redirect(target + ("#favourites" if back == "top" else f"#offer-{country}"))


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
                {k: v for k, v in shown.items() if k not in ("created_at", "closed_at")}
                for shown in cards(sorted(rows.values(), key=lambda a: a.id, reverse=True))
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
        rows=cards(page.items),
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
        elif entry.payment_id:
            detail = ""  # the page names the payment as the Top up page does: Payment #N
        else:
            detail = entry.note or ""
        rows.append(
            {
                "entry": entry,
                "label": LEDGER_LABELS.get(entry.kind, entry.kind),
                "detail": detail,
                "activation_id": entry.activation_id,
                "payment_id": entry.payment_id,
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
