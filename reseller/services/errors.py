"""Failures the customer-facing services raise.

Each has a `kind`; `reseller.api.errors.ERROR_TABLE` maps a kind to each dialect's token.
"""

from __future__ import annotations


class ServiceError(Exception):
    kind = "SERVICE_UNAVAILABLE"
    message = "The service is temporarily unavailable."

    def __init__(self, message: str | None = None, **details):
        self.details = details
        super().__init__(message or self.message)


def _kind(name: str, kind: str, message: str) -> type[ServiceError]:
    return type(name, (ServiceError,), {"kind": kind, "message": message})


BadKey = _kind("BadKey", "BAD_KEY", "Missing or wrong API key.")
AccountInactive = _kind("AccountInactive", "ACCOUNT_INACTIVE", "This account is disabled.")
BadAction = _kind("BadAction", "BAD_ACTION", "Unknown action.")
BadService = _kind("BadService", "BAD_SERVICE", "Unknown or unavailable service.")
BadCountry = _kind("BadCountry", "BAD_COUNTRY", "Unknown or unavailable country.")
NoBalance = _kind("NoBalance", "NO_BALANCE", "Your balance is too low for this number.")
NoNumbers = _kind("NoNumbers", "NO_NUMBERS", "No numbers available for this service and country.")
ServiceUnavailable = _kind(
    "ServiceUnavailable", "SERVICE_UNAVAILABLE", "The provider is unavailable; try again soon."
)
ActivationNotFound = _kind("ActivationNotFound", "ACTIVATION_NOT_FOUND", "No such activation.")
BadStatus = _kind("BadStatus", "BAD_STATUS", "This status change is not allowed now.")
EarlyCancelDenied = _kind(
    "EarlyCancelDenied", "EARLY_CANCEL_DENIED", "Too early to cancel; try again shortly."
)
OrderAlreadyExists = _kind(
    "OrderAlreadyExists", "ORDER_ALREADY_EXISTS", "An order with this orderId already exists."
)
TooManyActivations = _kind(
    "TooManyActivations", "TOO_MANY_ACTIVATIONS", "Too many active activations at once."
)
BadParameter = _kind("BadParameter", "BAD_PARAMETER", "A parameter is malformed.")
# The rent family (reseller.services.rentals).
RentNotFound = _kind("RentNotFound", "NO_ID_RENT", "No rented number with this id.")
InvalidTime = _kind("InvalidTime", "INVALID_TIME", "The rent length is not allowed.")
CantCancel = _kind("CantCancel", "CANT_CANCEL", "This rent can no longer be cancelled.")
AlreadyFinish = _kind("AlreadyFinish", "ALREADY_FINISH", "This rent has ended already.")
AlreadyCancel = _kind("AlreadyCancel", "ALREADY_CANCEL", "This rent was cancelled already.")
IncorrectStatus = _kind("IncorrectStatus", "INCORECT_STATUS", "Unknown rent status.")
RentDie = _kind("RentDie", "RENT_DIE", "This rent has ended and cannot be continued.")


class WrongMaxPrice(ServiceError):
    kind = "WRONG_MAX_PRICE"
    message = "maxPrice is below our price."

    def __init__(self, min_price: int):
        self.min_price = min_price  # money units
        super().__init__()
