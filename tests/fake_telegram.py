"""A fake Telegram Bot API server on 127.0.0.1: `<root>/bot<token>/<method>` with the real
JSON shapes ({"ok": true, "result": …} / {"ok": false, "error_code", "description",
"parameters": {"retry_after"}}), long polling with offsets, the 409 of getUpdates while a
webhook is set, 403 for users who blocked the bot, and 429s on demand.

    with FakeTelegram() as telegram:        # TELEGRAM_API_URL = telegram.url
        telegram.send(telegram.message(ANN, "/start"))
        telegram.wait_for(lambda: telegram.sent_to(ANN["id"]))
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

TOKEN = "123456:TEST-token_for-the-fake"
BOT = {"id": 123456, "is_bot": True, "first_name": "Reseller", "username": "reseller_test_bot"}
JSON_FIELDS = {"reply_markup", "prices", "allowed_updates", "entities", "link_preview_options"}


def user(user_id: int, first_name: str = "Ann", language_code: str | None = "en") -> dict:
    found = {"id": user_id, "is_bot": False, "first_name": first_name}
    if language_code:
        found["language_code"] = language_code
    return found


class ApiError(Exception):
    def __init__(self, code: int, description: str, retry_after: int | None = None):
        self.code, self.description, self.retry_after = code, description, retry_after


class FakeTelegram:
    def __init__(self, token: str = TOKEN):
        self.token = token
        self.lock = threading.Condition()
        self.calls: list[tuple[str, dict]] = []
        self.pending: list[dict] = []  # updates not yet confirmed by an offset
        self.updates_sent: list[dict] = []
        self.messages: dict[int, dict] = {}  # message_id → the bot's message (as last edited)
        self.webhook: dict | None = None
        self.blocked: set[int] = set()
        self.rate_limited: dict[str, list[int]] = {}  # method → retry_after of the next 429s
        self.server_errors: dict[str, int] = {}  # method → how many next calls answer 502
        self._update_ids = itertools.count(1000)
        self._message_ids = itertools.count(1)
        self._httpd: ThreadingHTTPServer | None = None

    # -- the server ----------------------------------------------------------------------

    def __enter__(self) -> FakeTelegram:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802
                self._handle()

            def do_POST(self):  # noqa: N802
                self._handle()

            def _handle(self):
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                prefix = f"/bot{fake.token}/"
                if not url.path.startswith(prefix):
                    self._answer(404, {"ok": False, "error_code": 404, "description": "Not Found"})
                    return
                method = url.path[len(prefix) :]
                params = fake._params(self.headers.get("Content-Type", ""), raw, url.query)
                try:
                    result = fake._call(method, params)
                except ApiError as exc:
                    body = {"ok": False, "error_code": exc.code, "description": exc.description}
                    if exc.retry_after is not None:
                        body["parameters"] = {"retry_after": exc.retry_after}
                    self._answer(exc.code, body)
                    return
                self._answer(200, {"ok": True, "result": result})

            def _answer(self, status: int, body: dict):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        with self.lock:
            self.lock.notify_all()
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @staticmethod
    def _params(content_type: str, raw: bytes, query: str) -> dict[str, Any]:
        params: dict[str, Any] = dict(parse_qsl(query))
        if raw and content_type.startswith("application/json"):
            params.update(json.loads(raw))
        elif raw and content_type.startswith("multipart/form-data"):
            message = BytesParser(policy=HTTP).parsebytes(
                b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw
            )
            for part in message.iter_parts():
                params[part.get_param("name", header="content-disposition")] = part.get_content()
        elif raw:
            params.update(parse_qsl(raw.decode(), keep_blank_values=True))
        for key in JSON_FIELDS & params.keys():
            if isinstance(params[key], str):
                params[key] = json.loads(params[key])
        return params

    # -- the methods ---------------------------------------------------------------------

    def _call(self, method: str, params: dict) -> Any:
        with self.lock:
            if method != "getUpdates":
                self.calls.append((method, params))
            if self.rate_limited.get(method):
                raise ApiError(
                    429,
                    f"Too Many Requests: retry after {self.rate_limited[method][0]}",
                    self.rate_limited[method].pop(0),
                )
            if self.server_errors.get(method):
                self.server_errors[method] -= 1
                raise ApiError(502, "Bad Gateway")
        handler = getattr(self, "_" + method, None)
        if handler is None:
            raise ApiError(404, "Not Found: method not found")
        return handler(params)

    def _getMe(self, params):  # noqa: N802
        return dict(BOT, can_join_groups=True, can_read_all_group_messages=False)

    def _getUpdates(self, params):  # noqa: N802
        offset = int(params.get("offset") or 0)
        deadline = time.monotonic() + min(float(params.get("timeout") or 0), 30)
        with self.lock:
            if self.webhook is not None:
                raise ApiError(
                    409,
                    "Conflict: can't use getUpdates method while webhook is active; "
                    "use deleteWebhook to delete the webhook first",
                )
            while True:
                self.pending = [u for u in self.pending if u["update_id"] >= offset]
                if self.pending or time.monotonic() >= deadline or self._httpd is None:
                    return list(self.pending[:100])
                self.lock.wait(min(0.2, max(0.0, deadline - time.monotonic())))

    def _chat(self, chat_id) -> dict:
        chat_id = int(chat_id)
        if chat_id in self.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return {"id": chat_id, "type": "private", "first_name": "Ann"}

    def _new_message(self, params, **fields) -> dict:
        message = {
            "message_id": next(self._message_ids),
            "from": BOT,
            "chat": self._chat(params["chat_id"]),
            "date": int(time.time()),
            **fields,
        }
        if params.get("reply_markup"):
            message["reply_markup"] = params["reply_markup"]
        with self.lock:
            self.messages[message["message_id"]] = message
        return message

    def _sendMessage(self, params):  # noqa: N802
        if not params.get("text"):
            raise ApiError(400, "Bad Request: message text is empty")
        return self._new_message(params, text=params["text"])

    def _editMessageText(self, params):  # noqa: N802
        self._chat(params["chat_id"])
        message = self.messages.get(int(params["message_id"]))
        if message is None:
            raise ApiError(400, "Bad Request: message to edit not found")
        if message.get("text") == params["text"] and message.get("reply_markup") == params.get(
            "reply_markup"
        ):
            raise ApiError(
                400,
                "Bad Request: message is not modified: specified new message content and "
                "reply markup are exactly the same as a current content and reply markup "
                "of the message",
            )
        message["text"] = params["text"]
        message.pop("reply_markup", None)
        if params.get("reply_markup"):
            message["reply_markup"] = params["reply_markup"]
        message["edit_date"] = int(time.time())
        return message

    def _answerCallbackQuery(self, params):  # noqa: N802
        return True

    def _sendInvoice(self, params):  # noqa: N802
        if params.get("currency") == "XTR" and params.get("provider_token"):
            raise ApiError(400, "Bad Request: provider_token must be empty for XTR")
        if params.get("currency") == "XTR" and len(params.get("prices") or []) != 1:
            raise ApiError(400, "Bad Request: XTR invoices must have exactly one price")
        invoice = {
            "title": params["title"],
            "description": params["description"],
            "start_parameter": "",
            "currency": params["currency"],
            "total_amount": sum(p["amount"] for p in params["prices"]),
        }
        return self._new_message(params, invoice=invoice, payload=params["payload"])

    def _answerPreCheckoutQuery(self, params):  # noqa: N802
        return True

    def _setWebhook(self, params):  # noqa: N802
        with self.lock:
            self.webhook = {"url": params["url"], "secret_token": params.get("secret_token")}
        return True

    def _deleteWebhook(self, params):  # noqa: N802
        with self.lock:
            self.webhook = None
        return True

    def _getWebhookInfo(self, params):  # noqa: N802
        return {"url": (self.webhook or {}).get("url", ""), "pending_update_count": 0}

    def _refundStarPayment(self, params):  # noqa: N802
        paid = [
            p
            for p in self.updates_sent
            if p.get("message", {}).get("successful_payment", {}).get("telegram_payment_charge_id")
            == params.get("telegram_payment_charge_id")
        ]
        if not paid or int(params["user_id"]) != paid[0]["message"]["from"]["id"]:
            raise ApiError(400, "Bad Request: CHARGE_ID_INVALID")
        if any(
            m == "refundStarPayment"
            and p.get("telegram_payment_charge_id") == params["telegram_payment_charge_id"]
            for m, p in self.calls[:-1]
        ):
            raise ApiError(400, "Bad Request: CHARGE_ALREADY_REFUNDED")
        return True

    # -- what users do -------------------------------------------------------------------

    def send(self, update: dict) -> dict:
        """Queue an update for getUpdates (fills in its update_id)."""
        update = {"update_id": next(self._update_ids), **update}
        with self.lock:
            self.updates_sent.append(update)
            self.pending.append(update)
            self.lock.notify_all()
        return update

    def message(self, sender: dict, text: str) -> dict:
        entities = []
        if text.startswith("/"):
            entities = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
        body = {
            "message_id": next(self._message_ids),
            "from": sender,
            "chat": {"id": sender["id"], "type": "private", "first_name": sender["first_name"]},
            "date": int(time.time()),
            "text": text,
        }
        if entities:
            body["entities"] = entities
        return {"message": body}

    def press(self, sender: dict, message: dict, data: str) -> dict:
        return {
            "callback_query": {
                "id": str(next(self._update_ids)),
                "from": sender,
                "message": message,
                "chat_instance": "42",
                "data": data,
            }
        }

    def pre_checkout(self, sender: dict, payload: str, stars: int, currency: str = "XTR") -> dict:
        return {
            "pre_checkout_query": {
                "id": str(next(self._update_ids)),
                "from": sender,
                "currency": currency,
                "total_amount": stars,
                "invoice_payload": payload,
            }
        }

    def successful_payment(self, sender: dict, payload: str, stars: int, charge_id: str) -> dict:
        return {
            "message": {
                "message_id": next(self._message_ids),
                "from": sender,
                "chat": {"id": sender["id"], "type": "private", "first_name": "Ann"},
                "date": int(time.time()),
                "successful_payment": {
                    "currency": "XTR",
                    "total_amount": stars,
                    "invoice_payload": payload,
                    "telegram_payment_charge_id": charge_id,
                    "provider_payment_charge_id": "",
                },
            }
        }

    # -- what the bot did ----------------------------------------------------------------

    def called(self, method: str) -> list[dict]:
        with self.lock:
            return [p for m, p in self.calls if m == method]

    def sent_to(self, chat_id: int) -> list[dict]:
        """The bot's messages in a chat (as last edited), oldest first."""
        with self.lock:
            return [m for m in self.messages.values() if m["chat"]["id"] == chat_id]

    def texts(self, chat_id: int) -> list[str]:
        return [m.get("text", "") for m in self.sent_to(chat_id)]

    def wait_for(self, predicate, timeout: float = 15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = predicate()
            if found:
                return found
            time.sleep(0.02)
        raise AssertionError(f"the bot did not do it in time; calls: {self.calls[-8:]!r}")


def buttons(message: dict) -> dict[str, str]:
    """{label: callback data or url} of a message's inline keyboard."""
    rows = (message.get("reply_markup") or {}).get("inline_keyboard", [])
    return {b["text"]: b.get("callback_data") or b.get("url") for row in rows for b in row}
