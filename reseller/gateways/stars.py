"""Telegram Stars (currency XTR): paid inside the bot's chat.

The bot sends the invoice (`sendInvoice` with one price and no provider token) whose payload
is this gateway's invoice id; Telegram answers with a `successful_payment` message in the
bot's own update stream — authenticated by the channel (our token's long poll, or the
webhook with its secret header), not by a signature. The payload names the order, the
wallet amount and its currency; the star count must be AMOUNT ÷ TELEGRAM_STARS_RATE rounded
up, or the event carries the amount the stars are worth (and the payment is flagged).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Any

from .base import (
    BadSignature,
    Gateway,
    GatewayRefused,
    Invoice,
    InvoiceRequest,
    InvoiceState,
    MalformedNotification,
    PaymentEvent,
    parse_json,
    text_field,
)
from .http import JsonClient

CURRENCY = "XTR"


def parse_rate(raw: Any) -> Decimal | None:
    """The wallet money one star buys, or None when unset or not a positive number."""
    if raw is None or str(raw).strip() == "":
        return None
    try:
        rate = Decimal(str(raw).strip())
    except InvalidOperation:
        return None
    return rate if rate.is_finite() and rate > 0 else None


class TelegramStars(Gateway):
    name = "stars"
    label = "Telegram Stars"
    can_check = False  # nothing to ask: Telegram tells the bot when it is paid
    can_refund = True  # refundStarPayment
    in_chat_only = True  # paid in the bot's chat, never from a web page
    required_settings = ("TELEGRAM_BOT_TOKEN", "TELEGRAM_STARS_RATE")
    lifetime = 3600

    def __init__(self, rate: Decimal, client: JsonClient | None = None):
        self.rate = rate
        self.client = client

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TelegramStars | None:
        rate = parse_rate(config.get("TELEGRAM_STARS_RATE"))
        token = config.get("TELEGRAM_BOT_TOKEN")
        if not token or rate is None:
            return None
        root = str(config.get("TELEGRAM_API_URL") or "https://api.telegram.org").rstrip("/")
        client = JsonClient(
            f"{root}/bot{token}",
            connect_timeout=float(config.get("PAYMENT_CONNECT_TIMEOUT", 5.0)),
            read_timeout=float(config.get("PAYMENT_READ_TIMEOUT", 15.0)),
        )
        return cls(rate, client)

    def stars_for(self, amount: Decimal) -> int:
        """Stars for a wallet amount: AMOUNT ÷ rate, rounded up."""
        return int((amount / self.rate).to_integral_value(rounding=ROUND_CEILING))

    def create_invoice(self, request: InvoiceRequest) -> Invoice:
        payload = f"{request.order_id}:{request.amount}:{request.currency}"
        return Invoice(invoice_id=payload, pay_url="", lifetime=self.lifetime, status="issued")

    def check_invoices(self, invoices: list[tuple[str, str | None]]) -> list[PaymentEvent]:
        return []

    @staticmethod
    def read_payload(payload: str) -> tuple[str, Decimal, str]:
        """(order id, amount, currency) from an invoice payload we issued."""
        try:
            order, amount, currency = payload.rsplit(":", 2)
            value = Decimal(amount)
        except (ValueError, InvalidOperation):
            raise MalformedNotification("not a payload of ours") from None
        if not value.is_finite() or value <= 0:
            raise MalformedNotification("not a payload of ours")
        return order, value, currency

    def verify_notification(self, body: bytes, headers: Mapping[str, str]) -> PaymentEvent:
        """Stars are never notified by a web request: a POST to the payment webhooks claiming
        one is refused (the bot reads them from its own update stream: `paid_event`)."""
        raise BadSignature("Telegram Stars payments arrive only through the bot's updates")

    def paid_event(self, body: bytes) -> PaymentEvent:
        """The event in a message with `successful_payment` as Telegram sent it to the bot
        (the channel — our token's long poll, or the webhook with its secret — vouches for
        it). Its reference is "<payer's Telegram id>:<telegram_payment_charge_id>", what a
        refund needs. Raises MalformedNotification."""
        message = parse_json(body)
        payer = (message.get("from") or {}).get("id")
        data = message.get("successful_payment")
        if isinstance(payer, bool) or not isinstance(payer, int) or not isinstance(data, dict):
            raise MalformedNotification("not a message with a successful_payment")
        payload = text_field(data, "invoice_payload", required=True)
        charge = data.get("telegram_payment_charge_id")
        if not isinstance(charge, str) or not charge or len(charge) > 200:
            raise MalformedNotification("telegram_payment_charge_id is missing")
        if data.get("currency") != CURRENCY:
            raise MalformedNotification("not a Stars payment")
        total = data.get("total_amount")
        if isinstance(total, bool) or not isinstance(total, int) or total <= 0:
            raise MalformedNotification("total_amount is not a number of stars")
        order, amount, currency = self.read_payload(payload)
        worth = amount if total == self.stars_for(amount) else Decimal(total) * self.rate
        return PaymentEvent(
            gateway=self.name,
            invoice_id=payload,
            state=InvoiceState.PAID,
            gateway_status="paid",
            amount=worth,
            currency=currency,
            order_id=order,
            reference=f"{payer}:{charge}",
            body=body.decode(),
            details={"stars": total, "charge_id": charge, "payer": payer},
        )

    def refund(self, invoice_id: str, reference: str | None) -> None:
        payer, _, charge = (reference or "").partition(":")
        if not payer.isdigit() or not charge or self.client is None:
            raise GatewayRefused("no Telegram charge to refund")
        answer = self.client.call(
            "POST",
            "refundStarPayment",
            headers={},
            json={"user_id": int(payer), "telegram_payment_charge_id": charge},
        )
        if not isinstance(answer, dict) or answer.get("ok") is not True:
            raise GatewayRefused(f"Telegram refused: {(answer or {}).get('description')}")
