"""The 5sim client: its REST API (JSON, `Authorization: Bearer <token>`) behind our seam.

5sim names countries and products (`england`, `telegram`) where the SMS-Activate protocol
uses numeric country ids and short service codes; `COUNTRIES` and `PRODUCTS` map the ones
we list, and anything unmapped in a price list is skipped and named in `skipped`.

Reads are retried on transport failures; a purchase, cancel or finish is sent once. A
purchase whose answer was lost raises `UnknownOutcome`. Refusals arrive as short plain-text
bodies ("no free phones", "not enough user balance") and become our typed errors.
The token travels in a header only and never appears in a message.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

import requests

from . import deadline, transport
from .base import (
    ActiveActivation,
    Connection,
    CountryInfo,
    PriceEntry,
    PurchasedNumber,
    RentedNumber,
    RentOffer,
    RentSms,
    RentState,
    RentStatus,
    ServiceInfo,
    SetStatusAnswer,
    StatusAnswer,
    Upstream,
    UpstreamState,
)
from .errors import (
    AccountInactive,
    BadCountry,
    BadKey,
    BadService,
    CantCancel,
    EarlyCancelDenied,
    NoActivation,
    NoBalance,
    NoNumbers,
    RateLimited,
    RentUnsupported,
    StatusAlreadyChanged,
    UnknownOutcome,
    UpstreamError,
    UpstreamRejected,
    UpstreamUnavailable,
)
from .transport import describe_failure, nothing_sent, retry_after, session_for

log = logging.getLogger(__name__)

DEFAULT_URL = "https://5sim.net/v1"

# 5sim country name → (SMS-Activate country id, display name).
COUNTRIES: dict[str, tuple[int, str]] = {
    "russia": (0, "Russia"),
    "ukraine": (1, "Ukraine"),
    "kazakhstan": (2, "Kazakhstan"),
    "china": (3, "China"),
    "philippines": (4, "Philippines"),
    "myanmar": (5, "Myanmar"),
    "indonesia": (6, "Indonesia"),
    "malaysia": (7, "Malaysia"),
    "kenya": (8, "Kenya"),
    "tanzania": (9, "Tanzania"),
    "vietnam": (10, "Vietnam"),
    "kyrgyzstan": (11, "Kyrgyzstan"),
    "israel": (13, "Israel"),
    "hongkong": (14, "Hong Kong"),
    "poland": (15, "Poland"),
    "england": (16, "United Kingdom"),
    "nigeria": (19, "Nigeria"),
    "egypt": (21, "Egypt"),
    "india": (22, "India"),
    "ireland": (23, "Ireland"),
    "cambodia": (24, "Cambodia"),
    "southafrica": (31, "South Africa"),
    "romania": (32, "Romania"),
    "colombia": (33, "Colombia"),
    "estonia": (34, "Estonia"),
    "canada": (36, "Canada"),
    "morocco": (37, "Morocco"),
    "argentina": (39, "Argentina"),
    "uzbekistan": (40, "Uzbekistan"),
    "germany": (43, "Germany"),
    "lithuania": (44, "Lithuania"),
    "sweden": (46, "Sweden"),
    "netherlands": (48, "Netherlands"),
    "latvia": (49, "Latvia"),
    "austria": (50, "Austria"),
    "thailand": (52, "Thailand"),
    "mexico": (54, "Mexico"),
    "spain": (56, "Spain"),
    "turkey": (62, "Turkey"),
    "czech": (63, "Czech Republic"),
    "pakistan": (66, "Pakistan"),
    "brazil": (73, "Brazil"),
    "france": (78, "France"),
    "italy": (86, "Italy"),
    "portugal": (117, "Portugal"),
    "georgia": (128, "Georgia"),
    "finland": (163, "Finland"),
    "usa": (187, "USA"),
}

# 5sim product name → (our service code, display name).
PRODUCTS: dict[str, tuple[str, str]] = {
    "telegram": ("tg", "Telegram"),
    "whatsapp": ("wa", "WhatsApp"),
    "google": ("go", "Google"),
    "discord": ("ds", "Discord"),
    "instagram": ("ig", "Instagram"),
    "openai": ("dr", "OpenAI"),
    "facebook": ("fb", "Facebook"),
    "twitter": ("tw", "Twitter"),
    "viber": ("vi", "Viber"),
    "vkontakte": ("vk", "VKontakte"),
    "wechat": ("wb", "WeChat"),
    "tiktok": ("lf", "TikTok"),
    "microsoft": ("mm", "Microsoft"),
    "amazon": ("am", "Amazon"),
    "uber": ("ub", "Uber"),
    "yahoo": ("mb", "Yahoo"),
    "netflix": ("nf", "Netflix"),
    "paypal": ("ts", "PayPal"),
    "linkedin": ("tn", "LinkedIn"),
    "snapchat": ("fu", "Snapchat"),
    "line": ("me", "LINE"),
    "mailru": ("ma", "Mail.ru"),
    "yandex": ("ya", "Yandex"),
    "tinder": ("oi", "Tinder"),
    "steam": ("mt", "Steam"),
    "other": ("ot", "Any other"),
}
# 5sim's hosting products (a number rented for a while; it receives every SMS) by length.
HOSTING_PRODUCTS: dict[int, str] = {3: "3hours", 24: "1day", 240: "10days", 720: "1month"}
COUNTRY_BY_ID: dict[int, str] = {cid: name for name, (cid, _label) in COUNTRIES.items()}
PRODUCT_BY_CODE: dict[str, str] = {code: name for name, (code, _label) in PRODUCTS.items()}

# Plain-text refusals (lower-cased, matched by prefix) → our typed errors.
_REFUSALS: tuple[tuple[str, type[UpstreamError]], ...] = (
    ("no free phones", NoNumbers),
    ("not enough user balance", NoBalance),
    ("not enough rating", AccountInactive),
    ("bad country", BadCountry),
    ("country is incorrect", BadCountry),
    ("bad operator", BadCountry),
    ("no product", BadService),
    ("product is incorrect", BadService),
    ("order not found", NoActivation),
    ("record not found", NoActivation),
    ("order expired", NoActivation),
    ("order has sms", StatusAlreadyChanged),
    ("order no sms", StatusAlreadyChanged),
    ("hosting order", StatusAlreadyChanged),
    ("you need to wait time", EarlyCancelDenied),
    ("server offline", UpstreamUnavailable),
)
_OPEN_STATUSES = ("PENDING", "RECEIVED")
# The order history is read in pages of _PAGE, newest first, at most _MAX_PAGES of them,
# until it reaches an order that expired this long ago.
_PAGE = 100
_MAX_PAGES = 30
_EXPIRED_LONG_AGO = dt.timedelta(hours=1)
_CLOSED_STATUSES = ("CANCELED", "TIMEOUT", "BANNED", "FINISHED")


class _Lost(Exception):
    """Internal: the request may have been processed but no readable answer came back."""


class FiveSimClient(Upstream):
    """`Upstream` backed by 5sim's API. Raises the `reseller.upstream.errors` classes."""

    name = "5sim"

    def __init__(
        self,
        token: str,
        url: str = DEFAULT_URL,
        name: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 15.0,
        retries: int = 2,
        backoff: float = 0.3,
        session: requests.Session | None = None,
    ):
        self._token = token
        self.url = url.rstrip("/")
        if name is not None:
            self.name = name
        self.timeout = (connect_timeout, read_timeout)
        self.retries = retries
        self.backoff = backoff
        self._session = session or session_for(self.url)
        self._sleep: Callable[[float], None] = time.sleep
        self.skipped: tuple[str, ...] = ()

    @classmethod
    def connect(cls, connection: Connection) -> FiveSimClient:
        return cls(
            connection.api_key,
            url=connection.url or DEFAULT_URL,
            name=connection.name,
            connect_timeout=connection.connect_timeout,
            read_timeout=connection.read_timeout,
        )

    def __repr__(self) -> str:
        return f"FiveSimClient(name={self.name!r}, url={self.url!r})"

    # -- reads (retried) ---------------------------------------------------------------

    def get_balance(self) -> Decimal:
        data = self._read("/user/profile")
        balance = _decimal(data.get("balance")) if isinstance(data, dict) else None
        if balance is None:
            raise UpstreamRejected("profile without a balance")
        return balance

    def get_countries(self) -> list[CountryInfo]:
        return [CountryInfo(id=cid, name=label) for cid, label in COUNTRIES.values()]

    def get_services(self) -> list[ServiceInfo]:
        return [ServiceInfo(code=code, name=label) for code, label in PRODUCTS.values()]

    def get_prices(
        self, service: str | None = None, country_id: int | None = None
    ) -> list[PriceEntry]:
        """Per mapped (country, product): the dearest cost among operators with stock (we
        buy `any` operator, so we must afford each) and their stock together."""
        params = {}
        if country_id is not None:
            if country_id not in COUNTRY_BY_ID:
                return []
            params["country"] = COUNTRY_BY_ID[country_id]
        if service is not None:
            if service not in PRODUCT_BY_CODE:
                return []
            params["product"] = PRODUCT_BY_CODE[service]
        data = self._read("/guest/prices", params)
        if not isinstance(data, dict):
            raise UpstreamRejected("prices: not an object")
        entries: list[PriceEntry] = []
        skipped: set[str] = set()
        for country_name, products in data.items():
            if not isinstance(products, dict):
                continue
            if country_name not in COUNTRIES:
                skipped.add(f"country {country_name}")
                continue
            for product_name, operators in products.items():
                if product_name not in PRODUCTS:
                    skipped.add(f"product {product_name}")
                    continue
                entry = _price_entry(
                    COUNTRIES[country_name][0], PRODUCTS[product_name][0], operators
                )
                if entry is not None:
                    entries.append(entry)
        self.skipped = tuple(sorted(skipped))
        return entries

    def get_status(self, upstream_id: str) -> StatusAnswer:
        order = self._read(f"/user/check/{_order_id(upstream_id)}")
        if not isinstance(order, dict) or "status" not in order:
            raise UpstreamRejected("check: not an order")
        return _status_of(order)

    def get_active_activations(self) -> list[ActiveActivation]:
        """The open activation orders, read from the order history newest first, page by
        page, until its end or a page that reaches orders expired long ago (5sim lists
        oldest first unless asked otherwise: with a long history the open orders would
        never be seen)."""
        active = []
        for order in self._recent_orders():
            if not isinstance(order, dict) or order.get("status") not in _OPEN_STATUSES:
                continue
            upstream_id = _id(order.get("id"))
            if upstream_id is None:
                continue
            sms = _messages(order)
            active.append(
                ActiveActivation(
                    upstream_id=upstream_id,
                    phone=_digits(order.get("phone")),
                    service=PRODUCTS.get(str(order.get("product")), (None,))[0],
                    country_id=COUNTRIES.get(str(order.get("country")), (None,))[0],
                    status=str(order.get("status")),
                    code=sms[-1][0] if sms else None,
                )
            )
        return active

    def _recent_orders(self, category: str = "activation") -> list[Any]:
        """The `category`'s orders (activation or hosting), newest first, up to a page that
        reaches orders that ended long ago."""
        orders: list[Any] = []
        # An order that ended before this has ended upstream for sure, with room for the two
        # clocks' disagreement.
        expired_before = dt.datetime.now(dt.UTC).replace(tzinfo=None) - _EXPIRED_LONG_AGO
        for page in range(_MAX_PAGES):
            params = {
                "category": category,
                "limit": str(_PAGE),
                "offset": str(page * _PAGE),
                "order": "id",
                "reverse": "true",
            }
            data = self._read("/user/orders", params)
            batch = data.get("Data") if isinstance(data, dict) else None
            if not isinstance(batch, list):
                raise UpstreamRejected("orders: no Data list")
            orders.extend(batch)
            total = _count(data.get("Total")) if "Total" in data else None
            if len(batch) < _PAGE or (total is not None and len(orders) >= total):
                return orders
            oldest = batch[-1] if isinstance(batch[-1], dict) else {}
            expires = _timestamp(oldest.get("expires"))
            if expires is not None and expires < expired_before:
                return orders
        log.warning("%s: more than %d recent orders; reading only those", self.name, len(orders))
        return orders

    # -- actions (sent once) -----------------------------------------------------------

    def get_number(
        self, service: str, country_id: int, max_price: Decimal | None = None
    ) -> PurchasedNumber:
        product = PRODUCT_BY_CODE.get(service)
        if product is None:
            raise BadService()
        country = COUNTRY_BY_ID.get(country_id)
        if country is None:
            raise BadCountry()
        params = {}
        if max_price is not None:
            params["maxPrice"] = format(Decimal(str(max_price)), "f")
        try:
            order = self._once(f"/user/buy/activation/{country}/any/{product}", params)
        except _Lost as lost:
            raise UnknownOutcome(f"{self.name} buy: {lost}") from None
        upstream_id = _id(order.get("id")) if isinstance(order, dict) else None
        phone = _digits(order.get("phone")) if isinstance(order, dict) else None
        if upstream_id is None or phone is None:
            # A 200 we cannot read may still be a sale: settle it like a lost answer.
            raise UnknownOutcome(f"{self.name} buy: unreadable order")
        return PurchasedNumber(
            upstream_id=upstream_id,
            phone=phone,
            cost=_decimal(order.get("price")),
            country_id=country_id,
            activation_time=_timestamp(order.get("created_at")),
            activation_end=_timestamp(order.get("expires")),
        )

    def set_status(self, upstream_id: str, status: int) -> SetStatusAnswer:
        """1 and 3 need no call (5sim delivers every further SMS to the open order);
        6 finishes the order, 8 cancels it."""
        if status == 1:
            return SetStatusAnswer.READY
        if status == 3:
            return SetStatusAnswer.RETRY_GET
        verb, answer = {6: ("finish", SetStatusAnswer.ACTIVATION), 8: ("cancel", None)}.get(
            int(status), (None, None)
        )
        if verb is None:
            raise UpstreamRejected(f"status {status} has no 5sim equivalent")
        try:
            order = self._once(f"/user/{verb}/{_order_id(upstream_id)}", {})
        except _Lost as lost:
            raise UpstreamUnavailable(f"{self.name} {verb}: {lost}") from None
        if answer is not None:
            return answer
        state = order.get("status") if isinstance(order, dict) else None
        if state not in (None, "CANCELED"):
            raise StatusAlreadyChanged()
        return SetStatusAnswer.CANCEL

    # -- hosting (5sim's rent): fixed lengths, any SMS, no cancel, no continue ------------

    rents = True

    def get_rent_offers(
        self, country_id: int, hours: int, operator: str | None = None
    ) -> list[RentOffer]:
        """A hosted number receives every SMS: one offer stands for every service we map."""
        product, country = HOSTING_PRODUCTS.get(hours), COUNTRY_BY_ID.get(country_id)
        if product is None or country is None:
            return []
        data = self._read(f"/guest/products/{country}/{operator or 'any'}")
        item = data.get(product) if isinstance(data, dict) else None
        if not isinstance(item, dict) or item.get("Category") != "hosting":
            return []
        cost, count = _decimal(item.get("Price")), _count(item.get("Qty"))
        if cost is None or cost < 0:
            return []
        return [RentOffer(service=code, cost=cost, count=count) for code, _ in PRODUCTS.values()]

    def rent_number(
        self, service: str, country_id: int, hours: int, operator: str | None = None
    ) -> RentedNumber:
        product = HOSTING_PRODUCTS.get(hours)
        if product is None:
            raise RentUnsupported(f"no {hours}-hour hosting at 5sim")
        country = COUNTRY_BY_ID.get(country_id)
        if country is None:
            raise BadCountry()
        try:
            order = self._once(f"/user/buy/hosting/{country}/{operator or 'any'}/{product}", {})
        except _Lost as lost:
            raise UnknownOutcome(f"{self.name} hosting: {lost}") from None
        upstream_id = _id(order.get("id")) if isinstance(order, dict) else None
        phone = _digits(order.get("phone")) if isinstance(order, dict) else None
        if upstream_id is None or phone is None:
            raise UnknownOutcome(f"{self.name} hosting: unreadable order")
        return RentedNumber(
            upstream_id=upstream_id,
            phone=phone,
            ends_at=_timestamp(order.get("expires")),
            cost=_decimal(order.get("price")),
        )

    def get_rent_status(self, upstream_id: str) -> RentStatus:
        order_id = _order_id(upstream_id)
        order = self._read(f"/user/check/{order_id}")
        inbox = self._read(f"/user/sms/inbox/{order_id}")
        rows = inbox.get("Data") if isinstance(inbox, dict) else None
        messages = []
        for item in rows if isinstance(rows, list) else []:
            if isinstance(item, dict) and isinstance(item.get("text"), str):
                messages.append(
                    RentSms(
                        sender=str(item.get("sender") or "") or None,
                        text=item["text"],
                        received_at=_timestamp(item.get("created_at") or item.get("date")),
                    )
                )
        messages.sort(key=lambda m: m.received_at or dt.datetime.min)
        state = order.get("status") if isinstance(order, dict) else None
        closed = {"CANCELED": RentState.CANCELLED, "BANNED": RentState.CANCELLED}
        if state in ("FINISHED", "TIMEOUT"):
            return RentStatus(RentState.FINISHED, tuple(messages))
        return RentStatus(closed.get(state, RentState.OPEN), tuple(messages))

    def set_rent_status(self, upstream_id: str, status: int) -> None:
        """1 finishes the hosting order; hosting orders cannot be cancelled at 5sim."""
        if int(status) != 1:
            raise CantCancel()
        try:
            self._once(f"/user/finish/{_order_id(upstream_id)}", {})
        except _Lost as lost:
            raise UpstreamUnavailable(f"{self.name} finish: {lost}") from None

    def get_rent_list(self) -> list[RentedNumber]:
        return [
            RentedNumber(upstream_id=_id(o.get("id")), phone=_digits(o.get("phone")) or "")
            for o in self._recent_orders("hosting")
            if isinstance(o, dict) and o.get("status") in _OPEN_STATUSES and _id(o.get("id"))
        ]

    # -- transport ----------------------------------------------------------------------

    def _read(self, path: str, params: dict[str, str] | None = None) -> Any:
        attempt = 0
        while True:
            failure, response = self._send(path, params)
            wait: float | None = None
            if response is not None and response.status_code == 429:
                wait = retry_after(response)
                if attempt >= self.retries:
                    raise RateLimited(wait)
                failure = "rate limited"
            elif response is not None and response.status_code >= 500:
                failure = f"HTTP {response.status_code}"
            elif response is not None:
                return self._answer(path, response)
            if attempt >= self.retries:
                raise UpstreamUnavailable(f"{self.name} {path}: {failure}")
            delay = wait if wait is not None else self.backoff * 2**attempt
            left = deadline.time_left()
            if left is not None and left <= delay:  # no time for another try
                raise UpstreamUnavailable(f"{self.name} {path}: {failure}")
            self._sleep(delay)
            attempt += 1

    def _once(self, path: str, params: dict[str, str]) -> Any:
        failure, response = self._send(path, params)
        if response is None:
            if nothing_sent(failure):
                raise UpstreamUnavailable(f"{self.name} {path}: {failure}")
            raise _Lost(failure)
        if response.status_code == 429:
            raise RateLimited(retry_after(response))
        if response.status_code == 503:
            raise UpstreamUnavailable(f"{self.name} {path}: HTTP 503")
        if response.status_code >= 500:
            raise _Lost(f"HTTP {response.status_code}")
        try:
            return self._answer(path, response)
        except UpstreamRejected as exc:
            if response.status_code == 200:
                raise _Lost(f"unreadable answer: {exc.text[:60]}") from None
            raise

    def _answer(self, path: str, response: requests.Response) -> Any:
        """The JSON of a 2xx answer; a refusal's typed error otherwise."""
        if response.status_code == 401:
            raise BadKey()
        text = response.content.decode("utf-8", errors="replace").strip()
        if text[:1] in ("{", "[") and response.status_code < 400:
            try:
                return json.loads(text)
            except ValueError:
                raise UpstreamRejected(f"{path}: unreadable JSON") from None
        raise _refusal(text, response.status_code)

    def _send(
        self, path: str, params: dict[str, str] | None
    ) -> tuple[str, requests.Response | None]:
        timeout = deadline.capped(self.timeout)
        if timeout is None:  # the caller's time budget is spent: send nothing
            raise UpstreamUnavailable(f"{self.name} {path}: time budget spent")
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        started = time.monotonic()
        try:
            response = transport.get(
                self._session, self.url + path, params=params, headers=headers, timeout=timeout
            )
            response.content  # noqa: B018 - read the body inside the try
        except requests.RequestException as exc:
            failure = describe_failure(exc)
            log.debug("%s %s: %s", self.name, path, failure)
            return failure, None
        log.debug(
            "%s %s: HTTP %s in %.0f ms",
            self.name,
            path,
            response.status_code,
            (time.monotonic() - started) * 1000,
        )
        return "", response


