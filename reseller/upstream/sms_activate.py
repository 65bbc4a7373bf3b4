"""The SMS-Activate protocol client (`handler_api.php`): GrizzlySMS, HeroSMS, SMSBower,
SMSHub and any other provider speaking the classic dialect over HTTP GET, each by its base
URL. Their quirks are handled here: ids as strings or numbers, `canGetAnotherSms` variants,
codes with leading zeros, JSON or plain-text answers, free-text refusals.

Two rules shape this module:

* Reads that are safe to repeat are retried on transport failures; a purchase or a status
  change is sent at most once. A purchase whose answer was lost raises `UnknownOutcome`
  (a number may have been bought; settle it against `get_active_activations`), unless the
  connection was refused before anything was sent.
* The API key travels in the query string, so it must never leave this module inside a
  `requests` exception, a URL or a log line. Transport failures are re-raised as our own
  exceptions outside the `except` block (no chained cause carrying the URL), and urllib3's
  debug log line is redacted.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
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
    NoActivations,
    NoIdRent,
    NoNumbers,
    RateLimited,
    UnknownOutcome,
    UpstreamError,
    UpstreamRejected,
    UpstreamUnavailable,
    error_for_token,
)
from .transport import describe_failure, nothing_sent, retry_after, session_for

log = logging.getLogger(__name__)

DEFAULT_URL = "https://api.grizzlysms.com/stubs/handler_api.php"
_TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
_NAME_FIELDS = ("eng", "name", "rus", "chn")


class _ApiKeyRedaction(logging.Filter):
    """Blank `api_key=...` in urllib3's request log line (it logs the full query string)."""

    _pattern = re.compile(r"(api_key=)[^&\s\"']*")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "api_key=" in message:
            record.msg = self._pattern.sub(r"\1***", message)
            record.args = None
        return True


def _redact_urllib3_logs() -> None:
    logger = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(f, _ApiKeyRedaction) for f in logger.filters):
        logger.addFilter(_ApiKeyRedaction())


class _Lost(Exception):
    """Internal: the request may have reached the server but no readable answer came back."""


class _Answer:
    """A 200 answer: the trimmed text, and the raw bytes for telling garbage from text."""

    def __init__(self, raw: bytes):
        self.raw = raw
        self.text = raw.decode("utf-8", errors="replace").strip()

    @property
    def is_json(self) -> bool:
        return self.text[:1] in ("{", "[")

    @property
    def is_readable_text(self) -> bool:
        """Printable text that is not markup: a free-text refusal rather than a broken body."""
        if not self.text or "\ufffd" in self.text or self.text[0] == "<":
            return False
        return all(ch.isprintable() or ch in "\r\n\t" for ch in self.text)

    def json(self) -> Any:
        return json.loads(self.text)


