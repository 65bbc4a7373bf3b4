"""Fake Crypto Pay and NOWPayments servers on 127.0.0.1 speaking their wire formats, and
the signatures of their notifications computed here by the documented schemes (hmac and
hashlib directly — never by the code under test).

    with FakeCryptoPay(token="1234:AAA") as cryptopay:
        ...  # CRYPTOPAY_API_URL = cryptopay.url
        cryptopay.invoices["1"]["status"] = "paid"
        body, headers = cryptopay.paid_update("1")
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import itertools
import json
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

# -- the documented signature schemes -------------------------------------------------------


def cryptopay_signature(token: str, body: bytes) -> str:
    """Crypto Pay: hex HMAC-SHA256 of the raw body, keyed with SHA-256(token)."""
    secret = hashlib.sha256(token.encode()).digest()
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


NODE = shutil.which("node")
# NOWPayments' documented Node code for the IPN signature, verbatim but for reading the
# secret and a JSON list of bodies, and writing the list of signatures.
NOWPAYMENTS_NODE_SIGNER = """
const crypto = require('crypto');
function sortObject(obj) {
  return Object.keys(obj).sort().reduce(
    (result, key) => {
      result[key] = (obj[key] && typeof obj[key] === 'object') ? sortObject(obj[key]) : obj[key]
      return result
    },
    {}
  )
}
const notificationsKey = process.argv[1];
const bodies = JSON.parse(require('fs').readFileSync(0, 'utf8'));
process.stdout.write(JSON.stringify(bodies.map((body) => {
  const params = JSON.parse(body);
  const hmac = crypto.createHmac('sha512', notificationsKey);
  hmac.update(JSON.stringify(sortObject(params)));
  return hmac.digest('hex');
})));
"""


def node_nowpayments_signatures(ipn_secret: str, bodies: list[bytes]) -> list[str]:
    """NOWPayments' signatures of `bodies`, computed by its documented Node code (needs node)."""
    answer = subprocess.run(
        [NODE or "node", "-e", NOWPAYMENTS_NODE_SIGNER, ipn_secret],
        input=json.dumps([b.decode() for b in bodies]),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(answer.stdout)


def nowpayments_signature(ipn_secret: str, data: dict) -> str:
    """NOWPayments: hex HMAC-SHA512 of JSON.stringify of the body with its keys sorted, keyed
    with the secret — by its documented Node code where node is installed; else by Python's
    json, which writes the same text only for the plain numbers and ASCII text the fake
    sends (whole floats written as integers)."""
    if NODE:
        return node_nowpayments_signatures(ipn_secret, [json.dumps(data).encode()])[0]

    def plain(value):
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, float):
            if value.is_integer():
                return int(value)
            assert value == 0 or 1e-4 <= abs(value) < 1e16, f"{value!r} needs node to sign"
        return value

    text = json.dumps(plain(data), sort_keys=True, separators=(",", ":"))
    assert text.isascii(), "non-ASCII text needs node to sign"
    return hmac.new(ipn_secret.encode(), text.encode(), hashlib.sha512).hexdigest()


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class _FakeServer:
    """A threaded HTTP server answering JSON through `answer(method, path, query, headers,
    body)`; every request is kept in `requests`."""

    def __init__(self):
        self.requests: list[dict[str, Any]] = []
        self.fail_next: list[int] = []  # HTTP statuses to answer the next calls with
        self._lock = threading.RLock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args):
                pass

            def do_GET(self):
                self._handle()

            def do_POST(self):
                self._handle()

            def _handle(self):
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                query = dict(parse_qsl(url.query))
                with fake._lock:
                    fake.requests.append(
                        {
                            "method": self.command,
                            "path": url.path,
                            "query": query,
                            "headers": dict(self.headers),
                            "json": body,
                        }
                    )
                    if fake.fail_next:
                        status, answer = fake.fail_next.pop(0), {"error": "fault"}
                    else:
                        status, answer = fake.answer(
                            self.command, url.path, query, self.headers, body
                        )
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def calls(self, path: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if r["path"].endswith(path)]

    def answer(self, method, path, query, headers, body):  # pragma: no cover - overridden
        raise NotImplementedError


