"""Typed upstream failures: one class per protocol token, plus transport outcomes.

`error_for_token` maps an answer token to its class; unknown text becomes
`UpstreamRejected` carrying the text (never a success), or `RefusedInWords` when it is a
sentence a provider is known to refuse a purchase with.
"""

from __future__ import annotations


class UpstreamError(Exception):
    """Base for everything the upstream seam raises."""

    token: str = "UPSTREAM_ERROR"

    def __init__(self, message: str | None = None):
        super().__init__(message or self.token)


class UpstreamUnavailable(UpstreamError):
    """The upstream could not be reached or answered with a transport failure."""

    token = "UNAVAILABLE"


class UnknownOutcome(UpstreamError):
    """A purchase (or other non-repeatable call) whose answer was lost or unreadable.

    A number may have been bought: settle it against the upstream's active activations.
    """

    token = "UNKNOWN_OUTCOME"


class UpstreamRejected(UpstreamError):
    """An answer that is no known token (free text, garbage)."""

    token = "REJECTED"

    def __init__(self, text: str):
        self.text = text[:200]
        super().__init__(f"unrecognised upstream answer: {self.text!r}")


class RefusedInWords(UpstreamRejected):
    """A sentence a provider is known to answer a purchase with when it sells nothing
    (GrizzlySMS: "The service is prohibited for sale by administration"). Any other text
    stays `UpstreamRejected`: what it means for a purchase is unknown."""


# Known refusals in words, lower-cased and without the final full stop.
_REFUSAL_SENTENCES = frozenset({"the service is prohibited for sale by administration"})


def rejection(text: str) -> UpstreamRejected:
    """The error for free text `text`: `RefusedInWords` when it is a known refusal."""
    if text.strip().rstrip(".").lower() in _REFUSAL_SENTENCES:
        return RefusedInWords(text)
    return UpstreamRejected(text)


class RateLimited(UpstreamUnavailable):
    token = "RATE_LIMITED"

    def __init__(self, retry_after: float | None = None):
        self.retry_after = retry_after
        super().__init__(f"upstream rate limit (retry after {retry_after}s)")


class WrongMaxPrice(UpstreamError):
    token = "WRONG_MAX_PRICE"

    def __init__(self, min_price: str | None = None):
        self.min_price = min_price
        super().__init__(f"WRONG_MAX_PRICE:{min_price}" if min_price else "WRONG_MAX_PRICE")


class Banned(UpstreamError):
    token = "BANNED"


def _token_class(name: str, token: str) -> type[UpstreamError]:
    return type(name, (UpstreamError,), {"token": token, "__doc__": f"Upstream answered {token}."})


BadKey = _token_class("BadKey", "BAD_KEY")
NoKey = _token_class("NoKey", "NO_KEY")
BadAction = _token_class("BadAction", "BAD_ACTION")
BadService = _token_class("BadService", "BAD_SERVICE")
BadCountry = _token_class("BadCountry", "BAD_COUNTRY")
BadStatus = _token_class("BadStatus", "BAD_STATUS")
NoActivation = _token_class("NoActivation", "NO_ACTIVATION")
WrongActivationId = _token_class("WrongActivationId", "WRONG_ACTIVATION_ID")
NoNumbers = _token_class("NoNumbers", "NO_NUMBERS")
NoBalance = _token_class("NoBalance", "NO_BALANCE")
ErrorSql = _token_class("ErrorSql", "ERROR_SQL")
EarlyCancelDenied = _token_class("EarlyCancelDenied", "EARLY_CANCEL_DENIED")
OrderAlreadyExists = _token_class("OrderAlreadyExists", "ORDER_ALREADY_EXISTS")
AccountInactive = _token_class("AccountInactive", "ACCOUNT_INACTIVE")
ServiceUnavailableRegion = _token_class("ServiceUnavailableRegion", "SERVICE_UNAVAILABLE_REGION")
IpNotAllowed = _token_class("IpNotAllowed", "USERS_IP_IS_NOT_ALLOWED")
AlreadyCancel = _token_class("AlreadyCancel", "ALREADY_CANCEL")
StatusAlreadyChanged = _token_class("StatusAlreadyChanged", "STATUS_ALREADY_CHANGED")
ActionNotAvailable = _token_class("ActionNotAvailable", "ACTION_NOT_AVAILABLE")
NoActivations = _token_class("NoActivations", "NO_ACTIVATIONS")
# The rent family's tokens (`{"status": "error", "message": TOKEN}` upstream).
NoIdRent = _token_class("NoIdRent", "NO_ID_RENT")
InvalidTime = _token_class("InvalidTime", "INVALID_TIME")
CantCancel = _token_class("CantCancel", "CANT_CANCEL")
AlreadyFinish = _token_class("AlreadyFinish", "ALREADY_FINISH")
IncorrectStatus = _token_class("IncorrectStatus", "INCORECT_STATUS")  # spelled so upstream
RentDie = _token_class("RentDie", "RENT_DIE")
OutOfStock = _token_class("OutOfStock", "OUT_OF_STOCK")
StatusFinish = _token_class("StatusFinish", "STATUS_FINISH")
InvalidPhone = _token_class("InvalidPhone", "INVALID_PHONE")


class RentUnsupported(UpstreamError):
    """The provider rents no numbers (or not through our client): try another."""

    token = "RENT_UNSUPPORTED"


_BY_TOKEN: dict[str, type[UpstreamError]] = {
    cls.token: cls
    for cls in (
        BadKey,
        NoKey,
        BadAction,
        BadService,
        BadCountry,
        BadStatus,
        NoActivation,
        WrongActivationId,
        NoNumbers,
        NoBalance,
        ErrorSql,
        EarlyCancelDenied,
        OrderAlreadyExists,
        AccountInactive,
        ServiceUnavailableRegion,
        IpNotAllowed,
        AlreadyCancel,
        StatusAlreadyChanged,
        ActionNotAvailable,
        NoActivations,
        NoIdRent,
        InvalidTime,
        CantCancel,
        AlreadyFinish,
        IncorrectStatus,
        RentDie,
        OutOfStock,
        StatusFinish,
        InvalidPhone,
        WrongMaxPrice,
        Banned,
    )
}


def error_for_token(body: str) -> UpstreamError:
    """The exception for an error answer `body` (already trimmed)."""
    head, _, rest = body.partition(":")
    cls = _BY_TOKEN.get(head)
    if cls is WrongMaxPrice:
        return WrongMaxPrice(rest or None)
    if cls is Banned:
        return Banned(body)
    if cls is not None:
        return cls()
    return rejection(body)
