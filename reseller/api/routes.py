"""The endpoint. A view parses the request and renders the answer; services decide.

Answers are HTTP 200 in both dialects, errors included (clients treat other statuses as
outages); only the rate limit answers 429.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re

from flask import Response, current_app, g, request

from .. import metrics
from ..extensions import csrf, db, limiter
from ..models import utcnow
from ..services import accounts, activations, catalog, history, pricing, settings
from ..services import errors as err
from ..services.activations import PurchaseRequest
from . import bp, rent
from .dialects import ClassicDialect, HeroSmsDialect, JsonDialect
from .errors import BY_KIND

log = logging.getLogger(__name__)

PATHS = ("/api/customer", "/stubs/handler_api.php")
_DIGEST = "reseller.api_key_digest"


def _param(name: str) -> str | None:
    value = request.values.get(name)
    if value is None:  # a published client sends names with whitespace ("time ")
        value = next((v for k, v in request.values.items() if k.strip() == name), None)
    if value is None:
        return None
    if "\x00" in value:  # no parameter has one, and PostgreSQL text cannot hold it
        raise err.BadParameter(f"{name} contains a NUL character")
    return value[:500]


def _key_digest() -> str | None:
    """The lookup digest of the request's API key, computed once per request (the rate
    limit's counter and the account lookup both need it); None without a usable key."""
    environ = request.environ  # per request (an app context, and its g, can outlive one)
    if _DIGEST not in environ:
        key = (request.values.get("api_key") or "").strip()
        environ[_DIGEST] = accounts.api_key_digest(key) if 0 < len(key) <= 200 else None
    return environ[_DIGEST]


def _rate_key() -> str:
    digest = _key_digest()
    if digest is not None:
        return "api:" + digest[:32]
    return "api-ip:" + (request.remote_addr or "unknown")


def _api_limit() -> str:
    return current_app.config["API_RATE_LIMIT"]


def _dialect():
    """`format=json`: ours. HeroSMS's paging parameters (`start`, `limit`): the classic
    dialect as HeroSMS speaks it. Otherwise SMS-Activate's classic dialect."""
    fmt = (request.values.get("format") or "").strip().lower()
    if fmt == "json":
        return JsonDialect()
    start, limit = request.values.get("start"), request.values.get("limit")
    if start is not None or limit is not None:
        return HeroSmsDialect(start, limit)
    return ClassicDialect()


def _authenticate() -> accounts.ApiCaller:
    digest = _key_digest()
    return _admit(accounts.api_caller_by_digest(digest) if digest is not None else None)


def _admit(caller: accounts.ApiCaller | None) -> accounts.ApiCaller:
    """The caller behind the request's key, refused when there is none, its address is not
    verified yet (REQUIRE_EMAIL_VERIFICATION) or it is disabled."""
    if caller is None:
        raise err.BadKey()
    if caller.email_verified_at is None and current_app.config["REQUIRE_EMAIL_VERIFICATION"]:
        raise err.BadKey()
    if not caller.active:
        raise err.AccountInactive()
    g.api_user_id = caller.id
    return caller


# --- actions ------------------------------------------------------------------------


def get_balance(user, dialect):
    return dialect.balance(user.balance)


def _buy(user):
    return activations.buy_number(
        user,
        PurchaseRequest(
            service=_param("service") or "",
            country=_param("country") or "",
            max_price=_param("maxPrice"),
            order_id=_param("orderId"),
        ),
    )


def get_number(user, dialect):
    return dialect.number(_buy(user))


def get_number_v2(user, dialect):
    activation = _buy(user)
    return dialect.number_v2(activation)


def _status(user):
    return activations.status_for_user(user, _param("id"), activations.web_poll_budget())


def _poll_id() -> int | None:
    """The id of a getStatus or setStatus that can be answered with one read of the key and
    the activation (activations.poll_id); None when the id must be answered after the key
    check, as the other actions do (a NUL in it, malformed, out of range)."""
    try:
        return activations.poll_id(_param("id"))
    except err.BadParameter:
        return None


def _one_read(read, activation_id: int) -> tuple[accounts.ApiCaller, object]:
    """The caller behind the request's key and its activation `activation_id`, read together
    by `read` (one statement), the caller admitted as `_authenticate` admits it."""
    digest = _key_digest()
    caller, row = read(digest, activation_id) if digest is not None else (None, None)
    return _admit(caller), row