class FakeCryptoPay(_FakeServer):
    """Crypto Pay: POST /api/<method>, header Crypto-Pay-API-Token, `{ok, result}` answers."""

    def __init__(self, token: str = "4321:AAFakeCryptoPayToken"):
        super().__init__()
        self.token = token
        self.invoices: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(9001)
        self._updates = itertools.count(1)

    @property
    def url(self) -> str:
        return self.root + "/api"

    def answer(self, method, path, query, headers, body):
        if headers.get("Crypto-Pay-API-Token") != self.token:
            return 401, {"ok": False, "error": {"code": 401, "name": "UNAUTHORIZED"}}
        params = {**query, **(body or {})}
        name = path.rsplit("/", 1)[-1]
        if name == "createInvoice":
            if params.get("currency_type") != "fiat" or not params.get("fiat"):
                return 400, {"ok": False, "error": {"code": 400, "name": "FIAT_REQUIRED"}}
            invoice_id = next(self._ids)
            invoice = {
                "invoice_id": invoice_id,
                "hash": f"IV{invoice_id}",
                "currency_type": "fiat",
                "fiat": params["fiat"],
                "amount": params["amount"],
                "accepted_assets": (params.get("accepted_assets") or "USDT,TON,BTC").split(","),
                "bot_invoice_url": f"https://t.me/CryptoBot?start=IV{invoice_id}",
                "mini_app_invoice_url": f"https://t.me/CryptoBot/app?startapp=invoice-IV{invoice_id}",
                "web_app_invoice_url": f"https://app.send.tg/invoices/IV{invoice_id}",
                "description": params.get("description"),
                "status": "active",
                "created_at": _now(),
                "allow_comments": False,
                "allow_anonymous": True,
                "payload": params.get("payload"),
                "expiration_date": _now(),
            }
            self.invoices[str(invoice_id)] = invoice
            return 200, {"ok": True, "result": invoice}
        if name == "getInvoices":
            wanted = str(params.get("invoice_ids") or "").split(",")
            items = [self.invoices[i] for i in wanted if i in self.invoices]
            return 200, {"ok": True, "result": {"items": items}}
        return 400, {"ok": False, "error": {"code": 400, "name": "METHOD_NOT_FOUND"}}

    def pay(self, invoice_id: str, *, asset: str = "USDT") -> dict[str, Any]:
        invoice = self.invoices[str(invoice_id)]
        invoice.update(
            status="paid",
            paid_asset=asset,
            paid_amount=invoice["amount"],
            paid_fiat_rate="1.00",
            paid_usd_rate="1.00",
            fee_asset=asset,
            fee_amount="0.03",
            paid_anonymously=False,
            paid_at=_now(),
        )
        return invoice

    def update_body(self, invoice: dict[str, Any]) -> bytes:
        """An `invoice_paid` webhook update as Crypto Pay sends it."""
        return json.dumps(
            {
                "update_id": next(self._updates),
                "update_type": "invoice_paid",
                "request_date": _now(),
                "payload": invoice,
            }
        ).encode()

    def signed(self, body: bytes) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "crypto-pay-api-signature": cryptopay_signature(self.token, body),
        }


