"""The bot's views: one update in, the answers out (`replies.Reply`).

Synchronous code run in a worker thread with an app context (`runtime.Services`): it
parses what the user sent, calls the same services as the dashboard and the API
(activations, wallet, pricing, payments, services.telegram) and renders their answers in
the user's language. No SQL, pricing or wallet arithmetic here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import current_app
from flask_babel import gettext as _

from .. import i18n
from ..extensions import db, limiter
from ..models import ActivationStatus as S
from ..models import PaymentStatus
from ..money import to_decimal
from ..rate_limits import RateLimitExceeded
from ..services import accounts, activations, catalog, history, payments, pricing, settings
from ..services import errors as err
from ..services import telegram as tg
from ..services.activations import PurchaseRequest
from .replies import (
    FAILURES,
    SOMETHING_WENT_WRONG,
    STATUS,
    TOO_FAST,
    Button,
    Reply,
    StarsInvoice,
    country_name,
    money,
    number_reply,
    service_name,
)

log = logging.getLogger(__name__)

PAGE = 8  # buttons per picker page
STARS = "stars"


# --- entry points (called by the async handlers) -------------------------------------------


def on_message(sender: tg.TelegramUser, text: str) -> list[Reply]:
    """A text message: a command (`/buy tg ru`) or, otherwise, a service search."""
    return _guarded(sender, lambda account: _message(account, sender, text or ""))


def on_callback(sender: tg.TelegramUser, data: str) -> list[Reply]:
    """A button press; the first reply answers it (its `notice`, and `edit` to replace the
    pressed message)."""
    return _guarded(sender, lambda account: _callback(account, data or ""), pressed=True)


def on_pre_checkout(sender: tg.TelegramUser, payload: str, currency: str, total: int) -> str | None:
    """None to accept a Stars checkout; else the reason shown to the user. Accepted only for
    a payload we issued to this user, unpaid, for exactly that many stars."""
    account = tg.account(sender.id)
    language = account.language if account else sender.language_code
    with i18n.in_language(language):
        gateway = payments.available().get(STARS)
        payment = payments.find(STARS, payload) if gateway is not None else None
        if (
            account is None
            or payment is None
            or payment.user_id != account.user_id
            or payment.status != PaymentStatus.PENDING.value
            or currency != "XTR"
            or total != gateway.stars_for(to_decimal(payment.amount))
        ):
            log.warning("telegram: refused a Stars checkout from %s (%r)", sender.id, payload)
            return _("This invoice is no longer valid. Start a new top-up with /topup.")
        return None


def on_successful_payment(sender: tg.TelegramUser, body: bytes) -> list[Reply]:
    """Telegram says a Stars invoice is paid: credit it, exactly once (payments.apply_event:
    the guarded pending → paid move and the unique ledger row)."""
    account = tg.account_for(sender)
    with i18n.in_language(account.language or sender.language_code):
        gateway = payments.available().get(STARS)
        if gateway is None:
            log.error("telegram: a Stars payment arrived but Stars are not configured")
            return [Reply(str(SOMETHING_WENT_WRONG))]
        try:
            event = gateway.paid_event(body)
            outcome = payments.apply_event(event, source="telegram")
        except Exception:  # unreadable, or not an invoice of ours: logged for the operator
            db.session.rollback()
            log.exception("telegram: a Stars payment from %s could not be applied", sender.id)
            return [Reply(str(SOMETHING_WENT_WRONG))]
        tg.record_star_charge(
            outcome.payment_id,
            event.details["charge_id"],
            event.details["payer"],
            int(event.details["stars"]),
        )
        balance = db.session.get(accounts.User, account.user_id).balance
        if outcome.result == "credited":
            return [Reply(_("Paid, thank you! Your balance: %(balance)s", balance=money(balance)))]
        if outcome.result == "duplicate":
            return [
                Reply(
                    _(
                        "This payment was already credited. Your balance: %(balance)s",
                        balance=money(balance),
                    )
                )
            ]
        return [Reply(_("We received your payment; the operator is checking it. Nothing is lost."))]


def _guarded(sender, handle: Callable, pressed: bool = False) -> list[Reply]:
    """Rate limit, find or make the sender's account, answer in their language; any
    failure answers with a friendly message (and is logged)."""
    language = sender.language_code
    try:
        limiter.hit(
            current_app.config["TELEGRAM_RATE_LIMIT"],
            accounts.private_digest(f"telegram:{sender.id}"),
            "telegram",
        )
        account = tg.account_for(sender)
        language = account.language or sender.language_code
        with i18n.in_language(language):
            if not _customer(account).active:
                return [Reply(str(FAILURES["ACCOUNT_INACTIVE"]), notice="…")]
            return handle(account)
    except RateLimitExceeded as exc:
        with i18n.in_language(language):
            return [Reply(str(TOO_FAST % {"seconds": exc.retry_after}), notice="…")]
    except Exception:
        db.session.rollback()
        log.exception("telegram: update from %s failed", sender.id)
        with i18n.in_language(language):
            return [Reply(str(SOMETHING_WENT_WRONG), notice=str(SOMETHING_WENT_WRONG))]


def _failure(exc: err.ServiceError) -> str:
    db.session.rollback()
    text = FAILURES.get(exc.kind)
    if text is None:
        return str(SOMETHING_WENT_WRONG)
    if exc.kind == "BAD_AMOUNT":
        rules = payments.limits()
        return str(text % {"minimum": money(rules.minimum), "maximum": money(rules.maximum)})
    return str(text)


# --- commands ------------------------------------------------------------------------------


def _parse_command(text: str) -> tuple[str | None, list[str]]:
    """("buy", ["tg", "ru"]) for "/buy@our_bot tg ru"; (None, words) for plain text."""
    words = text.split()
    if not words or not words[0].startswith("/"):
        return None, words
    return words[0][1:].split("@", 1)[0].lower(), words[1:]


def _message(account, sender, text: str) -> list[Reply]:
    command, args = _parse_command(text)
    if command is None:
        return [_search(text.strip())]
    handler = COMMANDS.get(command)
    if handler is None:
        return [_help()]
    return handler(account, sender, args)


def _start(account, sender, args) -> list[Reply]:
    if args:
        try:
            account = tg.link(sender, args[0])
        except tg.LinkError as exc:
            return [Reply(_failure(exc))]
        user = db.session.get(accounts.User, account.user_id)
        return [
            Reply(
                _(
                    "Linked! This chat now uses the account %(email)s. Balance: %(balance)s",
                    email=user.email,
                    balance=money(user.balance),
                ),
                _menu(),
            )
        ]
    return [
        Reply(
            _(
                "Welcome to %(site)s! Buy virtual numbers for SMS verification here: the same "
                "wallet, prices and numbers as on the website.",
                site=settings.get("site_name") or current_app.config["SITE_NAME"],
            )
            + "\n\n"
            + _commands_text(),
            _menu(),
        )
    ]


def _menu() -> list[list[Button]]:
    return [
        [Button(_("Buy a number"), data="menu:buy"), Button(_("Balance"), data="menu:balance")],
        [Button(_("Top up"), data="menu:topup"), Button(_("Active numbers"), data="menu:active")],
        [Button(_("History"), data="menu:history"), Button(_("Language"), data="menu:lang")],
    ]


def _commands_text() -> str:
    return "\n".join(
        [
            _("/buy [SERVICE [COUNTRY]] — buy a number"),
            _("/balance — your balance"),
            _("/active — your numbers waiting for a code"),
            _("/cancel ID — cancel a number"),
            _("/history — your latest numbers"),
            _("/topup [AMOUNT] — add money"),
            _("/lang [CODE] — language"),
            _("/api — your API key"),
            _("/help — this list"),
        ]
    )


def _help(*_args) -> Reply:
    return Reply(_commands_text(), _menu())


def _balance(account, *_args) -> list[Reply]:
    user = db.session.get(accounts.User, account.user_id)
    return [
        Reply(
            _("Your balance: %(balance)s", balance=money(user.balance)),
            [[Button(_("Top up"), data="menu:topup"), Button(_("Buy a number"), data="menu:buy")]],
        )
    ]


def _buy(account, sender, args) -> list[Reply]:
    if not args:
        return [_services_page(0)]
    if len(args) == 1:
        return [_countries_page(args[0].lower(), 0)]
    return [_purchase(account, args[0].lower(), args[1])]


def _purchase(account, service: str, country: str) -> Reply:
    try:
        activation = activations.buy_number(
            _customer(account), PurchaseRequest(service=service, country=country)
        )
    except err.ServiceError as exc:
        return Reply(_failure(exc))
    return number_reply(activation)


def _customer(account):
    return db.session.get(accounts.User, account.user_id)


def _active(account, *_args) -> list[Reply]:
    found = activations.active_for_user(_customer(account))
    if not found:
        return [Reply(_("You have no active numbers. Buy one with /buy."))]
    return [number_reply(a) for a in found[:10]]


def _cancel(account, sender, args) -> list[Reply]:
    if not args:
        return [Reply(_("Which one? Send /cancel ID (the number's activation id)."))]
    return [_act(account, "cancel", args[0])]


def _act(account, operation: str, raw_id: str, *, pressed: bool = False) -> Reply:
    user = _customer(account)
    try:
        activation = activations.get_for_user(user, raw_id)
        if operation == "cancel":
            activation = activations.cancel(activation)
            notice = _("Cancelled: %(price)s returned.", price=money(activation.price))
        elif operation == "retry":
            activation = activations.request_another_sms(activation)
            notice = _("Waiting for another SMS.")
        elif operation == "done":
            activation = activations.complete(activation)
            notice = _("Completed.")
        else:
            activation = activations.status_for_user(user, raw_id)
            notice = None
    except err.ServiceError as exc:
        text = _failure(exc)
        return Reply(notice=text) if pressed else Reply(text)
    reply = number_reply(activation)
    reply.notice, reply.edit = notice, pressed
    if not pressed and notice:
        reply.text = notice + "\n\n" + reply.text
    return reply


def _history(account, *_args) -> list[Reply]:
    rows = history.recent_activations(account.user_id, 10)
    if not rows:
        return [Reply(_("No numbers yet. Buy one with /buy."))]
    lines = [
        f"#{a.id} +{a.phone or '…'} {service_name(a.service)} · {money(a.price)} · "
        f"{STATUS[S(a.status)]}" + (f" · {a.code}" if a.code else "")
        for a in rows
    ]
    return [Reply("\n".join(lines))]


def _api(account, *_args) -> list[Reply]:
    key = accounts.reveal_api_key(_customer(account)) or "—"
    root = (current_app.config.get("PUBLIC_URL") or "").rstrip("/")
    lines = [_("Your API key: %(key)s", key=key)]
    if root:
        lines.append(_("Documentation: %(url)s", url=root + "/docs"))
    return [Reply("\n".join(lines))]


def _lang(account, sender, args) -> list[Reply]:
    if args:
        code = i18n.supported(args[0])
        if code is None:
            return [_languages(_("Unknown language. Choose one:"))]
        return [_set_language(account, code)]
    return [_languages(_("Choose your language:"))]


def _languages(text: str) -> Reply:
    return Reply(
        text, [[Button(name, data=f"lang:{code}") for code, name in i18n.LANGUAGES.items()]]
    )


def _set_language(account, code: str) -> Reply:
    tg.set_language(account.id, code)
    with i18n.in_language(code):
        done = _("Language: %(name)s", name=i18n.LANGUAGES[code])
        return Reply(done, _menu(), notice=done)


# --- top-ups ---------------------------------------------------------------------------------


def _topup(account, sender, args) -> list[Reply]:
    rules = payments.limits()
    if not args:
        presets = [Button(money(p), data=f"topup:{p}") for p in rules.presets]
        return [
            Reply(
                _(
                    "How much? Send /topup AMOUNT (%(minimum)s to %(maximum)s), or choose:",
                    minimum=money(rules.minimum),
                    maximum=money(rules.maximum),
                ),
                [presets[i : i + 4] for i in range(0, len(presets), 4)],
            )
        ]
    try:
        amount = payments.parse_topup_amount(args[0])
    except payments.TopUpError as exc:
        return [Reply(_failure(exc))]
    return [_pay_with(amount)]


def _pay_with(amount: int) -> Reply:
    offered = payments.offered(in_chat=True)
    if not offered:
        return Reply(_("Top-ups are not available at the moment."))
    rows = [[Button(_gateway_label(g), data=f"pay:{g.name}:{amount}")] for g in offered]
    return Reply(_("Top up %(amount)s with:", amount=money(amount)), rows)


def _gateway_label(gateway) -> str:
    if gateway.name == STARS:
        return _("Telegram Stars ⭐")
    return gateway.label


def _pay(account, gateway_name: str, raw_amount: str) -> Reply:
    if not (raw_amount.isascii() and raw_amount.isdigit()):
        return Reply(str(SOMETHING_WENT_WRONG))
    amount = int(raw_amount)
    user = _customer(account)
    try:
        payment = payments.start_topup(
            user, amount, gateway_name, _urls(gateway_name), in_chat=True
        )
    except payments.TopUpError as exc:
        text = _failure(exc)
        return Reply(text, notice=text)
    if gateway_name == STARS:
        gateway = payments.available()[STARS]
        stars = gateway.stars_for(to_decimal(amount))
        title = _("Top-up of %(amount)s", amount=money(amount))
        return Reply(
            notice=_("Invoice sent."),
            invoice=StarsInvoice(
                title=title[:32],
                description=_(
                    "%(amount)s to your balance at %(site)s.",
                    amount=money(amount),
                    site=settings.get("site_name") or current_app.config["SITE_NAME"],
                )[:255],
                payload=payment.invoice_id,
                stars=stars,
                label=title[:32],
            ),
        )
    return Reply(
        _(
            "Pay %(amount)s here; your balance is credited as soon as it is paid.",
            amount=money(amount),
        ),
        [[Button(_("Pay"), url=payment.pay_url)]],
        notice=_("Invoice created."),
    )


def _urls(gateway: str) -> payments.Urls:
    root = (current_app.config.get("PUBLIC_URL") or "http://localhost").rstrip("/")
    adapter = current_app.url_map.bind("localhost")
    return payments.Urls(
        callback=root + adapter.build("payments.webhook", {"gateway": gateway}),
        back=root + adapter.build("dashboard.topup"),
        site=root + "/",
    )


# --- pickers ---------------------------------------------------------------------------------


def _search(text: str) -> Reply:
    if not text:
        return _help()
    needle = text.lower()
    found = [o for o in _popular() if needle in o.name.lower() or needle == o.service.lower()]
    if not found:
        return Reply(_("No service matches “%(text)s”. Try /buy for the list.", text=text[:50]))
    return _services_reply(found[:PAGE], _("Services matching “%(text)s”:", text=text[:50]), [])


def _popular() -> list[pricing.ServiceOffer]:
    return sorted(pricing.service_offers(), key=lambda o: (-o.count, o.name.lower()))


def _services_page(page: int) -> Reply:
    offers = _popular()
    chunk = offers[page * PAGE : (page + 1) * PAGE]
    if not chunk:
        return Reply(_("Nothing is on sale right now. Please try again later."))
    nav = []
    if page > 0:
        nav.append(Button("‹", data=f"svcs:{page - 1}"))
    if (page + 1) * PAGE < len(offers):
        nav.append(Button("›", data=f"svcs:{page + 1}"))
    return _services_reply(
        chunk, _("Choose a service (or type its name to search):"), [nav] if nav else []
    )


def _services_reply(chunk, text: str, nav) -> Reply:
    rows = [
        [
            Button(
                _("%(name)s · from %(price)s", name=o.name, price=money(o.from_price)),
                data=f"svc:{o.service}:0",
            )
        ]
        for o in chunk
        if o.from_price is not None
    ]
    return Reply(text, rows + nav)


def _countries_page(service: str, page: int) -> Reply:
    found = catalog.service(service)
    if found is None or not found.enabled:
        return Reply(str(FAILURES["BAD_SERVICE"]))
    quotes = sorted(pricing.price_table(service), key=lambda q: (-q.count, q.price))
    chunk = quotes[page * PAGE : (page + 1) * PAGE]
    if not chunk:
        return Reply(str(FAILURES["NO_NUMBERS"]))
    rows = [
        [
            Button(
                _(
                    "%(country)s · %(price)s · %(count)s pcs",
                    country=country_name(q.country_id),
                    price=money(q.price),
                    count=q.count,
                ),
                data=f"buy:{service}:{q.country_id}",
            )
        ]
        for q in chunk
    ]
    nav = []
    if page > 0:
        nav.append(Button("‹", data=f"svc:{service}:{page - 1}"))
    if (page + 1) * PAGE < len(quotes):
        nav.append(Button("›", data=f"svc:{service}:{page + 1}"))
    nav.append(Button(_("Back"), data="svcs:0"))
    return Reply(_("%(service)s: choose a country", service=found.name), rows + [nav])


# --- button presses --------------------------------------------------------------------------


def _callback(account, data: str) -> list[Reply]:
    parts = data.split(":")
    kind, rest = parts[0], parts[1:]
    if kind == "act" and len(rest) == 2:
        return [_act(account, rest[0], rest[1], pressed=True)]
    if kind == "svcs" and len(rest) == 1 and rest[0].isdigit():
        return [_edited(_services_page(int(rest[0])))]
    if kind == "svc" and len(rest) == 2 and rest[1].isdigit():
        return [_edited(_countries_page(rest[0], int(rest[1])))]
    if kind == "buy" and len(rest) == 2:
        reply = _purchase(account, rest[0], rest[1])
        if reply.number is None:  # refused: the reason as the press's notice, and in the chat
            reply.notice = reply.text
        return [reply]
    if kind == "lang" and len(rest) == 1 and rest[0] in i18n.LANGUAGES:
        return [_set_language(account, rest[0])]
    if kind == "topup" and len(rest) == 1 and rest[0].isdigit():
        return [_pay_with(int(rest[0]))]
    if kind == "pay" and len(rest) == 2:
        return [_pay(account, rest[0], rest[1])]
    if kind == "menu" and len(rest) == 1 and rest[0] in MENU:
        return MENU[rest[0]](account, None, [])
    return [Reply(notice=_("This button is no longer valid."))]


def _edited(reply: Reply) -> Reply:
    reply.edit = True
    return reply


COMMANDS: dict[str, Callable] = {
    "start": _start,
    "help": lambda *a: [_help()],
    "balance": _balance,
    "buy": _buy,
    "active": _active,
    "cancel": _cancel,
    "history": _history,
    "topup": _topup,
    "lang": _lang,
    "api": _api,
}
MENU = {
    "buy": _buy,
    "balance": _balance,
    "topup": _topup,
    "active": _active,
    "history": _history,
    "lang": _lang,
}
