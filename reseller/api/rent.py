"""The rent family of the customer API, in SMS-Activate's shapes: JSON whatever `format`
says, errors as `{"status": "error", "message": TOKEN}` (the key check's BAD_KEY stays the
caller's dialect, as for every action). Views parse and render; services.rentals decides."""

from __future__ import annotations

from collections.abc import Callable

from flask import Response

from ..extensions import db
from ..models import Rental
from ..services import errors as err
from ..services import rent_offers, rentals
from ..services.rentals import RentRequest
from .dialects import _currency, _money, as_json
from .errors import BY_KIND

END_FORMAT = "%Y-%m-%dT%H:%M:%S"
SMS_FORMAT = "%Y-%m-%d %H:%M:%S"


def error(exc: err.ServiceError) -> Response:
    return as_json({"status": "error", "message": BY_KIND[exc.kind].classic})


def _hours(param: Callable[[str], str | None], *names: str) -> str | None:
    """The rent length: `rent_time`, or `time` (the official Python client), or
    `duration` (HeroSMS), or the names given."""
    for name in (*names, "rent_time", "time", "duration"):
        value = param(name)
        if value is not None:
            return value
    return None


def _phone(rental: Rental) -> dict:
    return {
        "id": rental.id,
        "endDate": rental.ends_at.strftime(END_FORMAT) if rental.ends_at else None,
        "number": rental.phone,
    }


def _whole(raw: str | None, default: int) -> int:
    text = (raw or "").strip()
    if not text:
        return default
    if not (text.isascii() and text.isdigit()) or len(text) > 6:
        raise err.BadParameter("page and size are whole numbers")
    return int(text)


def services_and_countries(user, param) -> Response:
    country_id = rentals.offer_country(param("country"))
    hours = rent_offers.parse_hours(_hours(param))
    operator = rent_offers.parse_operator(param("operator"))
    quotes = rent_offers.quotes(country_id, hours, operator)
    return as_json(
        {
            "countries": {"0": country_id},
            "operators": {"0": operator or "any"},
            "services": {q.service: {"cost": _money(q.price), "quant": q.count} for q in quotes},
            "currency": _currency(),
        }
    )


def rent_number(user, param) -> Response:
    # `url` (SMS-Activate's per-rent webhook) is not taken: the account's webhook gets
    # every rent SMS (event "rent_sms").
    rental = rentals.rent_number(
        user,
        RentRequest(
            service=param("service") or "",
            country=param("country"),
            hours=_hours(param),
            operator=param("operator"),
        ),
    )
    return as_json({"status": "success", "phone": _phone(rental)})


def rent_status(user, param) -> Response:
    """Newest SMS first; "success" only when there are SMS."""
    rental = rentals.status(user, param("id"))
    size = _whole(param("size"), rentals.PAGE_SIZE_MAX)
    page = _whole(param("page"), 0)
    if rental.sms_count == 0:
        raise _no_sms(rental)
    messages = rentals.messages_page(rental, page, size)
    return as_json(
        {
            "status": "success",
            "quantity": str(rental.sms_count),
            "values": {
                str(i): {
                    "phoneFrom": m.sender,
                    "text": m.text,
                    "service": m.service,
                    "date": m.received_at.strftime(SMS_FORMAT),
                }
                for i, m in enumerate(messages)
            },
        }
    )


def _no_sms(rental: Rental) -> err.ServiceError:
    state = rentals.R(rental.status)
    if state in (rentals.R.CANCELLED, rentals.R.FAILED):
        return _RentToken("STATUS_CANCEL")
    if state in (rentals.R.FINISHED, rentals.R.EXPIRED):
        return _RentToken("STATUS_FINISH")
    return _RentToken("STATUS_WAIT_CODE")


class _RentToken(err.ServiceError):
    """A getRentStatus answer that SMS-Activate sends as an error (no SMS yet, ended)."""

    def __init__(self, token: str):
        self.token = token
        super().__init__(token)


def set_rent_status(user, param) -> Response:
    rentals.set_status(user, param("id"), param("status"))
    return as_json({"status": "success"})


def rent_list(user, param) -> Response:
    rows = rentals.open_for_user(user)
    return as_json(
        {
            "status": "success",
            "values": {str(i): {"id": str(r.id), "phone": r.phone} for i, r in enumerate(rows)},
        }
    )


def continue_rent(user, param) -> Response:
    rental = rentals.continue_rent(user, param("id"), _hours(param))
    return as_json({"status": "success", "phone": _phone(rental)})


def continue_price(user, param) -> Response:
    _rental, _hours_asked, price = rentals.continue_quote(user, param("id"), _hours(param))
    return as_json({"status": "success", "price": _money(price), "currency": _currency()})


def continue_info(user, param) -> Response:
    rental, hours, price = rentals.continue_quote(user, param("id"), _hours(param, "hours"))
    history = {
        str(i): {
            "createDate": p.created_at.strftime(SMS_FORMAT),
            "price": _money(p.price),
            "hours": p.hours,
        }
        for i, p in enumerate(rental.periods)
        if p.status != rentals.PERIOD_REFUNDED
    }
    return as_json(
        {
            "status": "success",
            "price": _money(price),
            "currency": _currency(),
            "hours": hours,
            "history": history,
        }
    )


ACTIONS = {
    "getRentServicesAndCountries": services_and_countries,
    "getRentNumber": rent_number,
    "getRentStatus": rent_status,
    "setRentStatus": set_rent_status,
    "getRentList": rent_list,
    "continueRentNumber": continue_rent,
    "getContinueRentPriceNumber": continue_price,
    "continueRentInfo": continue_info,
}


def answer(name: str, user, param) -> Response:
    """Run the rent action `name` for `user`; its errors in the rent family's shape."""
    try:
        return ACTIONS[name](user, param)
    except _RentToken as exc:
        return as_json({"status": "error", "message": exc.token})
    except err.ServiceError as exc:
        if exc.kind in ("BAD_KEY", "ACCOUNT_INACTIVE"):
            raise
        db.session.rollback()
        return error(exc)