class SmsActivateClient(Upstream):
    """`Upstream` backed by an SMS-Activate-protocol handler API.

    Raises the `reseller.upstream.errors` classes: one per protocol token,
    `UpstreamRejected` for free text, `UpstreamUnavailable` / `RateLimited` for transport
    failures, and `UnknownOutcome` when a purchase's answer was lost.
    """

    name = "grizzly"

    def __init__(
        self,
        api_key: str,
        url: str = DEFAULT_URL,
        name: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 15.0,
        retries: int = 2,
        backoff: float = 0.3,
        max_retry_after: float = 10.0,
        session: requests.Session | None = None,
    ):
        self._api_key = api_key
        self.url = url
        if name is not None:
            self.name = name
        self.timeout = (connect_timeout, read_timeout)
        self.retries = retries
        self.backoff = backoff
        self.max_retry_after = max_retry_after
        self._session = session or session_for(url)
        self._sleep: Callable[[float], None] = time.sleep
        _redact_urllib3_logs()

    def __repr__(self) -> str:
        return f"SmsActivateClient(name={self.name!r}, url={self.url!r})"

    @classmethod
    def connect(cls, connection: Connection) -> SmsActivateClient:
        return cls(
            connection.api_key,
            url=connection.url or DEFAULT_URL,
            name=connection.name,
            connect_timeout=connection.connect_timeout,
            read_timeout=connection.read_timeout,
        )

    # -- reads (retried) ---------------------------------------------------------------

    def get_balance(self) -> Decimal:
        answer = self._read("getBalance")
        head, _, rest = answer.text.partition(":")
        if head != "ACCESS_BALANCE":
            raise self._error(answer)
        balance = _decimal(rest)
        if balance is None:
            raise UpstreamRejected(self._redact(answer.text))
        return balance

    def get_prices(
        self, service: str | None = None, country_id: int | None = None
    ) -> list[PriceEntry]:
        params: dict[str, str] = {}
        if service is not None:
            params["service"] = service
        if country_id is not None:
            params["country"] = str(country_id)
        data = self._read_json("getPrices", params)
        if isinstance(data, list) and not data:
            return []
        if not isinstance(data, dict):
            raise UpstreamRejected("getPrices: unexpected JSON shape")
        entries = []
        for outer, inner in data.items():
            if not isinstance(inner, dict):
                continue
            # Usually country -> service -> price; some Grizzly answers nest service -> country.
            country_first = _int(outer) is not None
            for key, price in inner.items():
                country, code = (outer, key) if country_first else (key, outer)
                entry = _price_entry(country, code, price)
                if entry is not None:
                    entries.append(entry)
        return entries

    def get_countries(self) -> list[CountryInfo]:
        data = self._read_json("getCountries")
        if isinstance(data, dict) and isinstance(data.get("countries"), list | dict):
            data = data["countries"]
        if isinstance(data, dict) and "id" in data and not isinstance(data["id"], dict):
            rows: Iterable[tuple[Any, Any]] = [(None, data)]  # a single country object
        elif isinstance(data, dict):
            rows = data.items()
        elif isinstance(data, list):
            rows = ((None, item) for item in data)
        else:
            raise UpstreamRejected("getCountries: unexpected JSON shape")
        countries = []
        for key, item in rows:
            country = _country(key, item)
            if country is not None:
                countries.append(country)
        return countries

    def get_services(self) -> list[ServiceInfo]:
        data = self._read_json("getServicesList")
        if isinstance(data, dict) and "services" in data:
            data = data["services"]
        if isinstance(data, dict):  # {"tg": "Telegram", ...}
            data = [{"code": code, "name": name} for code, name in data.items()]
        if not isinstance(data, list):
            raise UpstreamRejected("getServicesList: unexpected JSON shape")
        services = []
        for item in data:
            if not isinstance(item, dict):
                continue
            code, name = item.get("code"), item.get("name")
            if isinstance(code, str) and code.strip():
                name = name.strip() if isinstance(name, str) and name.strip() else code.strip()
                services.append(ServiceInfo(code=code.strip(), name=name))
        return services

    def get_status(self, upstream_id: str) -> StatusAnswer:
        answer = self._read("getStatus", {"id": str(upstream_id)})
        head, sep, rest = answer.text.partition(":")
        if head in (UpstreamState.WAIT_CODE, UpstreamState.WAIT_RESEND, UpstreamState.CANCELLED):
            return StatusAnswer(UpstreamState(head))
        if head == UpstreamState.WAIT_RETRY:
            return StatusAnswer(UpstreamState.WAIT_RETRY, rest if sep and rest else None)
        if head == UpstreamState.CODE and rest:
            return StatusAnswer(UpstreamState.CODE, rest)
        raise self._error(answer)

    def get_sms_text(self, upstream_id: str, code: str) -> str | None:
        """getStatusV2's latest SMS text, when that SMS carries `code` (asked once, no
        retry: the code is recorded without its text rather than late). Ids and codes may
        arrive as numbers or strings; any other answer, and any failure, is None."""
        try:
            answer = self._read("getStatusV2", {"id": str(upstream_id)}, retries=0)
        except UpstreamError as exc:
            log.info("%s getStatusV2 %s: %s (no SMS text)", self.name, upstream_id, exc.token)
            return None
        return _sms_text(_json_body(answer), code)

    def get_active_activations(self) -> list[ActiveActivation]:
        try:
            data = self._read_json("getActiveActivations")
        except NoActivations:
            return []
        if isinstance(data, dict):
            data = data.get("activeActivations", [])
        if isinstance(data, dict):  # keyed by id
            data = list(data.values())
        if not isinstance(data, list):
            raise UpstreamRejected("getActiveActivations: unexpected JSON shape")
        rows = (_active_activation(item) for item in data)
        return [row for row in rows if row is not None]

    # -- non-repeatable calls (sent at most once) ---------------------------------------

    def get_number(
        self, service: str, country_id: int, max_price: Decimal | None = None
    ) -> PurchasedNumber:
        params = {"service": service, "country": str(country_id)}
        if max_price is not None:
            params["maxPrice"] = format(Decimal(str(max_price)), "f")
        try:
            answer = self._once("getNumberV2", params)
        except _Lost as lost:
            raise UnknownOutcome(f"{self.name} getNumberV2: {lost}") from None
        try:
            return self._purchased(answer)
        except _Lost as lost:
            raise UnknownOutcome(f"{self.name} getNumberV2: {lost}") from None

    def set_status(self, upstream_id: str, status: int) -> SetStatusAnswer:
        params = {"id": str(upstream_id), "status": str(int(status))}
        try:
            answer = self._once("setStatus", params)
        except _Lost as lost:
            raise UpstreamUnavailable(f"{self.name} setStatus: {lost}") from None
        try:
            return SetStatusAnswer(answer.text.partition(":")[0])
        except ValueError:
            raise self._error(answer) from None

    # -- rent (SMS-Activate's rent family; GrizzlySMS serves it on the same handler) -----

    rents = True

    def get_rent_offers(
        self, country_id: int, hours: int, operator: str | None = None
    ) -> list[RentOffer]:
        params = {"rent_time": str(hours), "country": str(country_id)}
        if operator:
            params["operator"] = operator
        data = self._read_json("getRentServicesAndCountries", params)
        services = data.get("services") if isinstance(data, dict) else None
        if not isinstance(services, dict):
            raise UpstreamRejected("getRentServicesAndCountries: no services")
        offers = []
        for code, item in services.items():
            if not isinstance(item, dict) or not isinstance(code, str) or not code.strip():
                continue
            cost = _decimal(item.get("cost") if "cost" in item else item.get("retail_cost"))
            quant = item.get("quant")
            if isinstance(quant, dict):  # {"current": N, "total": M} in newer answers
                quant = quant.get("current")
            count = _int(quant)
            if cost is None or cost < 0 or count is None:
                continue
            offers.append(RentOffer(service=code.strip(), cost=cost, count=count))
        return offers

    def rent_number(
        self, service: str, country_id: int, hours: int, operator: str | None = None
    ) -> RentedNumber:
        params = {"service": service, "rent_time": str(hours), "country": str(country_id)}
        if operator:
            params["operator"] = operator
        return self._renting("getRentNumber", params)

    def continue_rent(self, upstream_id: str, hours: int) -> RentedNumber:
        return self._renting(
            "continueRentNumber", {"id": str(upstream_id), "rent_time": str(hours)}
        )

    def get_rent_status(self, upstream_id: str) -> RentStatus:
        answer = self._read("getRentStatus", {"id": str(upstream_id)})
        data = _json_body(answer)
        if not isinstance(data, dict):
            raise UpstreamRejected("getRentStatus: unexpected answer")
        if data.get("status") != "success":
            token = str(data.get("message") or data.get("error") or "").strip()
            if token == "STATUS_WAIT_CODE":
                return RentStatus(RentState.OPEN)
            if token == "STATUS_FINISH":
                return RentStatus(RentState.FINISHED)
            if token == "STATUS_CANCEL":
                return RentStatus(RentState.CANCELLED)
            raise self._redacted(error_for_token(token or "error"))
        values = data.get("values")
        rows = values.values() if isinstance(values, dict) else values
        messages = [_rent_sms(item) for item in (rows or []) if isinstance(item, dict)]
        messages = [m for m in messages if m is not None]
        # SMS-Activate lists the newest first; ours are oldest first.
        messages.sort(key=lambda m: m.received_at or dt.datetime.min)
        return RentStatus(RentState.OPEN, tuple(messages))

    def set_rent_status(self, upstream_id: str, status: int) -> None:
        params = {"id": str(upstream_id), "status": str(int(status))}
        try:
            answer = self._once("setRentStatus", params)
        except _Lost as lost:
            raise UpstreamUnavailable(f"{self.name} setRentStatus: {lost}") from None
        data = _json_body(answer)
        if isinstance(data, dict) and data.get("status") == "success":
            return
        raise self._rent_error(answer, data)

    def get_rent_list(self) -> list[RentedNumber]:
        answer = self._read("getRentList")
        data = _json_body(answer)
        if not isinstance(data, dict):
            raise UpstreamRejected("getRentList: unexpected answer")
        if data.get("status") != "success":
            error = self._rent_error(answer, data)
            if isinstance(error, NoNumbers | NoIdRent):
                return []  # nothing rented
            raise error
        values = data.get("values")
        rows = values.values() if isinstance(values, dict) else values
        rented = []
        for item in rows or []:
            if not isinstance(item, dict):
                continue
            upstream_id, phone = _id(item.get("id")), _digits(item.get("phone"))
            if upstream_id is not None:
                rented.append(RentedNumber(upstream_id=upstream_id, phone=phone or ""))
        return rented

    def _renting(self, action: str, params: dict[str, str]) -> RentedNumber:
        """getRentNumber / continueRentNumber: sent once; a lost or unreadable success is
        an unknown outcome."""
        try:
            answer = self._once(action, params)
        except _Lost as lost:
            raise UnknownOutcome(f"{self.name} {action}: {lost}") from None
        data = _json_body(answer)
        if isinstance(data, dict) and data.get("status") == "success":
            phone = data.get("phone")
            upstream_id = _id(phone.get("id")) if isinstance(phone, dict) else None
            number = _digits(phone.get("number")) if isinstance(phone, dict) else None
            if upstream_id is None or number is None:
                raise UnknownOutcome(f"{self.name} {action}: success without a readable phone")
            return RentedNumber(
                upstream_id=upstream_id,
                phone=number,
                ends_at=_timestamp(str(phone.get("endDate") or "").replace("T", " ")),
                cost=_decimal(data.get("price") or phone.get("price")),
            )
        error = self._rent_error(answer, data)
        if isinstance(error, UpstreamRejected) and not answer.is_readable_text:
            raise UnknownOutcome(f"{self.name} {action}: unreadable answer")
        raise error

    def _rent_error(self, answer: _Answer, data: Any) -> UpstreamError:
        """A rent answer's error: `{"status": "error", "message": TOKEN}` (SMS-Activate) or
        `{"status": "error", "error": TOKEN}` (GrizzlySMS), or a plain token (BAD_KEY)."""
        if isinstance(data, dict):
            detail = data.get("message") or data.get("error") or data.get("msg")
            if detail:
                return self._redacted(error_for_token(str(detail).strip()))
        return self._redacted(error_for_token(answer.text))

    # -- answer parsing -----------------------------------------------------------------

    def _purchased(self, answer: _Answer) -> PurchasedNumber:
        if answer.is_json:
            try:
                data = answer.json()
            except ValueError:
                raise _Lost("unreadable JSON answer") from None
            if isinstance(data, dict) and "activationId" in data:
                return _purchased_from_json(data)
            error = _json_error(data)
            if error is not None:
                raise self._redacted(error)
            raise _Lost("unexpected JSON answer")
        head, _, rest = answer.text.partition(":")
        if head == "ACCESS_NUMBER":
            upstream_id, _, phone = rest.partition(":")
            if upstream_id.isdigit() and _digits(phone):
                return PurchasedNumber(upstream_id=upstream_id, phone=_digits(phone) or "")
            raise _Lost("malformed ACCESS_NUMBER answer")
        error = error_for_token(answer.text)
        if not isinstance(error, UpstreamRejected) or answer.is_readable_text:
            raise self._redacted(error)  # a token, or words (a known refusal or not)
        raise _Lost("unreadable answer")

    def _error(self, answer: _Answer) -> UpstreamError:
        """The exception for an answer that is not the expected success token."""
        if answer.is_json:
            try:
                error = _json_error(answer.json())
            except ValueError:
                error = None
            if error is not None:
                return self._redacted(error)
        return self._redacted(error_for_token(answer.text))

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    def _redacted(self, error: UpstreamError) -> UpstreamError:
        if isinstance(error, UpstreamRejected):
            return type(error)(self._redact(error.text))
        return error

    def _read_json(self, action: str, params: dict[str, str] | None = None) -> Any:
        answer = self._read(action, params)
        if not answer.is_json:
            raise self._error(answer)
        try:
            data = answer.json()
        except ValueError:
            raise UpstreamRejected(f"{action}: unreadable JSON answer") from None
        error = _json_error(data)
        if error is not None:
            raise self._redacted(error)
        return data

    # -- transport ----------------------------------------------------------------------

    def _read(
        self, action: str, params: dict[str, str] | None = None, retries: int | None = None
    ) -> _Answer:
        """GET a repeatable action, retrying transport failures, 5xx and 429 (`retries`
        times; the client's setting by default)."""
        retries = self.retries if retries is None else retries
        attempt = 0
        while True:
            failure, response = self._send(action, params)
            wait: float | None = None
            if response is not None and response.status_code == 429:
                wait = retry_after(response)
                if attempt >= retries or (wait is not None and wait > self.max_retry_after):
                    raise RateLimited(wait)
                failure = "rate limited"
            elif response is not None and response.status_code >= 500:
                failure = f"HTTP {response.status_code}"
            elif response is not None and response.status_code != 200:
                raise self._client_error(action, response)
            elif response is not None:
                return _Answer(response.content)
            if attempt >= retries:
                raise UpstreamUnavailable(f"{self.name} {action}: {failure}")
            delay = wait if wait is not None else self.backoff * 2**attempt
            left = deadline.time_left()
            if left is not None and left <= delay:  # no time for another try
                raise UpstreamUnavailable(f"{self.name} {action}: {failure}")
            log.debug("%s %s: %s, retrying in %.2fs", self.name, action, failure, delay)
            self._sleep(delay)
            attempt += 1

    def _once(self, action: str, params: dict[str, str]) -> _Answer:
        """Send a non-repeatable action exactly once.

        Raises `UpstreamUnavailable` when nothing reached the server (connection refused,
        connect timeout) or the server refused to process it (429, 4xx), and `_Lost` when
        the request may have been processed but the answer is missing or broken.
        """
        failure, response = self._send(action, params)
        if response is None:
            if nothing_sent(failure):
                raise UpstreamUnavailable(f"{self.name} {action}: {failure}")
            raise _Lost(failure)
        if response.status_code == 429:
            raise RateLimited(retry_after(response))
        if response.status_code == 503:  # the server says it did not take the request on
            raise UpstreamUnavailable(f"{self.name} {action}: HTTP 503")
        if response.status_code >= 500:
            raise _Lost(f"HTTP {response.status_code}")
        if response.status_code != 200:
            raise self._client_error(action, response)
        return _Answer(response.content)

    def _client_error(self, action: str, response: requests.Response) -> UpstreamError:
        """A 4xx: its token if the body carries one, else the endpoint is unusable."""
        error = self._error(_Answer(response.content))
        if isinstance(error, UpstreamRejected):
            return UpstreamUnavailable(f"{self.name} {action}: HTTP {response.status_code}")
        return error

    def _send(
        self, action: str, params: dict[str, str] | None
    ) -> tuple[str, requests.Response | None]:
        """One GET. Returns (failure description, None) or ("", response with body read).

        requests' exceptions carry the URL, query string and key included: they are
        reduced to a description here and never re-raised or chained.
        """
        timeout = deadline.capped(self.timeout)
        if timeout is None:  # the caller's time budget is spent: send nothing
            raise UpstreamUnavailable(f"grizzly {action}: time budget spent")
        query = {"api_key": self._api_key, "action": action, **(params or {})}
        started = time.monotonic()
        failure = ""
        response = None
        try:
            response = transport.get(self._session, self.url, params=query, timeout=timeout)
            response.content  # noqa: B018 - read the body inside the try
        except requests.RequestException as exc:
            failure = describe_failure(exc)
            response = None
        elapsed_ms = (time.monotonic() - started) * 1000
        outcome = f"HTTP {response.status_code}" if response is not None else failure
        log.debug("%s %s: %s in %.0f ms", self.name, action, outcome, elapsed_ms)
        return failure, response


