"""The two answer dialects: our documented JSON (`format=json`) and the classic
SMS-Activate plain text. Each turns service results into an HTTP 200 response."""

from __future__ import annotations

import json
from decimal import Decimal

from flask import Response, current_app

from ..models import Activation
from ..models import ActivationStatus as S
from ..money import format_amount, to_decimal
from ..services import errors as err
from ..services.activations import HAS_CODE_STATES
from ..upstream.base import SetStatusAnswer
from .errors import ErrorRow

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
CURRENCY_NUMBERS = {"USD": 840, "EUR": 978, "GBP": 826, "RUB": 643, "INR": 356, "CNY": 156}
# getActiveActivations' activationStatus (strings, as SMS-Activate sends them).
CLASSIC_ACTIVE_STATUS = {
    S.ALLOCATED.value: "1",
    S.CODE_RECEIVED.value: "4",
    S.RETRY_WAIT.value: "3",
}
SET_STATUS_WORDS = {
    SetStatusAnswer.READY: "ready",
    SetStatusAnswer.RETRY_GET: "waiting_retry",
    SetStatusAnswer.ACTIVATION: "completed",
    SetStatusAnswer.CANCEL: "cancelled",
}


def _money(units: int) -> float:
    """A JSON number with at most two decimals (Decimal → float of the exact cents)."""
    return float(Decimal(format_amount(units)))


def _time(value) -> str | None:
    return value.strftime(TIME_FORMAT) if value else None


def text(body: str) -> Response:
    return Response(body, status=200, mimetype="text/plain")


def as_json(data) -> Response:
    return Response(
        json.dumps(data, ensure_ascii=False, separators=(",", ":")),
        status=200,
        mimetype="application/json",
    )


def _currency() -> int:
    return CURRENCY_NUMBERS.get(current_app.config["CURRENCY"].upper(), 840)


def _can_get_another(activation: Activation) -> str:
    return "1" if S(activation.status) in (S.ALLOCATED, S.CODE_RECEIVED, S.RETRY_WAIT) else "0"


def number_v2(activation: Activation) -> dict:
    return {
        "activationId": activation.id,
        "phoneNumber": activation.phone,
        "activationCost": _money(activation.price),
        "currency": _currency(),
        "countryCode": str(activation.country_id),
        "canGetAnotherSms": _can_get_another(activation),
        "activationTime": _time(activation.allocated_at or activation.created_at),
        "activationEnd": _time(activation.expires_at),
        "activationOperator": "any",
    }


def status_v2(activation: Activation) -> dict:
    sms = None
    if activation.code is not None and S(activation.status) in HAS_CODE_STATES:
        sms = {
            "dateTime": _time(activation.code_at),
            "code": activation.code,
            "text": activation.sms_text or activation.code,
        }
    return {"verificationType": 0, "sms": sms, "call": None}


def full_sms(activation: Activation) -> str | None:
    """getFullSms: the latest SMS's full text (its code where no text was kept); None
    before any SMS."""
    if activation.code is None or S(activation.status) not in HAS_CODE_STATES:
        return None
    return activation.sms_text or activation.code


def active_row(activation: Activation, names: dict[int, str], sms_code) -> dict:
    """One getActiveActivations row of the classic family; `sms_code` is the family's."""
    a = activation
    return {
        "activationId": str(a.id),
        "serviceCode": a.service,
        "phoneNumber": a.phone,
        "activationCost": _money(a.price),
        "activationStatus": CLASSIC_ACTIVE_STATUS.get(a.status, "1"),
        "smsCode": sms_code,
        "smsText": a.sms_text,
        "activationTime": _time(a.allocated_at or a.created_at),
        "countryCode": str(a.country_id),
        "countryName": names.get(a.country_id, str(a.country_id)),
        "canGetAnotherSms": _can_get_another(a),
        "currency": _currency(),
    }


def prices(quotes) -> dict:
    table: dict[str, dict[str, dict]] = {}
    for q in quotes:
        table.setdefault(str(q.country_id), {})[q.service] = {
            "cost": _money(q.price),
            "count": q.count,
        }
    return table


