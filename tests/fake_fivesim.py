"""A fake 5sim: its REST API (v1) over real HTTP with state and scriptable faults.

Speaks 5sim's wire format: bearer-token auth (401 without it), JSON orders
`{id, phone, operator, product, price, status, expires, sms, created_at, country}`, prices
as `{country: {product: {operator: {cost, count, rate}}}}`, and refusals as short
plain-text bodies with HTTP 400 ("no free phones", "not enough user balance",
"order has sms", "order not found"), and the order history paged as 5sim pages it
(`category`, `limit`, `offset`, `order` id | date, `reverse`; oldest first by default).

    with FakeFiveSim(token="t") as fake:
        FiveSimClient("t", url=fake.url)
        fake.script("buy", Fault.DROP, process=True)  # bought, answer lost
        fake.deliver(order_id, "12345")                # an SMS arrives
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections import deque
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.fake_grizzly import Fault, Reply

PREFIX = "/v1"
DEFAULT_PAGE = 15  # the page of /user/orders without `limit` (5sim's examples ask for 15)


def default_prices() -> dict[tuple[str, str], dict[str, tuple[Decimal, int]]]:
    """(country, product) → {operator: (cost, count)}; costs in the account's currency."""
    return {
        ("usa", "telegram"): {"virtual1": (Decimal("0.20"), 50), "virtual2": (Decimal("0.25"), 5)},
        ("usa", "whatsapp"): {"virtual1": (Decimal("1.00"), 30)},
        ("england", "telegram"): {"virtual4": (Decimal("0.40"), 40)},
        ("russia", "telegram"): {"beeline": (Decimal("0.20"), 0)},
        ("atlantis", "telegram"): {"any1": (Decimal("0.10"), 5)},  # a country we do not map
        ("usa", "mysteryapp"): {"virtual1": (Decimal("0.10"), 5)},  # a product we do not map
    }


class FakeFiveSim:
    def __init__(
        self,
        token: str = "fivesim-token",
        *,
        balance: str = "100.00",
        prices: dict | None = None,
        code_delay: float | None = None,
    ):
        self.token = token
        self.balance = Decimal(balance)
        self.prices = default_prices() if prices is None else prices
        self.code_delay = code_delay  # seconds after purchase until an SMS; None: never
        # Hosting products: (country, product) → (price, stock); any operator.
        self.hosting: dict[tuple[str, str], tuple[Decimal, int]] = {
            ("usa", "1day"): (Decimal("1.50"), 12),
            ("usa", "3hours"): (Decimal("0.60"), 8),
        }
        self.orders: dict[int, dict] = {}
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.errors: list[BaseException] = []
        self._lock = threading.RLock()
        self._script: dict[str, deque[tuple[Any, bool]]] = {}
        self._next_id = 510_000_001
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def __enter__(self) -> FakeFiveSim:
        self._httpd = _Server(("127.0.0.1", 0), self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}{PREFIX}"

    # -- test controls ------------------------------------------------------------------

    def script(self, verb: str, *answers: Fault | Reply | str, process: bool = False) -> None:
        """Queue answers for the next calls of `verb` (buy, check, cancel, finish, orders,
        prices, profile). A `str` is a 400 plain-text refusal."""
        with self._lock:
            queue = self._script.setdefault(verb, deque())
            for answer in answers:
                queue.append((answer, process))

    def count(self, verb: str) -> int:
        with self._lock:
            return sum(1 for v, _params in self.calls if v == verb)

    def deliver(self, order_id: int | str, code: str, text: str | None = None) -> None:
        with self._lock:
            order = self.orders[int(order_id)]
            now = _stamp(dt.datetime.now(dt.UTC))
            order["sms"].append(
                {
                    "created_at": now,
                    "date": now,
                    "sender": "Telegram",
                    "text": text or f"Telegram code {code}",
                    "code": code,
                }
            )
            order["status"] = "RECEIVED"

    def add_past_orders(
        self,
        count: int,
        *,
        status: str = "FINISHED",
        age: dt.timedelta = dt.timedelta(0),
        category: str = "activation",
    ) -> list[int]:
        """`count` orders of `category` (activation or hosting) bought `age` ago (new ids:
        they come after every order so far), closed with `status` or still open (PENDING).
        Their ids."""
        with self._lock:
            made = []
            for _ in range(count):
                order_id, self._next_id = self._next_id, self._next_id + 1
                bought = dt.datetime.now(dt.UTC) - age
                self.orders[order_id] = {
                    "id": order_id,
                    "phone": f"+1555{order_id % 10_000_000:07d}",
                    "operator": "virtual1",
                    "product": "telegram",
                    "price": 0.2,
                    "status": status,
                    "expires": _stamp(bought + dt.timedelta(minutes=15)),
                    "sms": [],
                    "created_at": _stamp(bought),
                    "forwarding": False,
                    "forwarding_number": "",
                    "country": "usa",
                    "_bought": bought.timestamp(),
                    "_category": category,
                }
                made.append(order_id)
            return made

    # -- the API ------------------------------------------------------------------------

    def answer(self, verb: str, parts: list[str], params: dict[str, str]) -> Reply:
        with self._lock:
            if verb == "profile":
                return _json(
                    {
                        "id": 1,
                        "email": "op@example.com",
                        "balance": float(self.balance),
                        "rating": 96,
                    }
                )
            if verb == "prices":
                return _json(self._price_list(params.get("country"), params.get("product")))
            if verb == "buy":
                return self._buy(parts, params)
            if verb == "products":
                return _json(self._products(parts))
            if verb == "hosting":
                return self._buy_hosting(parts)
            if verb == "inbox":
                order = self._order(parts[1:]) if parts[:1] == ["inbox"] else None
                if order is None:
                    return _refusal("order not found")
                return _json({"Data": list(order["sms"]), "Total": len(order["sms"])})
            if verb == "orders":
                return self._history(params)
            order = self._order(parts)
            if order is None:
                return _refusal("order not found")
            self._age(order)
            if verb == "check":
                return _json(order)
            if verb == "finish":
                if order["status"] in ("CANCELED", "TIMEOUT", "BANNED"):
                    return _refusal("order expired")
                order["status"] = "FINISHED"
                return _json(order)
            if verb in ("cancel", "ban"):
                if order.get("_category") == "hosting":
                    return _refusal("hosting order")
                if order["sms"]:
                    return _refusal("order has sms")
                if order["status"] == "FINISHED":
                    return _refusal("order not found")
                if order["status"] == "PENDING":
                    order["status"] = "CANCELED" if verb == "cancel" else "BANNED"
                    self.balance += Decimal(str(order["price"]))
                return _json(order)
        return Reply("not found", status=404)

    def _history(self, params: dict[str, str]) -> Reply:
        """GET /user/orders as 5sim pages it: `category` (required: activation | hosting),
        `limit`, `offset`, `order` (id | date) and `reverse`; oldest first unless reversed.
        `Total` counts the whole category."""
        category = params.get("category")
        if category not in ("activation", "hosting"):
            return _refusal("bad category")
        try:
            limit = int(params.get("limit") or DEFAULT_PAGE)
            offset = int(params.get("offset") or 0)
        except ValueError:
            return _refusal("bad limit or offset")
        field = {"id": "id", "date": "created_at"}.get(params.get("order") or "id")
        if field is None or limit < 0 or offset < 0:
            return _refusal("bad pagination")
        orders = [o for o in self.orders.values() if o.get("_category") == category]
        orders.sort(key=lambda o: (o[field], o["id"]), reverse=params.get("reverse") == "true")
        page = orders[offset : offset + limit]
        return _json({"Data": page, "ProductNames": [], "Statuses": [], "Total": len(orders)})

    def _price_list(self, country: str | None, product: str | None) -> dict:
        result: dict = {}
        for (c, p), operators in self.prices.items():
            if (country and c != country) or (product and p != product):
                continue
            result.setdefault(c, {})[p] = {
                op: {"cost": float(cost), "count": count, "rate": 90.5}
                for op, (cost, count) in operators.items()
            }
        return result

    def _buy(self, parts: list[str], params: dict[str, str]) -> Reply:
        if len(parts) != 3:
            return Reply("", status=404)
        country, operator, product = parts
        operators = self.prices.get((country, product))
        if operators is None:
            return _refusal("no product")
        limit = Decimal(params["maxPrice"]) if params.get("maxPrice") else None
        offers = [
            (cost, name)
            for name, (cost, count) in operators.items()
            if count > 0 and (operator in ("any", name)) and (limit is None or cost <= limit)
        ]
        if not offers:
            return _refusal("no free phones")
        cost, name = min(offers)
        if self.balance < cost:
            return _refusal("not enough user balance")
        self.balance -= cost
        stock_cost, stock = operators[name]
        operators[name] = (stock_cost, stock - 1)
        order_id, self._next_id = self._next_id, self._next_id + 1
        now = dt.datetime.now(dt.UTC)
        order = {
            "id": order_id,
            "phone": f"+1555{order_id % 10_000_000:07d}",
            "operator": name,
            "product": product,
            "price": float(cost),
            "status": "PENDING",
            "expires": _stamp(now + dt.timedelta(minutes=15)),
            "sms": [],
            "created_at": _stamp(now),
            "forwarding": False,
            "forwarding_number": "",
            "country": country,
            "_bought": now.timestamp(),
            "_category": "activation",
        }
        self.orders[order_id] = order
        return _json(order)

    def _products(self, parts: list[str]) -> dict:
        country = parts[0] if parts else ""
        return {
            product: {"Category": "hosting", "Qty": stock, "Price": float(price)}
            for (c, product), (price, stock) in self.hosting.items()
            if c == country
        }

    def _buy_hosting(self, parts: list[str]) -> Reply:
        if len(parts) != 3:
            return Reply("", status=404)
        country, _operator, product = parts
        offer = self.hosting.get((country, product))
        if offer is None or offer[1] <= 0:
            return _refusal("no free phones")
        price, stock = offer
        if self.balance < price:
            return _refusal("not enough user balance")
        self.balance -= price
        self.hosting[(country, product)] = (price, stock - 1)
        order_id, self._next_id = self._next_id, self._next_id + 1
        now = dt.datetime.now(dt.UTC)
        hours = {"3hours": 3, "1day": 24}.get(product, 24)
        order = {
            "id": order_id,
            "phone": f"+1777{order_id % 10_000_000:07d}",
            "operator": "virtual1",
            "product": product,
            "price": float(price),
            "status": "RECEIVED",
            "expires": _stamp(now + dt.timedelta(hours=hours)),
            "sms": [],
            "created_at": _stamp(now),
            "country": country,
            "_category": "hosting",
            "_bought": now.timestamp(),
        }
        self.orders[order_id] = order
        return _json(order)

    def _order(self, parts: list[str]) -> dict | None:
        if len(parts) != 1 or not parts[0].isdigit():
            return None
        return self.orders.get(int(parts[0]))

    def _age(self, order: dict) -> None:
        if self.code_delay is None or order["sms"] or order["status"] != "PENDING":
            return
        if dt.datetime.now(dt.UTC).timestamp() - order["_bought"] >= self.code_delay:
            self.deliver(order["id"], str(order["id"])[-5:])

    def _next_script(self, verb: str):
        with self._lock:
            queue = self._script.get(verb)
            return queue.popleft() if queue else None


