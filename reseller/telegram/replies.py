"""What the bot answers, as data: text, buttons, an invoice. The async side sends it.

Every text goes through gettext (the catalogues under reseller/translations); rendering
happens inside `i18n.in_language(...)`, in the user's language.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import current_app
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from ..models import Activation
from ..models import ActivationStatus as S
from ..money import format_amount
from ..services import activations, catalog


@dataclass(frozen=True)
class Button:
    label: str
    data: str | None = None  # callback data (at most 64 bytes)
    url: str | None = None


@dataclass(frozen=True)
class StarsInvoice:
    title: str
    description: str
    payload: str
    stars: int
    label: str


@dataclass
class Reply:
    text: str = ""
    buttons: list[list[Button]] = field(default_factory=list)
    # For a button press: replace the pressed message instead of sending a new one.
    edit: bool = False
    # For a button press: the short notice answerCallbackQuery shows.
    notice: str | None = None
    # The activation this message shows: its message id is kept, to edit it later.
    number: int | None = None
    invoice: StarsInvoice | None = None


def money(units: int) -> str:
    return f"{format_amount(units)} {current_app.config['CURRENCY']}"


def country_name(country_id: int) -> str:
    country = catalog.country(country_id)
    return country.name if country is not None else str(country_id)


def service_name(code: str) -> str:
    service = catalog.service(code)
    return service.name if service is not None else code


STATUS = {
    S.PENDING: _l("buying…"),
    S.UNKNOWN: _l("being checked"),
    S.ALLOCATED: _l("waiting for the SMS"),
    S.CODE_RECEIVED: _l("code received"),
    S.RETRY_WAIT: _l("waiting for another SMS"),
    S.COMPLETED: _l("completed"),
    S.CANCELLED: _l("cancelled, money returned"),
    S.EXPIRED: _l("expired, money returned"),
    S.FAILED: _l("failed, money returned"),
}


def number_reply(activation: Activation) -> Reply:
    """The number's message: phone, service, country, price, time left, id, the code, and
    the buttons its state allows."""
    status = S(activation.status)
    lines = [
        f"📱 +{activation.phone}" if activation.phone else "📱 …",
        _("Service: %(name)s", name=service_name(activation.service)),
        _("Country: %(name)s", name=country_name(activation.country_id)),
        _("Price: %(price)s", price=money(activation.price)),
    ]
    if status in activations.ACTIVE_STATES:
        minutes = (activations.lifetime_left(activation) + 59) // 60
        lines.append(_("Time left: %(minutes)s min", minutes=minutes))
    lines.append(_("Activation: #%(id)s", id=activation.id))
    lines.append(_("Status: %(status)s", status=STATUS[status]))
    if activation.code:
        lines.append(_("Code: %(code)s", code=activation.code))
    row: list[Button] = []
    if status == S.ALLOCATED:
        row.append(Button(_("Cancel"), data=f"act:cancel:{activation.id}"))
    if status == S.CODE_RECEIVED:
        row.append(Button(_("Another SMS"), data=f"act:retry:{activation.id}"))
    if status in (S.CODE_RECEIVED, S.RETRY_WAIT):
        row.append(Button(_("Complete"), data=f"act:done:{activation.id}"))
    return Reply("\n".join(lines), [row] if row else [], number=activation.id)


def code_pushed(activation: Activation) -> str:
    return _(
        "Code for #%(id)s (+%(phone)s, %(service)s): %(code)s",
        id=activation.id,
        phone=activation.phone or "",
        service=service_name(activation.service),
        code=activation.code or "",
    )


def expired_pushed(activation: Activation) -> str:
    return _(
        "Number +%(phone)s (#%(id)s) expired without an SMS; %(price)s returned to your balance.",
        phone=activation.phone or "",
        id=activation.id,
        price=money(activation.price),
    )


# The services' failures in the user's language, by kind (services.errors).
FAILURES = {
    "ACCOUNT_INACTIVE": _l("This account is disabled. Please contact support."),
    "BAD_SERVICE": _l("Unknown or unavailable service."),
    "BAD_COUNTRY": _l("Unknown or unavailable country."),
    "NO_BALANCE": _l("Your balance is too low for this number. Top up with /topup."),
    "NO_NUMBERS": _l("No numbers available for this service and country right now."),
    "SERVICE_UNAVAILABLE": _l("The provider is unavailable; try again soon."),
    "ACTIVATION_NOT_FOUND": _l("No such activation."),
    "BAD_STATUS": _l("This is not possible in the number's current state."),
    "EARLY_CANCEL_DENIED": _l("Too early to cancel; try again in a couple of minutes."),
    "TOO_MANY_ACTIVATIONS": _l("Too many numbers at once: finish or cancel some first."),
    "BAD_PARAMETER": _l("Something in that command is malformed."),
    "LINK_INVALID": _l("This link is not valid: it expired or was used. Make a new one."),
    "LINK_REFUSED": _l(
        "This Telegram account already has its own account with money or history, so it "
        "cannot be linked to another one. Nothing was changed."
    ),
    "LINK_TAKEN": _l(
        "That web account is already linked to another Telegram user. Unlink it on the "
        "Account page first."
    ),
    "BAD_AMOUNT": _l("Enter an amount between %(minimum)s and %(maximum)s."),
    "BAD_GATEWAY": _l("This payment method is not offered."),
    "INVOICE_FAILED": _l(
        "The payment provider could not create an invoice. Nothing was charged; try again."
    ),
    "TOO_MANY_TOPUPS": _l("You started many top-ups in the last hour; try again later."),
}
SOMETHING_WENT_WRONG = _l("Sorry, something went wrong. Please try again in a moment.")
TOO_FAST = _l("Slow down a little: too many messages. Try again in %(seconds)s s.")