# -- pure parsing helpers ----------------------------------------------------------------


def _refusal(text: str, status_code: int) -> UpstreamError:
    lowered = text.lower()
    for prefix, cls in _REFUSALS:
        if lowered.startswith(prefix):
            return cls()
    if status_code in (403, 404) and not text:
        return UpstreamUnavailable(f"HTTP {status_code}")
    return UpstreamRejected(text or f"HTTP {status_code}")


def _price_entry(country_id: int, service: str, operators: Any) -> PriceEntry | None:
    if not isinstance(operators, dict):
        return None
    dearest: Decimal | None = None
    cheapest: Decimal | None = None
    stock = 0
    for offer in operators.values():
        if not isinstance(offer, dict):
            continue
        cost, count = _decimal(offer.get("cost")), _count(offer.get("count"))
        if cost is None or cost < 0:
            continue
        cheapest = cost if cheapest is None else min(cheapest, cost)
        if count > 0:
            stock += count
            dearest = cost if dearest is None else max(dearest, cost)
    cost = dearest if dearest is not None else cheapest
    if cost is None:
        return None
    return PriceEntry(country_id=country_id, service=service, cost=cost, count=stock)


def _messages(order: dict) -> list[tuple[str, str | None]]:
    """(code, text) of each SMS with a code, in arrival order."""
    sms = order.get("sms")
    if not isinstance(sms, list):
        return []
    found = []
    for item in sms:
        if isinstance(item, dict) and str(item.get("code") or "").strip():
            text = item.get("text")
            found.append((str(item["code"]).strip(), text if isinstance(text, str) else None))
    return found


def _status_of(order: dict) -> StatusAnswer:
    state = str(order.get("status"))
    sms = _messages(order)
    if sms:
        code, text = sms[-1]
        return StatusAnswer(UpstreamState.CODE, code, messages=len(sms), text=text)
    if state in _CLOSED_STATUSES:
        return StatusAnswer(UpstreamState.CANCELLED)
    return StatusAnswer(UpstreamState.WAIT_CODE, messages=0)


def _order_id(upstream_id: str) -> str:
    text = str(upstream_id).strip()
    if not text.isdigit():
        raise NoActivation()
    return text


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def _count(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    try:
        return max(int(value), 0)
    except (TypeError, ValueError):
        return 0


def _id(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value >= 0:
        return str(value)
    if isinstance(value, str) and value.strip().isdigit():
        return value.strip()
    return None


def _digits(phone: Any) -> str | None:
    if isinstance(phone, str):
        phone = phone.strip().removeprefix("+")
    return _id(phone)


def _timestamp(value: Any) -> dt.datetime | None:
    """5sim's RFC 3339 times (nanoseconds and a Z) as naive UTC."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:  # Python reads at most microseconds
        digits = "".join(ch for ch in rest if ch.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC).replace(tzinfo=None)
    return when
