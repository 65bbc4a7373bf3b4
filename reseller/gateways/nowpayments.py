"""NOWPayments (https://documenter.getpostman.com/view/7907941/2s93JusNJt).

`POST /invoice` with the `x-api-key` header creates a hosted invoice in the wallet currency
(`price_amount`, `price_currency`) and returns its `invoice_url`. Each payment made on it is
reported to `ipn_callback_url` as an IPN: the payment as JSON (`payment_id`, `invoice_id`,
`payment_status`, `price_amount`, `price_currency`, `order_id`, …), signed in the
`x-nowpayments-sig` header: hex HMAC-SHA512 of the body re-serialised with its keys sorted
as JavaScript's JSON.stringify writes it (`js_json`), keyed with the IPN secret. Only
`finished` means paid; `partially_paid`, `failed`, `expired` and `refunded` are recorded,
never credited.

An invoice can carry several payments (the customer may try again after one failed or
expired); each has its own `payment_id`. `GET /payment/{payment_id}` (API key only) reads
one back, so every payment we have heard of once is reconciled even when its final IPN is
lost; a 4xx for one (PAYMENT_NOT_FOUND) is that invoice's problem, not the batch's.
Listing the payments of an invoice (`GET /payment/?invoiceId=…`) needs a bearer token from
`POST /auth` with the account's e-mail and password: with NOWPAYMENTS_EMAIL and
NOWPAYMENTS_PASSWORD set, the worker lists each invoice's payments instead, so payments
that never produced any IPN are reconciled too; without them those are left to
NOWPayments' own IPN retries and to expiry.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from . import js_json
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

DEFAULT_URL = "https://api.nowpayments.io/v1"
SIGNATURE_HEADER = "x-nowpayments-sig"
STATES = {
    "waiting": InvoiceState.PENDING,
    "confirming": InvoiceState.PENDING,
    "confirmed": InvoiceState.PENDING,
    "sending": InvoiceState.PENDING,
    "partially_paid": InvoiceState.PARTIALLY_PAID,
    "finished": InvoiceState.PAID,
    "failed": InvoiceState.FAILED,
    "refunded": InvoiceState.REFUNDED,
    "expired": InvoiceState.EXPIRED,
}
# NOWPayments gives up on an unpaid payment after 7 days.
DEFAULT_LIFETIME = 7 * 24 * 3600


def sorted_json(data: Any) -> list[str]:
    """The texts NOWPayments may have signed: `JSON.stringify(sortObject(body))` as its
    documented Node code computes it (numbers and strings as JavaScript writes them), and,
    when the body holds arrays, the same with its arrays kept as arrays."""
    texts = [js_json.stringify(js_json.sort_object(data))]
    texts.append(js_json.stringify(js_json.sort_object(data, arrays=True)))
    return list(dict.fromkeys(texts))


class NowPayments(Gateway):
    name = "nowpayments"
    label = "NOWPayments"
    required_settings = ("NOWPAYMENTS_API_KEY", "NOWPAYMENTS_IPN_SECRET")

    def __init__(
        self,
        api_key: str,
        ipn_secret: str,
        *,
        url: str = DEFAULT_URL,
        lifetime: int = DEFAULT_LIFETIME,
        connect_timeout: float = 5.0,
        read_timeout: float = 15.0,
        email: str | None = None,
        password: str | None = None,
    ):
        self._api_key = api_key
        self._ipn_secret = ipn_secret.encode()
        self._login = {"email": email, "password": password} if email and password else None
        self.lifetime = int(lifetime)
        self._http = JsonClient(url, connect_timeout=connect_timeout, read_timeout=read_timeout)

    def __repr__(self) -> str:
        return f"<NowPayments {self._http.base_url}>"  # never the key or the secret

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> NowPayments | None:
        if not (config.get("NOWPAYMENTS_API_KEY") and config.get("NOWPAYMENTS_IPN_SECRET")):
            return None
        return cls(
            config["NOWPAYMENTS_API_KEY"],
            config["NOWPAYMENTS_IPN_SECRET"],
            url=config.get("NOWPAYMENTS_API_URL") or DEFAULT_URL,
            lifetime=config.get("NOWPAYMENTS_INVOICE_LIFETIME") or DEFAULT_LIFETIME,
            email=config.get("NOWPAYMENTS_EMAIL"),
            password=config.get("NOWPAYMENTS_PASSWORD"),
            connect_timeout=config.get("PAYMENT_CONNECT_TIMEOUT", 5.0),
            read_timeout=config.get("PAYMENT_READ_TIMEOUT", 15.0),
        )

    def _headers(self) -> dict[str, str]:
        return {"x-api-key": self._api_key}

    def create_invoice(self, request: InvoiceRequest) -> Invoice:
        data = self._http.call(
            "POST",
            "invoice",
            headers=self._headers(),
            json={
                "price_amount": float(request.amount),
                "price_currency": request.currency.lower(),
                "order_id": request.order_id,
                "order_description": request.description[:200],
                "ipn_callback_url": request.callback_url,
                "success_url": request.return_url,
                "cancel_url": request.return_url,
            },
        )
        if not isinstance(data, dict) or not data.get("id") or not data.get("invoice_url"):
            raise GatewayUnavailable("invoice: no id or invoice_url in the answer")
        return Invoice(
            invoice_id=str(data["id"]), pay_url=str(data["invoice_url"]), lifetime=self.lifetime
        )

    def check_invoices(self, invoices: list[tuple[str, tuple[str, ...]]]) -> Checked:
        checked = Checked()
        bearer: dict[str, str] | None = None
        for invoice_id, references in invoices:
            if self._login is not None:
                if bearer is None:
                    bearer = self._bearer()
                asks = [("payment/", {"invoiceId": invoice_id, "limit": 100, "page": 0}, bearer)]
            elif references:
                asks = [(f"payment/{ref}", None, self._headers()) for ref in references]
            else:
                continue  # no payment id known yet, and no login to list the invoice's
            read, problems = [], []
            for path, params, headers in asks:
                try:
                    answer = self._http.call("GET", path, headers=headers, params=params)
                except GatewayRefused as exc:  # this payment's problem, not the batch's
                    problems.append(f"{path}: {exc}")
                    continue
                found = answer.get("data") if params else [answer]
                if not isinstance(found, list):
                    raise GatewayUnavailable("payment list: no data in the answer")
                for data in found:
                    try:
                        event = self._event(data, body=None)
                    except MalformedNotification as exc:
                        problems.append(f"{path}: unreadable payment: {exc}")
                        continue
                    if event.invoice_id == invoice_id:
                        read.append(event)
            if problems:
                checked.unreadable[invoice_id] = "; ".join(problems)
            # A finished payment last, so that a failed attempt on the same invoice never
            # follows the credit.
            checked.events.extend(sorted(read, key=lambda e: e.state is InvoiceState.PAID))
        return checked

    def _bearer(self) -> dict[str, str]:
        """Headers with a fresh bearer token (NOWPayments' tokens last minutes)."""
        answer = self._http.call("POST", "auth", headers=self._headers(), json=self._login)
        token = answer.get("token") if isinstance(answer, dict) else None
        if not token:
            raise GatewayUnavailable("auth: no token in the answer")
        return {**self._headers(), "Authorization": f"Bearer {token}"}

    def verify_notification(self, body: bytes, headers: Mapping[str, str]) -> PaymentEvent:
        signature = header(headers, SIGNATURE_HEADER).lower()
        if not signature:
            raise BadSignature("x-nowpayments-sig is missing")
        data = parse_json(body)  # the signature covers the sorted re-serialisation
        for text in sorted_json(data):
            expected = hmac.new(self._ipn_secret, text.encode(), hashlib.sha512).hexdigest()
            if hmac.compare_digest(signature, expected):
                return self._event(data, body=body.decode("utf-8", "replace"))
        raise BadSignature("x-nowpayments-sig does not match")

    def _event(self, data: Any, *, body: str | None) -> PaymentEvent:
        if not isinstance(data, dict):
            raise MalformedNotification("a payment is not an object")
        status = text_field(data, "payment_status", required=True)
        if status not in STATES:
            raise MalformedNotification(f"unknown payment_status {status!r}")
        currency = text_field(data, "price_currency")
        received = None
        paid = data.get("actually_paid")
        if isinstance(paid, int | float) and not isinstance(paid, bool) and paid > 0:
            received = f"{js_json.number(paid)} {data.get('pay_currency') or ''}".strip()
            if isinstance(data.get("pay_amount"), int | float):
                received += f" (of {js_json.number(data['pay_amount'])})"
        elif status == "partially_paid":
            received = "part of the amount"
        elif status in ("confirming", "confirmed", "sending"):
            received = "a payment being confirmed"
        return PaymentEvent(
            gateway=self.name,
            invoice_id=text_field(data, "invoice_id", required=True),
            state=STATES[status],
            gateway_status=status,
            amount=decimal_field(data, "price_amount"),
            currency=currency.upper() if currency else None,
            order_id=text_field(data, "order_id"),
            reference=text_field(data, "payment_id"),
            received=received if STATES[status] is not InvoiceState.PAID else None,
            body=body,
            details={
                k: data.get(k)
                for k in ("pay_currency", "pay_amount", "actually_paid", "outcome_amount")
                if data.get(k) is not None
            },
        )
