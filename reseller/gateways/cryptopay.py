"""Crypto Pay, the merchant API of Telegram's CryptoBot (https://help.send.tg/en/articles/10279948).

Methods are paths under the API URL (`…/api/createInvoice`), authorised by the
`Crypto-Pay-API-Token` header, answering `{"ok": true, "result": …}` or
`{"ok": false, "error": {"code": …, "name": …}}`. We create fiat invoices in the wallet
currency (`currency_type=fiat`) that the customer pays in any accepted crypto asset.

Webhooks (set in @CryptoBot → Crypto Pay → My Apps → Webhooks) POST an update
`{update_id, update_type: "invoice_paid", request_date, payload: <Invoice>}`, signed in the
`crypto-pay-api-signature` header: hex HMAC-SHA256 of the raw body keyed with the SHA-256
digest of the API token.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from .base import (
    BadSignature,
    Checked,
    Gateway,
    GatewayRefused,
    GatewayUnavailable,
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
from .http import JsonClient

DEFAULT_URL = "https://pay.crypt.bot/api"
TESTNET_URL = "https://testnet-pay.crypt.bot/api"
SIGNATURE_HEADER = "crypto-pay-api-signature"
STATES = {
    "active": InvoiceState.PENDING,
    "paid": InvoiceState.PAID,
    "expired": InvoiceState.EXPIRED,
}
MAX_EXPIRES_IN = 2_678_400  # the API's limit: 31 days


class CryptoPay(Gateway):
    name = "cryptopay"
    label = "Crypto Pay (CryptoBot)"
    required_settings = ("CRYPTOPAY_API_TOKEN",)

    def __init__(
        self,
        token: str,
        *,
        url: str = DEFAULT_URL,
        accepted_assets: str = "",
        lifetime: int = 3600,
        connect_timeout: float = 5.0,
        read_timeout: float = 15.0,
    ):
        self._token = token
        # The webhook key: the SHA-256 digest of the token (not the token itself).
        self._signing_key = hashlib.sha256(token.encode()).digest()
        self.accepted_assets = ",".join(
            a.strip().upper() for a in accepted_assets.split(",") if a.strip()
        )
        self.lifetime = max(60, min(int(lifetime), MAX_EXPIRES_IN))
        self._http = JsonClient(url, connect_timeout=connect_timeout, read_timeout=read_timeout)

    def __repr__(self) -> str:
        return f"<CryptoPay {self._http.base_url}>"  # never the token

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> CryptoPay | None:
        if not config.get("CRYPTOPAY_API_TOKEN"):
            return None
        return cls(
            config["CRYPTOPAY_API_TOKEN"],
            url=config.get("CRYPTOPAY_API_URL") or DEFAULT_URL,
            accepted_assets=config.get("CRYPTOPAY_ACCEPTED_ASSETS") or "",
            lifetime=config.get("CRYPTOPAY_INVOICE_LIFETIME") or 3600,
            connect_timeout=config.get("PAYMENT_CONNECT_TIMEOUT", 5.0),
            read_timeout=config.get("PAYMENT_READ_TIMEOUT", 15.0),
        )

    # -- the API -------------------------------------------------------------------------

    def _call(self, method: str, params: dict[str, Any]) -> Any:
        data = self._http.call(
            "POST", method, headers={"Crypto-Pay-API-Token": self._token}, json=params
        )
        if not isinstance(data, dict) or "ok" not in data:
            raise GatewayUnavailable(f"{method}: unexpected answer")
        if not data["ok"]:
            error = data.get("error") or {}
            name = error.get("name") if isinstance(error, dict) else error
            raise GatewayRefused(f"{method}: {name or 'refused'}")
        return data.get("result")

    def create_invoice(self, request: InvoiceRequest) -> Invoice:
        params: dict[str, Any] = {
            "currency_type": "fiat",
            "fiat": request.currency.upper(),
            "amount": str(request.amount),
            "description": request.description[:1024],
            "payload": request.order_id,
            "expires_in": self.lifetime,
            "allow_comments": False,
            "paid_btn_name": "callback",
            "paid_btn_url": request.return_url,
        }
        if self.accepted_assets:
            params["accepted_assets"] = self.accepted_assets
        result = self._call("createInvoice", params)
        if not isinstance(result, dict):
            raise GatewayUnavailable("createInvoice: no invoice in the answer")
        invoice_id = result.get("invoice_id")
        pay_url = (
            result.get("bot_invoice_url")
            or result.get("web_app_invoice_url")
            or result.get("pay_url")
        )
        if invoice_id in (None, "") or not pay_url:
            raise GatewayUnavailable("createInvoice: no invoice id or payment URL")
        return Invoice(
            invoice_id=str(invoice_id),
            pay_url=str(pay_url),
            lifetime=self.lifetime,
            status=str(result.get("status") or "active"),
        )

    def check_invoices(self, invoices: list[tuple[str, tuple[str, ...]]]) -> Checked:
        if not invoices:
            return Checked()
        ids = ",".join(invoice_id for invoice_id, _references in invoices)
        result = self._call("getInvoices", {"invoice_ids": ids, "count": 1000})
        items = result.get("items") if isinstance(result, dict) else None
        if not isinstance(items, list):
            raise GatewayUnavailable("getInvoices: no items in the answer")
        checked = Checked()
        for item in items:
            try:
                checked.events.append(self._event(item, body=None))
            except MalformedNotification as exc:
                invoice_id = item.get("invoice_id") if isinstance(item, dict) else None
                if invoice_id is not None:
                    checked.unreadable[str(invoice_id)] = f"unreadable invoice: {exc}"
        return checked

    # -- notifications -------------------------------------------------------------------

    def verify_notification(self, body: bytes, headers: Mapping[str, str]) -> PaymentEvent:
        signature = header(headers, SIGNATURE_HEADER)
        expected = hmac.new(self._signing_key, body, hashlib.sha256).hexdigest()
        if not signature or not hmac.compare_digest(signature.lower(), expected):
            raise BadSignature("crypto-pay-api-signature does not match")
        update = parse_json(body)
        if update.get("update_type") != "invoice_paid":
            raise MalformedNotification(f"unknown update_type {update.get('update_type')!r}")
        payload = update.get("payload")
        if not isinstance(payload, dict):
            raise MalformedNotification("the update has no invoice")
        return self._event(payload, body=body.decode("utf-8", "replace"))

    def _event(self, invoice: Any, *, body: str | None) -> PaymentEvent:
        if not isinstance(invoice, dict):
            raise MalformedNotification("an invoice is not an object")
        status = text_field(invoice, "status", required=True)
        if status not in STATES:
            raise MalformedNotification(f"unknown invoice status {status!r}")
        if invoice.get("currency_type") == "fiat":
            currency = text_field(invoice, "fiat")
        else:
            currency = text_field(invoice, "asset")
        amount: Decimal | None = decimal_field(invoice, "amount")
        return PaymentEvent(
            gateway=self.name,
            invoice_id=text_field(invoice, "invoice_id", required=True),
            state=STATES[status],
            gateway_status=status,
            amount=amount,
            currency=currency,
            order_id=text_field(invoice, "payload"),
            body=body,
            details={
                k: invoice.get(k)
                for k in ("paid_asset", "paid_amount", "paid_at", "fee_amount")
                if invoice.get(k) is not None
            },
        )