class FakeNowPayments(_FakeServer):
    """NOWPayments: POST /v1/invoice and GET /v1/payment/<id>, header x-api-key; POST
    /v1/auth (e-mail and password → a JWT) and GET /v1/payment/?invoiceId= with it."""

    EMAIL, PASSWORD = "merchant@example.com", "np-account-password"

    def __init__(self, api_key: str = "NP-FAKE-KEY", ipn_secret: str = "np-ipn-secret"):
        super().__init__()
        self.api_key = api_key
        self.ipn_secret = ipn_secret
        self.tokens: set[str] = set()
        self.invoices: dict[str, dict[str, Any]] = {}
        self.payments: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(5077000001)
        self._payment_ids = itertools.count(4409701815)

    @property
    def url(self) -> str:
        return self.root + "/v1"

    def answer(self, method, path, query, headers, body):
        if headers.get("x-api-key") != self.api_key:
            return 403, {"status": False, "statusCode": 403, "code": "INVALID_API_KEY"}
        if method == "POST" and path == "/v1/invoice":
            invoice_id = str(next(self._ids))
            invoice = {
                "id": invoice_id,
                "token_id": "tok" + invoice_id,
                "order_id": body.get("order_id"),
                "order_description": body.get("order_description"),
                "price_amount": str(body["price_amount"]),
                "price_currency": body["price_currency"],
                "pay_currency": None,
                "ipn_callback_url": body.get("ipn_callback_url"),
                "invoice_url": f"https://nowpayments.io/payment/?iid={invoice_id}",
                "success_url": body.get("success_url"),
                "cancel_url": body.get("cancel_url"),
                "created_at": _now(),
                "updated_at": _now(),
            }
            self.invoices[invoice_id] = invoice
            return 200, invoice
        if method == "POST" and path == "/v1/auth":
            if body != {"email": self.EMAIL, "password": self.PASSWORD}:
                return 401, {"status": False, "statusCode": 401, "message": "Invalid credentials"}
            token = f"eyJhbGciOiJIUzI1NiJ9.fake{len(self.tokens)}"
            self.tokens.add(token)
            return 200, {"token": token}
        if method == "GET" and path == "/v1/payment/":
            bearer = (headers.get("Authorization") or "").removeprefix("Bearer ")
            if bearer not in self.tokens:
                return 401, {"status": False, "statusCode": 401, "message": "Unauthorized"}
            data = [
                p
                for p in self.payments.values()
                if str(p["invoice_id"]) == str(query.get("invoiceId"))
            ]
            return 200, {"data": data, "limit": 100, "page": 0, "pagesCount": 1, "total": len(data)}
        if method == "GET" and path.startswith("/v1/payment/"):
            payment = self.payments.get(path.rsplit("/", 1)[-1])
            if payment is None:
                return 404, {"status": False, "code": "PAYMENT_NOT_FOUND"}
            return 200, payment
        return 404, {"status": False, "code": "NOT_FOUND"}

    def payment(
        self,
        invoice_id: str,
        status: str,
        *,
        amount: Any = None,
        currency=None,
        new=False,
        actually_paid: float | None = None,
    ):
        """A payment on an invoice (as the IPN and GET /payment/<id> describe it): the
        invoice's latest one, or a `new` one beside it."""
        invoice = self.invoices[str(invoice_id)]
        mine = [p for p in self.payments.values() if str(p["invoice_id"]) == str(invoice_id)]
        existing = None if new or not mine else mine[-1]
        payment_id = existing["payment_id"] if existing else next(self._payment_ids)
        price = float(invoice["price_amount"]) if amount is None else amount
        payment = {
            "payment_id": payment_id,
            "invoice_id": int(invoice_id),
            "payment_status": status,
            "pay_address": "TXYZfakeaddress",
            "price_amount": price,
            "price_currency": currency or invoice["price_currency"],
            "pay_amount": 25.31,
            "actually_paid": (25.31 if status == "finished" else 0)
            if actually_paid is None
            else actually_paid,
            "actually_paid_at_fiat": 0,
            "pay_currency": "usdttrc20",
            "order_id": invoice["order_id"],
            "order_description": invoice["order_description"],
            "purchase_id": "5837122679",
            "outcome_amount": 24.9,
            "outcome_currency": "usdttrc20",
            "created_at": _now(),
            "updated_at": _now(),
        }
        self.payments[str(payment_id)] = payment
        return payment

    def ipn(self, payment: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(payment).encode()
        return body, {
            "Content-Type": "application/json",
            "x-nowpayments-sig": nowpayments_signature(self.ipn_secret, payment),
        }
