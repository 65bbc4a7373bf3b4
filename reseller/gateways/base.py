"""The payment-gateway interface and the typed results it returns.

A gateway module speaks its wire format and knows nothing of our models: it creates
invoices, reads their state back, and turns a notification (raw body and headers) into a
verified `PaymentEvent` — checking the signature before anything else reads the body.
Amounts are `Decimal` in the invoice currency; converting to money units is the caller's.
"""

from __future__ import annotations

import abc
import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any


class InvoiceState(StrEnum):
    """What a gateway's word means for us."""

    PENDING = "pending"  # not paid (yet): waiting, confirming
    PARTIALLY_PAID = "partially_paid"  # less than the invoice arrived: never credited
    PAID = "paid"  # paid in full: credit
    EXPIRED = "expired"
    FAILED = "failed"
    REFUNDED = "refunded"


@dataclass(frozen=True)
class InvoiceRequest:
    """What we ask a gateway for. `order_id` is ours (the payment's reference)."""

    order_id: str
    amount: Decimal
    currency: str
    description: str
    callback_url: str  # our webhook for this gateway
    return_url: str  # where the customer comes back to
    site_url: str  # our root URL (the sandbox serves its pay page there)


@dataclass(frozen=True)
class Invoice:
    invoice_id: str
    pay_url: str
    lifetime: int  # seconds the customer has to pay
    status: str | None = None  # the gateway's word for it


@dataclass(frozen=True)
class PaymentEvent:
    """The gateway's verified word about one invoice (a notification or a check)."""

    gateway: str
    invoice_id: str
    state: InvoiceState
    gateway_status: str
    amount: Decimal | None = None  # the invoice amount the gateway signed
    currency: str | None = None
    order_id: str | None = None
    # A gateway-side payment id, when the event is about one payment made on the invoice
    # (NOWPayments: an invoice can carry several) rather than about the invoice itself.
    reference: str | None = None
    # What arrived at the gateway for this payment, in its words, once anything did (a
    # partial or still unconfirmed payment); None when nothing did.
    received: str | None = None
    body: str | None = None  # the verified notification as received (None for checks)
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Checked:
    """What a gateway check learnt: the events it could read, and for each invoice one of
    whose payments it could not read (a 4xx about it, an unreadable answer), why — that
    invoice's problem, never the batch's."""

    events: list[PaymentEvent] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)


class GatewayError(Exception):
    """Base for gateway failures."""


class GatewayUnavailable(GatewayError):
    """No usable answer (network, timeout, 5xx, garbage): try again later."""


class GatewayRefused(GatewayError):
    """The gateway answered with an error (bad key, bad parameters)."""


class BadNotification(GatewayError):
    """A notification we must not believe or cannot read; nothing may change."""


class BadSignature(BadNotification):
    pass


class MalformedNotification(BadNotification):
    pass


class Gateway(abc.ABC):
    """One payment gateway. Subclasses set `name` and `label` and implement the methods."""

    name: str = ""
    label: str = ""
    # Whether `check_invoices` can learn anything (reconciliation asks only those that can).
    can_check: bool = True
    # Settings without which `from_config` gives no instance (named in configuration errors).
    required_settings: tuple[str, ...] = ()
    # Offered in production only when PAYMENT_GATEWAYS names it.
    named_only: bool = False
    # Seconds a customer has to pay an invoice.
    lifetime: int = 3600
    # Paid inside a chat front-end (the Telegram bot), never offered on a web page.
    in_chat_only: bool = False
    # Whether `refund` can give a paid invoice's money back (the console's Refund).
    can_refund: bool = False

    @classmethod
    @abc.abstractmethod
    def from_config(cls, config: Mapping[str, Any]) -> Gateway | None:
        """An instance when the configuration holds this gateway's settings, else None."""

    @abc.abstractmethod
    def create_invoice(self, request: InvoiceRequest) -> Invoice:
        """Raises GatewayUnavailable or GatewayRefused."""

    @abc.abstractmethod
    def check_invoices(self, invoices: list[tuple[str, tuple[str, ...]]]) -> Checked:
        """The current state of invoices, each given with the references of the payments
        made on it that we know of; those it cannot tell are left out. Raises
        GatewayUnavailable or GatewayRefused when it cannot answer for the batch."""

    def refund(self, invoice_id: str, reference: str | None) -> None:
        """Give a paid invoice's money back to the payer. Raises GatewayRefused or
        GatewayUnavailable."""
        raise GatewayRefused(f"{self.label or self.name} payments cannot be refunded here")

    @abc.abstractmethod
    def verify_notification(self, body: bytes, headers: Mapping[str, str]) -> PaymentEvent:
        """The verified event in a notification; raises BadNotification (or a subclass)."""


def parse_json(body: bytes) -> dict:
    """The JSON object in a (verified) body; raises MalformedNotification."""
    try:
        data = json.loads(body, parse_constant=_not_json)
    except (ValueError, UnicodeDecodeError):
        raise MalformedNotification("the body is not JSON") from None
    if not isinstance(data, dict):
        raise MalformedNotification("the body is not a JSON object")
    return data


def _not_json(name: str):
    raise ValueError(f"{name} is not JSON")  # Python's json reads NaN and Infinity; JSON does not


def decimal_field(data: Mapping[str, Any], key: str) -> Decimal | None:
    value = data.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise MalformedNotification(f"{key} is not an amount")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise MalformedNotification(f"{key} is not an amount") from None
    if not amount.is_finite():
        raise MalformedNotification(f"{key} is not an amount")
    return amount


def text_field(data: Mapping[str, Any], key: str, *, required: bool = False) -> str | None:
    value = data.get(key)
    if value is None or value == "":
        if required:
            raise MalformedNotification(f"{key} is missing")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise MalformedNotification(f"{key} is not text")
    text = str(value)
    if len(text) > 100:
        raise MalformedNotification(f"{key} is too long")
    return text


def header(headers: Mapping[str, str], name: str) -> str:
    """A header's value, case-insensitively ('' when absent)."""
    getter = getattr(headers, "get", None)
    value = getter(name) if getter else None
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return (value or "").strip()


def utc_naive(value: str | None) -> dt.datetime | None:
    """An ISO 8601 timestamp as naive UTC (what we store); None when absent or unreadable."""
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed
