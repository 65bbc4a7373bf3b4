"""A fake GrizzlySMS: the handler API over real HTTP, with state and scriptable faults.

In tests, as a context manager (binds 127.0.0.1 on a free port)::

    with FakeGrizzly(api_key="test-key") as grizzly:
        client = SmsActivateClient("test-key", url=grizzly.url)
        grizzly.script("getNumberV2", Fault.DROP, process=True)  # bought, answer lost
        ...
        assert grizzly.count("getNumberV2") == 1

or through the `fake_grizzly` fixture defined below (`pytest_plugins = ["tests.fake_grizzly"]`
in the root conftest, or a local fixture wrapping `FakeGrizzly`).

Standalone, as its own process (state lives in that process)::

    python tests/fake_grizzly.py --port 8099 --latency-ms 80

It prints `listening on <url>` once ready. The `/_fake/...` control paths (see `_control`)
let another process script faults, deliver codes and read the call log.
"""

from __future__ import annotations

import argparse
import datetime as dt
import enum
import json
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlsplit

try:
    import pytest
except ImportError:  # standalone use without the test dependencies
    pytest = None

log = logging.getLogger(__name__)

HANDLER_PATH = "/stubs/handler_api.php"
CONTROL_PREFIX = "/_fake/"
PROHIBITED_TEXT = "The service is prohibited for sale by administration"

COUNTRIES = {0: "Russia", 12: "USA (virtual)", 16: "United Kingdom", 187: "USA"}
SERVICES = {"tg": "Telegram", "wa": "WhatsApp", "go": "Google", "ds": "Discord"}
PHONE_PREFIX = {0: "7", 12: "1", 16: "44", 187: "1"}


def sms_text(service: str, code: str) -> str:
    """The full text of an SMS carrying `code`, as the service would word it."""
    return f"{code} is your {SERVICES.get(service, service)} code. Do not give it to anyone."


def default_prices() -> dict[tuple[int, str], tuple[Decimal, int]]:
    """(country, service) -> (cost, count). Russia/Discord has no stock (`NO_NUMBERS`)."""
    table = {
        0: {"tg": ("0.25", 120), "wa": ("0.80", 40), "go": ("0.15", 300), "ds": ("0.10", 0)},
        12: {"tg": ("0.30", 606), "wa": ("1.30", 55), "go": ("0.20", 200), "ds": ("0.12", 80)},
        16: {"tg": ("0.45", 90), "wa": ("1.10", 30), "go": ("0.35", 60), "ds": ("0.20", 25)},
        187: {"tg": ("1.50", 15), "wa": ("2.50", 10), "go": ("0.90", 20), "ds": ("0.60", 12)},
    }
    return {
        (country, service): (Decimal(cost), count)
        for country, row in table.items()
        for service, (cost, count) in row.items()
    }


class Fault(enum.Enum):
    """A scripted failure in place of the next answer to an action."""

    DROP = "drop"  # close the connection without any answer
    SLOW = "slow"  # hold the answer for `slow_seconds` (past the client's read timeout)
    HTTP_500 = "http_500"
    RATE_LIMIT = "rate_limit"  # HTTP 429 with `Retry-After: <retry_after>`
    TRUNCATED_JSON = "truncated_json"  # HTTP 200 with the first half of the JSON body
    TRUNCATED_BODY = "truncated_body"  # Content-Length promises more than is sent
    GARBAGE = "garbage"  # HTTP 200 with binary junk
    PROHIBITED = "prohibited"  # HTTP 200 with Grizzly's free-text refusal


# Whether a fault lets the request act on the fake's state first (`process`): the faults that
# delay or mangle an answer need the real one; the others stand in for it.
_PROCESS_BY_DEFAULT = {Fault.SLOW, Fault.TRUNCATED_JSON, Fault.TRUNCATED_BODY}
_GARBAGE = b"\x8b\x00\xff\xfe\x1f\x9c garbage \x00\xc3\x28"


@dataclass(frozen=True)
class Reply:
    """A raw answer. `str` bodies are UTF-8; the content type follows the first character."""

    body: str | bytes = ""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None

    def encoded(self) -> bytes:
        return self.body.encode() if isinstance(self.body, str) else self.body

    def guessed_content_type(self) -> str:
        if self.content_type:
            return self.content_type
        if self.encoded().lstrip()[:1] in (b"{", b"["):
            return "application/json"
        return "text/plain; charset=utf-8"


class Call(NamedTuple):
    action: str
    params: dict[str, str]  # everything but api_key


class State(enum.StrEnum):
    WAIT_CODE = "wait_code"
    READY = "ready"  # setStatus 1: still waiting for the code
    CODE = "code"
    WAIT_RETRY = "wait_retry"  # setStatus 3: waiting for another code
    FINISHED = "finished"
    CANCELLED = "cancelled"


_OPEN_STATES = {State.WAIT_CODE, State.READY, State.CODE, State.WAIT_RETRY}
_ACTIVATION_STATUS = {
    State.WAIT_CODE: "4",
    State.READY: "1",
    State.CODE: "2",
    State.WAIT_RETRY: "3",
}


@dataclass
class FakeActivation:
    id: int
    service: str
    country: int
    phone: str
    cost: Decimal
    bought_at: float  # fake clock
    bought_wall: dt.datetime
    state: State = State.WAIT_CODE
    codes: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)  # each SMS's full text, with `codes`
    sms_at: list[dt.datetime] = field(default_factory=list)  # when each arrived (wall clock)
    code_due: float | None = None  # fake clock time when the next code arrives


@dataclass
class FakeRent:
    id: int
    service: str
    country: int
    phone: str
    cost: Decimal
    bought_at: float  # fake clock
    end: dt.datetime
    state: str = "open"  # open, finished, cancelled
    sms: list[tuple[str, str, str]] = field(default_factory=list)  # (from, text, date)

    def phone_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "endDate": self.end.strftime("%Y-%m-%dT%H:%M:%S"),
            "number": self.phone,
        }


@dataclass
class _Scripted:
    answer: Fault | Reply
    process: bool


class FakeGrizzly:
    """A stateful fake of the GrizzlySMS handler API, served over HTTP on 127.0.0.1.

    Tunables are plain attributes and may be changed while it runs: `balance`, `prices`,
    `code_delay` (seconds after purchase or setStatus 3 until a code arrives; None = never),
    `latency` (seconds before every answer), `slow_seconds`, `retry_after`, `lifetime`,
    `early_cancel_seconds`.
    """

    def __init__(
        self,
        api_key: str = "test-key",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        balance: Decimal | str = "100.00",
        prices: dict[tuple[int, str], tuple[Decimal, int]] | None = None,
        code_delay: float | None = 0.0,
        latency: float = 0.0,
        slow_seconds: float = 5.0,
        retry_after: float = 1.0,
        lifetime: float = 1200.0,
        early_cancel_seconds: float = 0.0,
        rent_error_key: str = "message",
    ):
        self.api_key = api_key
        self.host, self.port = host, port
        self.balance = Decimal(balance)
        self.prices = default_prices() if prices is None else prices
        self.code_delay = code_delay
        self.latency = latency
        self.slow_seconds = slow_seconds
        self.retry_after = retry_after
        self.lifetime = lifetime
        self.early_cancel_seconds = early_cancel_seconds
        self.rent_error_key = rent_error_key  # "message" (SMS-Activate), "error" (GrizzlySMS)
        self.rents: dict[int, FakeRent] = {}

        self.calls: list[Call] = []
        self.activations: dict[int, FakeActivation] = {}
        self.errors: list[BaseException] = []  # exceptions inside the fake itself
        self._lock = threading.RLock()
        self._script: dict[str, deque[_Scripted]] = {}
        self._order_ids: set[str] = set()
        self._next_id = 700_000_001
        self._clock_offset = 0.0
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> FakeGrizzly:
        self._stopping.clear()
        self._httpd = _Server((self.host, self.port), self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes answers held by latency or Fault.SLOW
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeGrizzly:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{HANDLER_PATH}"

    # -- test controls ------------------------------------------------------------------

    def script(self, action: str, *answers: Fault | Reply | str, process: bool | None = None):
        """Queue the next answers to `action` ("*" = any action), one per call, in order.

        A `str` is a raw 200 body. `process=True` lets the request act on the state first
        (a purchase really happens, then its answer is dropped/slowed/replaced); the default
        is True for SLOW and TRUNCATED_*, False otherwise.
        """
        with self._lock:
            queue = self._script.setdefault(action, deque())
            for answer in answers:
                if isinstance(answer, str):
                    answer = Reply(answer)
                default = isinstance(answer, Fault) and answer in _PROCESS_BY_DEFAULT
                queue.append(_Scripted(answer, default if process is None else process))

    def count(self, action: str | None = None, activation_id: int | str | None = None) -> int:
        """How many calls arrived for `action` (any when None), optionally for one id."""
        with self._lock:
            return sum(
                1
                for call in self.calls
                if (action is None or call.action == action)
                and (activation_id is None or call.params.get("id") == str(activation_id))
            )

    def deliver_code(self, activation_id: int | str, code: str, text: str | None = None) -> None:
        """An SMS arrives now for an open activation (`text`: its full text; by default
        the service's usual wording around the code)."""
        with self._lock:
            activation = self.activations[int(activation_id)]
            self._refresh(activation)
            self._receive(activation, code, text)

    def advance(self, seconds: float) -> None:
        """Move the fake's clock forward (code arrival, early-cancel lock, expiry)."""
        with self._lock:
            self._clock_offset += seconds

    def now(self) -> float:
        return time.monotonic() + self._clock_offset

    # -- the handler API ----------------------------------------------------------------

    def answer(self, params: dict[str, str]) -> Reply:
        """The fake's real answer to one request, acting on the state."""
        key = params.get("api_key")
        if not key:
            return Reply("NO_KEY")
        if key != self.api_key:
            return Reply("BAD_KEY")
        handler = getattr(self, f"_action_{params.get('action', '')}", None)
        if handler is None:
            return Reply("BAD_ACTION")
        with self._lock:
            return handler(params)

    def _action_getBalance(self, params: dict[str, str]) -> Reply:
        return Reply(f"ACCESS_BALANCE:{self.balance:.2f}")

    def _action_getPrices(self, params: dict[str, str]) -> Reply:
        table: dict[str, dict[str, dict[str, Any]]] = {}
        for (country, service), (cost, count) in sorted(self.prices.items()):
            if params.get("country") not in (None, "", str(country)):
                continue
            if params.get("service") not in (None, "", service):
                continue
            entry = {"cost": float(cost), "count": count, "retry": 0}
            table.setdefault(str(country), {})[service] = entry
        return _json(table)

    def _action_getCountries(self, params: dict[str, str]) -> Reply:
        return _json(
            {
                str(cid): {"id": cid, "rus": name, "eng": name, "chn": name, "visible": 1}
                for cid, name in COUNTRIES.items()
            }
        )

    def _action_getServicesList(self, params: dict[str, str]) -> Reply:
        services = [{"code": code, "name": name} for code, name in SERVICES.items()]
        return _json({"status": "success", "services": services})

    def _action_getNumber(self, params: dict[str, str]) -> Reply:
        bought = self._buy(params)
        if isinstance(bought, Reply):
            return bought
        return Reply(f"ACCESS_NUMBER:{bought.id}:{bought.phone}")

    def _action_getNumberV2(self, params: dict[str, str]) -> Reply:
        bought = self._buy(params)
        if isinstance(bought, Reply):
            return bought
        return _json(
            {
                "activationId": bought.id,
                "phoneNumber": bought.phone,
                "activationCost": float(bought.cost),
                "currency": 840,
                "countryCode": str(bought.country),
                "canGetAnotherSms": "1",
                "activationTime": _stamp(bought.bought_wall),
                "activationEnd": _stamp(bought.bought_wall + dt.timedelta(seconds=self.lifetime)),
                "activationOperator": "any",
            }
        )

    def _action_getStatus(self, params: dict[str, str]) -> Reply:
        activation = self._find(params.get("id", ""))
        if isinstance(activation, Reply):
            return activation
        last = activation.codes[-1] if activation.codes else None
        if activation.state is State.CODE or (activation.state is State.FINISHED and last):
            return Reply(f"STATUS_OK:{last}")
        if activation.state is State.WAIT_RETRY:
            return Reply(f"STATUS_WAIT_RETRY:{last}")
        if activation.state in (State.WAIT_CODE, State.READY):
            return Reply("STATUS_WAIT_CODE")
        return Reply("STATUS_CANCEL")

    def _action_getStatusV2(self, params: dict[str, str]) -> Reply:
        """The latest SMS with its full text (null before any); a cancelled activation
        answers the plain token, as SMS-Activate does."""
        activation = self._find(params.get("id", ""))
        if isinstance(activation, Reply):
            return activation
        if activation.state is State.CANCELLED:
            return Reply("STATUS_CANCEL")
        sms = None
        if activation.codes:
            sms = {
                "dateTime": _stamp(activation.sms_at[-1]),
                "code": activation.codes[-1],
                "text": activation.texts[-1],
            }
        return _json({"verificationType": 0, "sms": sms, "call": None})

    def _action_setStatus(self, params: dict[str, str]) -> Reply:
        activation = self._find(params.get("id", ""))
        if isinstance(activation, Reply):
            return activation
        status, state = params.get("status", ""), activation.state
        waiting = state in (State.WAIT_CODE, State.READY)
        if status == "1" and waiting:
            activation.state = State.READY
            return Reply("ACCESS_READY")
        if status == "3" and state is State.CODE:
            activation.state = State.WAIT_RETRY
            activation.code_due = self._code_due()
            return Reply("ACCESS_RETRY_GET")
        if status == "6" and state in (State.CODE, State.WAIT_RETRY):
            activation.state = State.FINISHED
            return Reply("ACCESS_ACTIVATION")
        if status in ("8", "-1"):
            if state is State.CANCELLED:
                return Reply("ALREADY_CANCEL")
            if not waiting:
                return Reply("BAD_STATUS")  # a code arrived: no refund, finish with 6
            if self.now() - activation.bought_at < self.early_cancel_seconds:
                return Reply("EARLY_CANCEL_DENIED")
            self._cancel(activation)
            return Reply("ACCESS_CANCEL")
        return Reply("BAD_STATUS")

    def _action_getActiveActivations(self, params: dict[str, str]) -> Reply:
        for activation in self.activations.values():
            self._refresh(activation)
        rows = [
            {
                "activationId": str(a.id),
                "serviceCode": a.service,
                "phoneNumber": a.phone,
                "activationCost": float(a.cost),
                "activationStatus": _ACTIVATION_STATUS[a.state],
                "smsCode": a.codes[-1] if a.codes else None,
                "smsText": a.texts[-1] if a.texts else None,
                "activationTime": _stamp(a.bought_wall),
                "countryCode": str(a.country),
                "countryName": COUNTRIES.get(a.country, ""),
                "canGetAnotherSms": "1",
                "currency": 840,
            }
            for a in self.activations.values()
            if a.state in _OPEN_STATES
        ]
        if not rows:
            return _json({"status": "error", "error": "NO_ACTIVATIONS"})
        return _json({"status": "success", "activeActivations": rows})

    # -- rent (SMS-Activate's rent family; `rent_error_key` "error" is GrizzlySMS's form) --

    def _rent_error(self, token: str) -> Reply:
        return _json({"status": "error", self.rent_error_key: token})

    def _rent_cost(self, country: int, service: str, hours: int) -> Decimal:
        cost, _count = self.prices.get((country, service), (Decimal(0), 0))
        return (cost * 3 + Decimal("0.02") * hours).quantize(Decimal("0.01"))

    def _rent_hours(self, params: dict[str, str]) -> int | None:
        text = params.get("rent_time", "4") or "4"
        if not text.isdigit() or not 2 <= int(text) <= 1344:
            return None
        return int(text)

    def _action_getRentServicesAndCountries(self, params: dict[str, str]) -> Reply:
        hours = self._rent_hours(params)
        if hours is None:
            return self._rent_error("INVALID_TIME")
        country = int(params.get("country", "0") or "0")
        services = {
            service: {"cost": float(self._rent_cost(country, service, hours)), "quant": count}
            for (c, service), (_cost, count) in sorted(self.prices.items())
            if c == country
        }
        return _json(
            {
                "countries": {"0": country},
                "operators": {"0": "any"},
                "services": services,
                "currency": 840,
            }
        )

    def _action_getRentNumber(self, params: dict[str, str]) -> Reply:
        hours = self._rent_hours(params)
        if hours is None:
            return self._rent_error("INVALID_TIME")
        service, country = params.get("service", ""), int(params.get("country", "0") or "0")
        if service not in SERVICES:
            return self._rent_error("BAD_SERVICE")
        _cost, count = self.prices.get((country, service), (Decimal(0), 0))
        if count <= 0:
            return self._rent_error("NO_NUMBERS")
        cost = self._rent_cost(country, service, hours)
        if self.balance < cost:
            return self._rent_error("NO_BALANCE")
        rent_id, self._next_id = self._next_id, self._next_id + 1
        end = dt.datetime.now().replace(microsecond=0) + dt.timedelta(hours=hours)
        self.rents[rent_id] = FakeRent(
            rent_id,
            service,
            country,
            f"{PHONE_PREFIX.get(country, '1')}666{rent_id % 10**7:07d}",
            cost,
            self.now(),
            end,
        )
        self.balance -= cost
        return _json({"status": "success", "phone": self.rents[rent_id].phone_json()})

    def _rent(self, params: dict[str, str]) -> FakeRent | Reply:
        raw = params.get("id", "")
        rent = self.rents.get(int(raw)) if raw.isdigit() else None
        return rent if rent is not None else self._rent_error("NO_ID_RENT")

    def _action_getRentStatus(self, params: dict[str, str]) -> Reply:
        rent = self._rent(params)
        if isinstance(rent, Reply):
            return rent
        if not rent.sms:
            token = {"open": "STATUS_WAIT_CODE", "finished": "STATUS_FINISH"}.get(
                rent.state, "STATUS_CANCEL"
            )
            return self._rent_error(token)
        values = {
            str(i): {"phoneFrom": sender, "text": text, "service": rent.service, "date": date}
            for i, (sender, text, date) in enumerate(reversed(rent.sms))
        }
        return _json({"status": "success", "quantity": str(len(rent.sms)), "values": values})

    def _action_setRentStatus(self, params: dict[str, str]) -> Reply:
        rent = self._rent(params)
        if isinstance(rent, Reply):
            return rent
        status = params.get("status")
        if rent.state == "cancelled":
            return self._rent_error("ALREADY_CANCEL")
        if rent.state == "finished":
            return self._rent_error("ALREADY_FINISH")
        if status == "1":
            rent.state = "finished"
        elif status == "2":
            if rent.sms or self.now() - rent.bought_at > 20 * 60:
                return self._rent_error("CANT_CANCEL")
            rent.state = "cancelled"
            self.balance += rent.cost
        else:
            return self._rent_error("INCORECT_STATUS")
        return _json({"status": "success"})

    def _action_getRentList(self, params: dict[str, str]) -> Reply:
        values = {
            str(i): {"id": str(r.id), "phone": r.phone}
            for i, r in enumerate(r for r in self.rents.values() if r.state == "open")
        }
        if not values:
            return self._rent_error("NO_NUMBERS")
        return _json({"status": "success", "values": values})

    def _action_continueRentNumber(self, params: dict[str, str]) -> Reply:
        rent = self._rent(params)
        if isinstance(rent, Reply):
            return rent
        hours = self._rent_hours(params)
        if hours is None:
            return self._rent_error("INVALID_TIME")
        if rent.state != "open":
            return self._rent_error("RENT_DIE")
        rent.end += dt.timedelta(hours=hours)
        self.balance -= self._rent_cost(rent.country, rent.service, hours)
        return _json({"status": "success", "phone": rent.phone_json()})

    def deliver_rent_sms(self, rent_id: int | str, text: str, sender: str = "Telegram") -> None:
        with self._lock:
            stamp = _stamp(
                dt.datetime.now() + dt.timedelta(seconds=len(self.rents[int(rent_id)].sms))
            )
            self.rents[int(rent_id)].sms.append((sender, text, stamp))

    # -- state helpers (called under the lock) ------------------------------------------

    def _buy(self, params: dict[str, str]) -> FakeActivation | Reply:
        service, country_text = params.get("service", ""), params.get("country", "0") or "0"
        if service not in SERVICES:
            return Reply("BAD_SERVICE")
        if not country_text.isdigit() or int(country_text) not in COUNTRIES:
            return Reply("BAD_COUNTRY")
        country = int(country_text)
        cost, count = self.prices.get((country, service), (Decimal(0), 0))
        if count <= 0:
            return Reply("NO_NUMBERS")
        max_price = _decimal(params.get("maxPrice"))
        if max_price is not None and cost > max_price:
            return Reply(f"WRONG_MAX_PRICE:{cost}")
        if self.balance < cost:
            return Reply("NO_BALANCE")
        order_id = params.get("orderId")
        if order_id:
            if order_id in self._order_ids:
                return Reply("ORDER_ALREADY_EXISTS")
            self._order_ids.add(order_id)
        activation_id, self._next_id = self._next_id, self._next_id + 1
        activation = FakeActivation(
            id=activation_id,
            service=service,
            country=country,
            phone=f"{PHONE_PREFIX.get(country, '1')}555{activation_id % 10_000_000:07d}",
            cost=cost,
            bought_at=self.now(),
            bought_wall=dt.datetime.now().replace(microsecond=0)
            + dt.timedelta(seconds=self._clock_offset),
            code_due=self._code_due(),
        )
        self.activations[activation_id] = activation
        self.balance -= cost
        return activation

    def _find(self, raw_id: str) -> FakeActivation | Reply:
        if not raw_id.isdigit():
            return Reply("WRONG_ACTIVATION_ID")
        activation = self.activations.get(int(raw_id))
        if activation is None:
            return Reply("NO_ACTIVATION")
        self._refresh(activation)
        return activation

    def _code_due(self) -> float | None:
        return None if self.code_delay is None else self.now() + self.code_delay

    def _refresh(self, activation: FakeActivation) -> None:
        """Let time pass for one activation: a due code arrives, an old one expires."""
        now = self.now()
        if activation.code_due is not None and now >= activation.code_due:
            n = len(activation.codes)
            self._receive(activation, f"{(activation.id * 7 + n * 104_729) % 1_000_000:06d}")
        if activation.state in _OPEN_STATES and now - activation.bought_at >= self.lifetime:
            if activation.codes:
                activation.state = State.FINISHED
            else:
                self._cancel(activation)

    def _receive(self, activation: FakeActivation, code: str, text: str | None = None) -> None:
        if activation.state in (State.WAIT_CODE, State.READY, State.WAIT_RETRY):
            activation.codes.append(code)
            activation.texts.append(text or sms_text(activation.service, code))
            activation.sms_at.append(dt.datetime.now(dt.UTC).replace(tzinfo=None))
            activation.state = State.CODE
        activation.code_due = None

    def _cancel(self, activation: FakeActivation) -> None:
        activation.state = State.CANCELLED
        activation.code_due = None
        self.balance += activation.cost

    # -- HTTP plumbing ------------------------------------------------------------------

    def _record(self, params: dict[str, str]) -> _Scripted | None:
        """Log the call and take the scripted answer for it, if any."""
        action = params.get("action", "")
        with self._lock:
            self.calls.append(Call(action, {k: v for k, v in params.items() if k != "api_key"}))
            for name in (action, "*"):
                queue = self._script.get(name)
                if queue:
                    return queue.popleft()
        return None

    def _control(self, path: str, method: str, payload: Any) -> Reply:
        """Controls for a fake running in another process.

        GET /_fake/calls -> [[action, params], ...]; GET /_fake/state -> balance, activations;
        POST /_fake/script {"action", "answers": ["drop" | {"body", "status", "headers"}],
        "process"}; POST /_fake/deliver {"id", "code", "text" (optional)};
        POST /_fake/advance {"seconds"}.
        """
        name = path.removeprefix(CONTROL_PREFIX)
        if method == "GET" and name == "calls":
            with self._lock:
                return _json([[c.action, c.params] for c in self.calls])
        if method == "GET" and name == "state":
            with self._lock:
                activations = {
                    str(a.id): {"state": a.state.value, "codes": a.codes, "phone": a.phone}
                    for a in self.activations.values()
                }
                return _json({"balance": str(self.balance), "activations": activations})
        if method == "POST" and name == "script":
            answers = [
                Fault(a)
                if isinstance(a, str)
                else Reply(a.get("body", ""), a.get("status", 200), a.get("headers", {}))
                for a in payload["answers"]
            ]
            self.script(payload["action"], *answers, process=payload.get("process"))
            return _json({"ok": True})
        if method == "POST" and name == "deliver":
            self.deliver_code(payload["id"], str(payload["code"]), payload.get("text"))
            return _json({"ok": True})
        if method == "POST" and name == "advance":
            self.advance(float(payload["seconds"]))
            return _json({"ok": True})
        return Reply("unknown control", status=404)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # A listen backlog like a real server's (socketserver's default is 5): under a storm of
    # concurrent purchases the kernel dropped connection attempts past it, and the client's
    # retry came after a second — past the cluster's 1 s connect timeout, so a purchase
    # answered ERROR_SQL (nothing charged) for a fault the real upstream does not have.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], fake: FakeGrizzly):
        self.fake = fake
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that gave up (read timeout, dropped connection) are part of the game.
        pass


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # one request per connection: a drop is a clean close

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # request lines carry the API key

    def _handle(self) -> None:
        fake = self.server.fake
        try:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if url.path.startswith(CONTROL_PREFIX):
                self._write(fake._control(url.path, self.command, json.loads(body or b"null")))
                return
            if url.path != HANDLER_PATH:
                self._write(Reply("not found", status=404))
                return
            params = dict(parse_qsl(url.query, keep_blank_values=True))
            if body and "json" not in (self.headers.get("Content-Type") or ""):
                params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
            scripted = fake._record(params)
            if fake.latency and fake._stopping.wait(fake.latency):
                return
            self._respond(fake, params, scripted)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as exc:  # a bug in the fake: keep it visible to the test
            fake.errors.append(exc)
            log.exception("fake grizzly failed on %s", self.command)
            self._write(Reply("fake grizzly internal error", status=500))

    def _respond(self, fake: FakeGrizzly, params: dict[str, str], scripted: _Scripted | None):
        if scripted is None:
            self._write(fake.answer(params))
            return
        real = fake.answer(params) if scripted.process else None
        answer = scripted.answer
        if isinstance(answer, Reply):
            self._write(answer)
        elif answer is Fault.DROP:
            self.close_connection = True
        elif answer is Fault.SLOW:
            if not fake._stopping.wait(fake.slow_seconds) and real is not None:
                self._write(real)
        elif answer is Fault.HTTP_500:
            self._write(Reply("Internal Server Error", status=500))
        elif answer is Fault.RATE_LIMIT:
            headers = {"Retry-After": f"{fake.retry_after:g}"}
            self._write(Reply("Too Many Requests", status=429, headers=headers))
        elif answer is Fault.TRUNCATED_JSON:
            body = real.encoded() if real else b'{"status": "success", "items": [1, 2, 3]}'
            self._write(Reply(body[: len(body) // 2], content_type="application/json"))
        elif answer is Fault.TRUNCATED_BODY:
            body = real.encoded() if real else b"ACCESS_BALANCE:100.00"
            self._write(Reply(body), cut=len(body) // 2)
        elif answer is Fault.GARBAGE:
            self._write(Reply(_GARBAGE, content_type="application/octet-stream"))
        elif answer is Fault.PROHIBITED:
            self._write(Reply(PROHIBITED_TEXT))

    def _write(self, reply: Reply, cut: int | None = None) -> None:
        """Send `reply`; with `cut`, send only that many body bytes and close."""
        body = reply.encoded()
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.guessed_content_type())
        self.send_header("Content-Length", str(len(body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body if cut is None else body[:cut])
        self.wfile.flush()


def _json(data: Any) -> Reply:
    return Reply(json.dumps(data), content_type="application/json")


def _stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _decimal(value: str | None) -> Decimal | None:
    try:
        return Decimal(value) if value else None
    except InvalidOperation:
        return None


if pytest is not None:

    @pytest.fixture
    def fake_grizzly():
        """A running `FakeGrizzly` with api_key "test-key"; fails the test on fake bugs."""
        with FakeGrizzly() as server:
            yield server
        assert not server.errors, f"fake grizzly raised: {server.errors!r}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run a fake GrizzlySMS handler API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--api-key", default="test-key")
    parser.add_argument("--balance", default="100000.00")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay before answers")
    parser.add_argument(
        "--code-delay",
        type=float,
        default=0.0,
        help="seconds until a code arrives; negative = never",
    )
    parser.add_argument("--early-cancel-seconds", type=float, default=0.0)
    parser.add_argument(
        "--first-id", type=int, default=700_000_001, help="ids of its own, as a provider's"
    )
    args = parser.parse_args(argv)
    fake = FakeGrizzly(
        api_key=args.api_key,
        host=args.host,
        port=args.port,
        balance=args.balance,
        code_delay=None if args.code_delay < 0 else args.code_delay,
        latency=args.latency_ms / 1000,
        early_cancel_seconds=args.early_cancel_seconds,
    )
    fake._next_id = args.first_id
    fake.start()
    print(f"listening on {fake.url}", flush=True)
    try:
        while fake._thread is not None and fake._thread.is_alive():
            fake._thread.join(timeout=1)
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