# -- pure parsing helpers ----------------------------------------------------------------


def _json_error(data: Any) -> UpstreamError | None:
    """`{"status": "error", "error": "TOKEN"}` (or a message) as an exception; None otherwise."""
    if not isinstance(data, dict):
        return None
    if data.get("status") != "error" and "error" not in data:
        return None
    detail = data.get("error") or data.get("message") or data.get("msg") or "error"
    return error_for_token(str(detail).strip())


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _id(value: Any) -> str | None:
    """An id or phone as a digit string (numbers and strings both arrive)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if value >= 0 else None
    if isinstance(value, str) and value.strip().isdigit():
        return value.strip()
    return None


def _digits(phone: Any) -> str | None:
    if isinstance(phone, str):
        phone = phone.strip().removeprefix("+")
    return _id(phone)


def _timestamp(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.strptime(value.strip(), _TIMESTAMP_FORMAT)
    except ValueError:
        return None


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value).strip()
    return text or None


def _sms_text(data: Any, code: str) -> str | None:
    """The text of getStatusV2's `sms` when its code is `code`; None for anything else
    (no SMS, another SMS's code, no text or a garbled one, a token, broken JSON)."""
    sms = data.get("sms") if isinstance(data, dict) else None
    if not isinstance(sms, dict) or isinstance(sms.get("code"), bool):
        return None
    if _text(sms.get("code")) != code.strip():
        return None
    text = sms.get("text")
    if not isinstance(text, str) or "\x00" in text:  # (no database text holds a NUL)
        return None
    return text.strip() or None


def _json_body(answer: _Answer) -> Any:
    """A JSON answer (rent's, getStatusV2's); None for a plain token (BAD_KEY stays plain)
    or broken JSON."""
    if not answer.is_json:
        return None
    try:
        return answer.json()
    except ValueError:
        return None


def _rent_sms(item: dict[str, Any]) -> RentSms | None:
    text = item.get("text")
    if not isinstance(text, str):
        return None
    return RentSms(
        sender=_text(item.get("phoneFrom")),
        text=text,
        service=_text(item.get("service")),
        received_at=_timestamp(item.get("date")),
    )


def _purchased_from_json(data: dict[str, Any]) -> PurchasedNumber:
    upstream_id, phone = _id(data.get("activationId")), _digits(data.get("phoneNumber"))
    if upstream_id is None or phone is None:
        # It says a number was bought but we cannot tell which: reconcile.
        raise _Lost("getNumberV2 answer without a readable activationId/phoneNumber")
    return PurchasedNumber(
        upstream_id=upstream_id,
        phone=phone,
        cost=_decimal(data.get("activationCost")),
        country_id=_int(data.get("countryCode")),
        activation_time=_timestamp(data.get("activationTime")),
        activation_end=_timestamp(data.get("activationEnd")),
    )


def _price_entry(country: Any, service: Any, price: Any) -> PriceEntry | None:
    if not isinstance(price, dict) or not isinstance(service, str) or not service.strip():
        return None
    country_id, cost, count = _int(country), _decimal(price.get("cost")), _int(price.get("count"))
    if country_id is None or cost is None or cost < 0 or count is None:
        return None
    return PriceEntry(country_id=country_id, service=service.strip(), cost=cost, count=count)


def _country(key: Any, item: Any) -> CountryInfo | None:
    if isinstance(item, str):  # {"12": "USA"}
        country_id, name = _int(key), item.strip()
    elif isinstance(item, dict):
        country_id = _int(item.get("id"))
        if country_id is None:
            country_id = _int(key)
        names = (item.get(field) for field in _NAME_FIELDS)
        name = next((n.strip() for n in names if isinstance(n, str) and n.strip()), "")
    else:
        return None
    if country_id is None or not name:
        return None
    return CountryInfo(id=country_id, name=name)


def _active_activation(item: Any) -> ActiveActivation | None:
    if not isinstance(item, dict):
        return None
    upstream_id = _id(item.get("activationId"))
    if upstream_id is None:
        return None
    code = item.get("smsCode")
    if isinstance(code, list):  # one provider sends every code received; the last counts
        code = next((c for c in reversed(code) if _text(c)), None)
    return ActiveActivation(
        upstream_id=upstream_id,
        phone=_digits(item.get("phoneNumber")),
        service=_text(item.get("serviceCode")),
        country_id=_int(item.get("countryCode")),
        status=_text(item.get("activationStatus")),
        code=str(code) if code is not None and str(code) != "" else None,
    )