def top_countries(quotes) -> dict:
    """getTopCountriesByService: keyed by rank ("0" the best), as SMS-Activate answers."""
    return {
        str(rank): {
            "country": q.country_id,
            "count": q.count,
            "price": _money(q.price),
            "retail_price": _money(q.price),
        }
        for rank, q in enumerate(quotes)
    }


def numbers_status(stock: dict[str, int]) -> dict:
    """getNumbersStatus: `<service>_0` (SMS-Activate's suffix: without forwarding) → stock."""
    return {f"{service}_0": count for service, count in sorted(stock.items())}


def operators(country_ids, names: tuple[str, ...] = ("any",)) -> dict:
    return {
        "status": "success",
        "countryOperators": {str(country_id): list(names) for country_id in country_ids},
    }


def history(rows) -> list:
    """getHistory rows: the activation, its SMS texts, what it cost and its status word."""
    return [
        {
            "id": a.id,
            "date": _time(a.created_at),
            "phone": a.phone,
            "sms": texts,
            "cost": _money(a.price),
            "status": a.status,
            "currency": _currency(),
        }
        for a, texts in rows
    ]


def countries(rows) -> dict:
    return {str(c.id): {"id": c.id, "eng": c.name, "iso": c.iso, "visible": 1} for c in rows}


def services(rows) -> dict:
    return {"status": "success", "services": [{"code": s.code, "name": s.name} for s in rows]}


class ClassicDialect:
    """Plain tokens; JSON only where SMS-Activate answers JSON."""

    def balance(self, units: int) -> Response:
        return text(f"ACCESS_BALANCE:{format_amount(units)}")

    def number(self, activation: Activation) -> Response:
        return text(f"ACCESS_NUMBER:{activation.id}:{activation.phone}")

    def number_v2(self, activation: Activation) -> Response:
        return as_json(number_v2(activation))

    def status(self, activation: Activation) -> Response:
        status = S(activation.status)
        if status in (S.CODE_RECEIVED, S.COMPLETED) and activation.code is not None:
            return text(f"STATUS_OK:{activation.code}")
        if status == S.RETRY_WAIT:
            return text(f"STATUS_WAIT_RETRY:{activation.code}")
        if status in (S.CANCELLED, S.EXPIRED, S.FAILED):
            return text("STATUS_CANCEL")
        return text("STATUS_WAIT_CODE")

    def status_v2(self, activation: Activation) -> Response:
        if S(activation.status) in (S.CANCELLED, S.EXPIRED, S.FAILED):
            return text("STATUS_CANCEL")
        return as_json(status_v2(activation))

    def full_sms(self, activation: Activation) -> Response:
        sms = full_sms(activation)
        if sms is not None:
            return text(f"FULL_SMS:{sms}")
        if S(activation.status) in (S.CANCELLED, S.EXPIRED, S.FAILED):
            return text("STATUS_CANCEL")
        return text("STATUS_WAIT_CODE")

    def set_status(self, answer: SetStatusAnswer, activation: Activation) -> Response:
        return text(answer.value)

    def active(
        self, rows: list[Activation], names: dict[int, str], codes: dict[int, list[str]]
    ) -> Response:
        """`smsCode` is the list of codes received (null before any), as SMS-Activate sends
        it: clients index it (`smsCode[0]`)."""
        if not rows:
            return as_json({"status": "error", "error": "NO_ACTIVATIONS"})
        return as_json(
            {
                "status": "success",
                "activeActivations": [active_row(a, names, codes.get(a.id) or None) for a in rows],
            }
        )

    def prices(self, quotes) -> Response:
        return as_json(prices(quotes))

    def countries(self, rows) -> Response:
        return as_json(countries(rows))

    def top_countries(self, quotes) -> Response:
        return as_json(top_countries(quotes))

    def numbers_status(self, stock: dict[str, int]) -> Response:
        return as_json(numbers_status(stock))

    def operators(self, country_ids) -> Response:
        return as_json(operators(country_ids))

    def history(self, rows) -> Response:
        return as_json(history(rows))

    def services(self, rows) -> Response:
        return as_json(services(rows))

    def error(self, row: ErrorRow, exc: err.ServiceError) -> Response:
        if isinstance(exc, err.WrongMaxPrice):
            return text(f"WRONG_MAX_PRICE:{format_amount(exc.min_price)}")
        return text(row.classic)


