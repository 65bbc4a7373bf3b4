"""The one table from internal failure to each dialect's answer."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorRow:
    kind: str  # ServiceError.kind
    json: str  # format=json: {"error": json}
    classic: str  # the SMS-Activate plain token
    meaning: str


ERROR_TABLE: tuple[ErrorRow, ...] = (
    ErrorRow("BAD_KEY", "BAD_KEY", "BAD_KEY", "The API key is missing or wrong."),
    ErrorRow(
        "ACCOUNT_INACTIVE",
        "ACCOUNT_INACTIVE",
        "ACCOUNT_INACTIVE",
        "The account is disabled; contact support.",
    ),
    ErrorRow("BAD_ACTION", "BAD_ACTION", "BAD_ACTION", "Unknown or missing action."),
    ErrorRow("BAD_SERVICE", "BAD_SERVICE", "BAD_SERVICE", "Unknown or unavailable service code."),
    ErrorRow(
        "BAD_COUNTRY",
        "BAD_COUNTRY",
        "BAD_COUNTRY",
        "Unknown or unavailable country (use an alpha-2 code or a numeric id).",
    ),
    ErrorRow("NO_BALANCE", "NO_BALANCE", "NO_BALANCE", "Your balance is too low; top up."),
    ErrorRow(
        "NO_NUMBERS",
        "NO_NUMBERS",
        "NO_NUMBERS",
        "No numbers for this service and country right now; try later or elsewhere.",
    ),
    ErrorRow(
        "WRONG_MAX_PRICE",
        "WRONG_MAX_PRICE",
        "WRONG_MAX_PRICE:<price>",
        'Our price is above your maxPrice; the answer carries our price (JSON: "minPrice").',
    ),
    ErrorRow(
        "TOO_MANY_ACTIVATIONS",
        "TOO_MANY_ACTIVATIONS",
        "TOO_MANY_ACTIVATIONS",
        "You have too many activations running; finish or cancel some.",
    ),
    ErrorRow(
        "ORDER_ALREADY_EXISTS",
        "ORDER_ALREADY_EXISTS",
        "ORDER_ALREADY_EXISTS",
        "getNumberV2: an order with this orderId exists already.",
    ),
    ErrorRow(
        "ACTIVATION_NOT_FOUND",
        "ACTIVATION_NOT_FOUND",
        "NO_ACTIVATION",
        "No activation with this id on your account.",
    ),
    ErrorRow(
        "BAD_STATUS",
        "BAD_STATUS",
        "BAD_STATUS",
        "This status is not allowed now (e.g. cancel after a code arrived).",
    ),
    ErrorRow(
        "EARLY_CANCEL_DENIED",
        "EARLY_CANCEL_DENIED",
        "EARLY_CANCEL_DENIED",
        "Too early to cancel; cancelling opens a couple of minutes after purchase.",
    ),
    ErrorRow(
        "BAD_PARAMETER",
        "BAD_PARAMETER",
        "BAD_PARAMETER",
        "A parameter is malformed (e.g. maxPrice is not a number).",
    ),
    ErrorRow(
        "SERVICE_UNAVAILABLE",
        "SERVICE_UNAVAILABLE",
        "ERROR_SQL",
        "The provider is unavailable; try again shortly. A held charge is settled automatically.",
    ),
    ErrorRow(
        "NO_ACTIVATIONS",
        "NO_ACTIVATIONS",
        "NO_ACTIVATIONS",
        "getActiveActivations (classic): nothing is running.",
    ),
    # The rent family answers {"status": "error", "message": <classic>} in both dialects.
    ErrorRow("NO_ID_RENT", "NO_ID_RENT", "NO_ID_RENT", "Rent: no rented number with this id."),
    ErrorRow(
        "INVALID_TIME",
        "INVALID_TIME",
        "INVALID_TIME",
        "Rent: the length must be 2 to 1344 hours, whole days from 24 hours up.",
    ),
    ErrorRow(
        "CANT_CANCEL",
        "CANT_CANCEL",
        "CANT_CANCEL",
        "Rent: cancel only within the provider's window (about 20 minutes), before any SMS.",
    ),
    ErrorRow("ALREADY_FINISH", "ALREADY_FINISH", "ALREADY_FINISH", "Rent: it has ended."),
    ErrorRow("ALREADY_CANCEL", "ALREADY_CANCEL", "ALREADY_CANCEL", "Rent: it was cancelled."),
    ErrorRow(
        "INCORECT_STATUS",
        "INCORECT_STATUS",
        "INCORECT_STATUS",
        "Rent: setRentStatus takes 1 (finish) or 2 (cancel); spelled as SMS-Activate spells it.",
    ),
    ErrorRow("RENT_DIE", "RENT_DIE", "RENT_DIE", "Rent: it has ended and cannot be continued."),
)
BY_KIND = {row.kind: row for row in ERROR_TABLE}