# The actions that read an activation as getStatus does (polling it when due), and the
# dialect's answer of each.
POLL_ANSWERS = {"getStatus": "status", "getStatusV2": "status_v2", "getFullSms": "full_sms"}


def _poll(activation_id: int, dialect, name: str):
    """getStatus(V2) and getFullSms with one read: the key's account and its activation
    together; the same answers, the same errors in the same order as `get_status`."""
    user, row = _one_read(activations.caller_and_status_row, activation_id)
    activation = activations.status_from_row(user, row, activations.web_poll_budget())
    return user, getattr(dialect, POLL_ANSWERS[name])(activation)


def _set_status_in_one_read(activation_id: int, dialect, name: str):
    """setStatus with one read before it acts: the key's account, its activation, the
    seller's row and the settings together; the same answers, the same errors in the same
    order as `set_status`."""
    user, row = _one_read(activations.caller_and_set_status_row, activation_id)
    answer, activation = activations.set_status_from_row(row, _param("status"))
    return user, dialect.set_status(answer, activation)


# Actions whose key check and activation read are one statement, when the request's id can
# be an activation's (else the key is checked first and the id answered after it).
IN_ONE_READ = {
    "getStatus": _poll,
    "getStatusV2": _poll,
    "getFullSms": _poll,
    "setStatus": _set_status_in_one_read,
}


def get_status(user, dialect):
    return dialect.status(_status(user))


def get_status_v2(user, dialect):
    return dialect.status_v2(_status(user))


def get_full_sms(user, dialect):
    return dialect.full_sms(_status(user))


def set_status(user, dialect):
    answer, activation = activations.set_status(user, _param("id"), _param("status"))
    return dialect.set_status(answer, activation)


def get_active_activations(user, dialect):
    rows = activations.active_for_user(user)
    codes = history.codes_received(a.id for a in rows)
    return dialect.active(rows, _country_names(), codes)


def _country_names() -> dict[int, str]:
    return {c.id: c.name for c in catalog.enabled_countries()}


def _optional_country() -> int | None:
    raw = _param("country")
    if raw is None or raw.strip() == "":
        return None
    try:
        return catalog.parse_country(raw)
    except catalog.UnknownCountry:
        raise err.BadCountry() from None


def get_prices(user, dialect):
    service = (_param("service") or "").strip() or None
    country_id = _optional_country()
    quotes = pricing.price_table(service, country_id)
    return dialect.prices(quotes)


def get_countries(user, dialect):
    return dialect.countries(catalog.enabled_countries())


def get_services_list(user, dialect):
    return dialect.services(catalog.enabled_services())


def get_top_countries_by_service(user, dialect):
    service = (_param("service") or "").strip()
    known = catalog.service(service) if service else None
    if known is None or not known.enabled:
        raise err.BadService()
    return dialect.top_countries(pricing.top_countries(service))


def get_numbers_status(user, dialect):
    country_id = _optional_country()
    if country_id is None:
        country_id = settings.get("default_country")
    return dialect.numbers_status(pricing.stock_by_service(country_id))


def get_operators(user, dialect):
    country_id = _optional_country()
    if country_id is not None:
        return dialect.operators([country_id])
    return dialect.operators(c.id for c in catalog.enabled_countries())


def _unix_time(name: str):
    """A unix-seconds parameter as naive UTC; None when absent."""
    raw = (_param(name) or "").strip()
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 11:
        raise err.BadParameter(f"{name} must be unix seconds")
    return dt.datetime.fromtimestamp(int(raw), dt.UTC).replace(tzinfo=None)


def _whole(name: str, default: int) -> int:
    raw = (_param(name) or "").strip()
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
        raise err.BadParameter(f"{name} must be a whole number")
    return int(raw)


def get_history(user, dialect):
    rows = history.api_history(
        user.id,
        start=_unix_time("start"),
        end=_unix_time("end"),
        offset=_whole("offset", 0),
        limit=_whole("limit", history.HISTORY_LIMIT),
    )
    return dialect.history(rows)


ACTIONS = {
    "getBalance": get_balance,
    "getNumber": get_number,
    "getNumberV2": get_number_v2,
    "getStatus": get_status,
    "getStatusV2": get_status_v2,
    "getFullSms": get_full_sms,
    "setStatus": set_status,
    "getActiveActivations": get_active_activations,
    "getPrices": get_prices,
    "getCountries": get_countries,
    "getServicesList": get_services_list,
    "getBalanceAndCashBack": get_balance,  # no cashback here: the balance alone
    "getTopCountriesByService": get_top_countries_by_service,
    "getNumbersStatus": get_numbers_status,
    "getOperators": get_operators,
    "getHistory": get_history,
}


@bp.route("/api/customer", methods=["GET", "POST"])
@bp.route("/stubs/handler_api.php", methods=["GET", "POST"])
@csrf.exempt
@limiter.limit(_api_limit, key_func=_rate_key)
def handler() -> Response:
    dialect = _dialect()
    try:
        name = (request.values.get("action") or "").strip()
        in_one_read = IN_ONE_READ.get(name)
        activation_id = _poll_id() if in_one_read is not None else None
        if activation_id is not None:  # the hot poll, the cancel: one round trip to read
            user, answer = in_one_read(activation_id, dialect, name)
        else:
            user = _authenticate()
            action = ACTIONS.get(name)
            if name in rent.ACTIONS:
                answer = rent.answer(name, user, _param)
            elif action is None:
                raise err.BadAction()
            else:
                answer = action(user, dialect)
        _record_activity(user)
        return answer
    except err.ServiceError as exc:
        db.session.rollback()
        return _error(dialect, BY_KIND[exc.kind], exc)
    except Exception:
        db.session.rollback()
        log.exception("API action %s failed", request.values.get("action", "")[:40])
        return _error(dialect, BY_KIND["SERVICE_UNAVAILABLE"], err.ServiceUnavailable())


def _error(dialect, row, exc: err.ServiceError) -> Response:
    # The metrics' answer: the classic token in either dialect (one series per outcome).
    request.environ[_ANSWER] = row.classic.partition(":")[0]
    return dialect.error(row, exc)


def _record_activity(user) -> None:
    """Bookkeeping after the action: a failure here (a locked database) is logged and never
    changes the answer, which may stand for a committed purchase or refund."""
    try:
        accounts.record_api_activity(user, utcnow())
    except Exception:
        db.session.rollback()
        log.warning("could not record the API activity of user %s", user.id, exc_info=True)


@bp.errorhandler(429)
def rate_limited(error):
    """HTTP 429 in the caller's dialect (`Retry-After` is set by reseller.rate_limits)."""
    request.environ[_ANSWER] = "RATE_LIMITED"
    if (request.values.get("format") or "").lower() == "json":
        return Response(json.dumps({"error": "RATE_LIMITED"}), 429, mimetype="application/json")
    return Response("RATE_LIMITED", 429, mimetype="text/plain")


# --- metrics --------------------------------------------------------------------------

_ANSWER = "reseller.api_answer"
KNOWN_ACTIONS = frozenset(ACTIONS) | frozenset(rent.ACTIONS)
_TOKEN = re.compile(r"[A-Z][A-Z0-9_]{0,39}")


def answer_token(response: Response) -> str:
    """What a call answered, for the metrics: the error's classic token, else the plain
    answer's token before ':' ("ACCESS_NUMBER", "STATUS_OK"), else "OK" for a data answer
    (JSON). Never the rest of an answer: it carries phone numbers and codes."""
    token = request.environ.get(_ANSWER)
    if token is not None:
        return token
    if response.mimetype != "text/plain":
        return "OK"
    head = response.get_data(as_text=True)[:48].partition(":")[0]
    return head if _TOKEN.fullmatch(head) else "other"


def _count_call(response: Response) -> Response:
    if request.blueprint == "api":
        name = (request.values.get("action") or "").strip()
        action = name if name in KNOWN_ACTIONS else "other"
        metrics.observe_api_call(action, answer_token(response), g.get("request_started"))
    return response


@bp.record_once
def _count_calls_when_metrics_are_on(state) -> None:
    if metrics.enabled(state.app):
        state.app.after_request(_count_call)
