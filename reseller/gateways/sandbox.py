"""The sandbox gateway: the whole payment flow with no account anywhere and no real money.

Its invoice is a page of our own (`/payments/sandbox/<invoice_id>`) with a "Pay" button;
paying makes the sandbox sign a notification exactly as a real gateway would, and that
notification goes through the same verification and crediting path as any other. It is
offered in development and testing, and in production only when PAYMENT_GATEWAYS names it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from .base import (
    BadSignature,
    Checked,
    Gateway,
    Invoice,
    InvoiceRequest,
    InvoiceState,
    MalformedNotification,
    PaymentEvent,
    decimal_field,
    header,
    parse_json,
    text_field,
)

SIGNATURE_HEADER = "X-Sandbox-Signature"
PAY_PATH = "payments/sandbox/"


class SandboxGateway(Gateway):
    name = "sandbox"
    label = "Sandbox (no real money)"
    required_settings = ()
    named_only = True  # in production, only when PAYMENT_GATEWAYS names it
    can_check = False  # the sandbox keeps no invoices: only its notifications say "paid"

    def __init__(self, secret_key: str, *, lifetime: int = 3600):
        # Its own key, derived from SECRET_KEY: a sandbox signature proves nothing elsewhere.
        self._key = hmac.new(secret_key.encode(), b"sandbox-payments", hashlib.sha256).digest()
        self.lifetime = int(lifetime)

    def __repr__(self) -> str:
        return "<SandboxGateway>"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SandboxGateway | None:
        if not config.get("SECRET_KEY"):
            return None
        return cls(config["SECRET_KEY"], lifetime=config.get("SANDBOX_INVOICE_LIFETIME") or 3600)

    def create_invoice(self, request: InvoiceRequest) -> Invoice:
        invoice_id = "sbx_" + secrets.token_urlsafe(12)
        return Invoice(
            invoice_id=invoice_id,
            pay_url=request.site_url.rstrip("/") + "/" + PAY_PATH + invoice_id,
            lifetime=self.lifetime,
            status="waiting",
        )

    def check_invoices(self, invoices: list[tuple[str, tuple[str, ...]]]) -> Checked:
        return Checked()

    def notification(
        self, invoice_id: str, amount: Decimal, currency: str, order_id: str
    ) -> tuple[bytes, dict[str, str]]:
        """The signed "paid" notification the sandbox sends when the customer presses Pay."""
        body = json.dumps(
            {
                "invoice_id": invoice_id,
                "status": "paid",
                "amount": str(amount),
                "currency": currency,
                "order_id": order_id,
            }
        ).encode()
        signature = hmac.new(self._key, body, hashlib.sha256).hexdigest()
        return body, {SIGNATURE_HEADER: signature, "Content-Type": "application/json"}

    def verify_notification(self, body: bytes, headers: Mapping[str, str]) -> PaymentEvent:
        signature = header(headers, SIGNATURE_HEADER)
        expected = hmac.new(self._key, body, hashlib.sha256).hexdigest()
        if not signature or not hmac.compare_digest(signature.lower(), expected):
            raise BadSignature("X-Sandbox-Signature does not match")
        data = parse_json(body)
        if data.get("status") != "paid":
            raise MalformedNotification("the sandbox only says paid")
        return PaymentEvent(
            gateway=self.name,
            invoice_id=text_field(data, "invoice_id", required=True),
            state=InvoiceState.PAID,
            gateway_status="paid",
            amount=decimal_field(data, "amount"),
            currency=text_field(data, "currency"),
            order_id=text_field(data, "order_id"),
            body=body.decode("utf-8", "replace"),
        )