_VERBS = {
    ("user", "profile"): "profile",
    ("guest", "prices"): "prices",
    ("user", "buy"): "buy",
    ("user", "check"): "check",
    ("user", "finish"): "finish",
    ("user", "cancel"): "cancel",
    ("user", "ban"): "ban",
    ("user", "orders"): "orders",
    ("guest", "products"): "products",
    ("user", "sms"): "inbox",
}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, fake: FakeFiveSim):
        self.fake = fake
        super().__init__(address, _Handler)

    def handle_error(self, request, client_address) -> None:
        pass


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        fake = self.server.fake
        try:
            url = urlsplit(self.path)
            params = dict(parse_qsl(url.query, keep_blank_values=True))
            segments = [s for s in url.path.removeprefix(PREFIX).split("/") if s]
            verb = _VERBS.get(tuple(segments[:2]))
            if verb is None:
                self._write(Reply("", status=404))
                return
            parts = segments[2:]
            if verb == "buy":
                if parts[:1] == ["hosting"]:
                    verb, parts = "hosting", parts[1:]
                else:
                    parts = parts[1:] if parts[:1] == ["activation"] else []
            with fake._lock:
                fake.calls.append((verb, {**params, "path": "/".join(parts)}))
            if (
                verb not in ("prices", "products")
                and self.headers.get("Authorization") != f"Bearer {fake.token}"
            ):
                self._write(Reply("", status=401))
                return
            scripted = fake._next_script(verb)
            if scripted is None:
                self._write(fake.answer(verb, parts, params))
                return
            answer, process = scripted
            real = fake.answer(verb, parts, params) if process else None
            if answer is Fault.DROP:
                self.close_connection = True
            elif answer is Fault.HTTP_500:
                self._write(Reply("Internal Server Error", status=500))
            elif answer is Fault.RATE_LIMIT:
                self._write(Reply("Too Many Requests", status=429, headers={"Retry-After": "1"}))
            elif answer is Fault.SLOW:
                threading.Event().wait(5)
                if real is not None:
                    self._write(real)
            elif isinstance(answer, Reply):
                self._write(answer)
            else:
                self._write(_refusal(str(answer)))
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as exc:
            fake.errors.append(exc)
            self._write(Reply("fake 5sim internal error", status=500))

    def _write(self, reply: Reply) -> None:
        body = reply.encoded()
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.guessed_content_type())
        self.send_header("Content-Length", str(len(body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()


def _json(data: Any) -> Reply:
    clean = (
        {k: v for k, v in data.items() if not k.startswith("_")} if isinstance(data, dict) else data
    )
    if isinstance(clean, dict) and "Data" in clean:
        clean["Data"] = [
            {k: v for k, v in o.items() if not k.startswith("_")} for o in clean["Data"]
        ]
    return Reply(json.dumps(clean), content_type="application/json")


def _refusal(text: str) -> Reply:
    return Reply(text, status=400, content_type="text/plain; charset=utf-8")


def _stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"  # nanoseconds, as 5sim sends