class HeroSmsDialect(ClassicDialect):
    """The classic dialect as HeroSMS speaks it, for clients that page getActiveActivations
    with HeroSMS's `start` and `limit` (its published client): the page's rows under
    `data`, and `smsCode` the latest code as a string (null before any), which that client
    validates as a string. Every other action answers as the classic dialect does."""

    def __init__(self, start: str | None, limit: str | None):
        self.start, self.limit = start, limit

    def active(
        self, rows: list[Activation], names: dict[int, str], codes: dict[int, list[str]]
    ) -> Response:
        start = _paging_number("start", self.start, default=0, least=0)
        limit = _paging_number("limit", self.limit, default=len(rows), least=1)
        page = rows[start : start + limit]
        if not page:
            return as_json({"status": "error", "error": "NO_ACTIVATIONS"})
        data = [active_row(a, names, (codes.get(a.id) or [None])[-1]) for a in page]
        return as_json({"status": "success", "data": data})


def _paging_number(name: str, raw: str | None, default: int, least: int) -> int:
    """A paging parameter: a whole number of at least `least`; `default` when absent."""
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip()
    if not (value.isascii() and value.isdigit()) or len(value) > 9 or int(value) < least:
        raise err.BadParameter(f"{name} must be a whole number of at least {least}")
    return int(value)


class JsonDialect(ClassicDialect):
    """Our documented JSON dialect (the docs page's shapes)."""

    def balance(self, units: int) -> Response:
        return as_json({"balance": _money(units)})

    def number(self, activation: Activation) -> Response:
        return as_json(
            {
                "status": "ACCESS_NUMBER",
                "activationId": activation.id,
                "phone": "+" + activation.phone if activation.phone else None,
                "price": _money(activation.price),
                "expiresAt": _time(activation.expires_at),
            }
        )

    def status(self, activation: Activation) -> Response:
        status = S(activation.status)
        if status in (S.CODE_RECEIVED, S.COMPLETED) and activation.code is not None:
            return as_json({"status": "STATUS_OK", "code": activation.code})
        if status == S.RETRY_WAIT:
            return as_json({"status": "STATUS_WAIT_RETRY", "code": activation.code})
        if status in (S.CANCELLED, S.EXPIRED, S.FAILED):
            return as_json({"status": "STATUS_CANCEL"})
        return as_json({"status": "STATUS_WAIT_CODE"})

    def status_v2(self, activation: Activation) -> Response:
        data = status_v2(activation)
        if S(activation.status) in (S.CANCELLED, S.EXPIRED, S.FAILED):
            data = {"status": "STATUS_CANCEL", **data}
        return as_json(data)

    def full_sms(self, activation: Activation) -> Response:
        sms = full_sms(activation)
        if sms is not None:
            return as_json({"status": "FULL_SMS", "text": sms})
        if S(activation.status) in (S.CANCELLED, S.EXPIRED, S.FAILED):
            return as_json({"status": "STATUS_CANCEL"})
        return as_json({"status": "STATUS_WAIT_CODE"})

    def set_status(self, answer: SetStatusAnswer, activation: Activation) -> Response:
        return as_json({"status": answer.value, "activationStatus": SET_STATUS_WORDS[answer]})

    def active(
        self, rows: list[Activation], names: dict[int, str], codes: dict[int, list[str]]
    ) -> Response:
        return as_json(
            {
                "activations": [
                    {
                        "id": a.id,
                        "status": a.status,
                        "phone_number": "+" + a.phone if a.phone else None,
                        "service_code": a.service,
                        "country": a.country_id,
                        "price": _money(a.price),
                        "code": a.code,
                        "sms_text": a.sms_text,
                        "created_at": _time(a.allocated_at or a.created_at),
                        "expires_at": _time(a.expires_at),
                    }
                    for a in rows
                ]
            }
        )

    def error(self, row: ErrorRow, exc: err.ServiceError) -> Response:
        data: dict = {"error": row.json}
        if isinstance(exc, err.WrongMaxPrice):
            data["minPrice"] = float(to_decimal(exc.min_price))
        return as_json(data)
