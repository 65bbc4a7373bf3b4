"""What the dashboard tells a person when a service refuses: one table, kind → text.

Keys are (ServiceError.kind, action) with action one of "buy", "cancel", "retry",
"complete"; (kind, None) applies to every action. Texts are `str.format` templates over
the context the view passes (service, country, price, new_price, balance, limit, window,
wait); a missing entry falls back to the error's own message.
"""

from __future__ import annotations

from ..services import errors as err

MESSAGES: dict[tuple[str, str | None], str] = {
    ("NO_BALANCE", "buy"): (
        "Your balance ({balance}) is too low for this number ({price}). Nothing was charged. "
        "Top up your balance (see how under “Balance”), then buy again."
    ),
    ("NO_NUMBERS", "buy"): (
        "No {service} numbers are available in {country} right now; your balance is "
        "unchanged. Try another country, or try again in a few minutes."
    ),
    ("WRONG_MAX_PRICE", "buy"): (
        "The price of a {service} number in {country} changed from {price} to {new_price} "
        "since this page was loaded. Your balance is unchanged: check the new price below and "
        "buy again if it suits you."
    ),
    ("BAD_SERVICE", "buy"): "{service} is not on sale right now. Please choose another service.",
    ("BAD_COUNTRY", "buy"): (
        "Numbers from {country} are not on sale right now. Please choose another country."
    ),
    ("TOO_MANY_ACTIVATIONS", "buy"): (
        "You already have the most numbers allowed at once ({limit}). Complete or cancel one, "
        "then buy again. Nothing was charged."
    ),
    ("ORDER_ALREADY_EXISTS", "buy"): (
        "This purchase was already placed (the form was sent twice); it is listed under "
        "“Your numbers”. Nothing more was charged."
    ),
    ("BAD_PARAMETER", "buy"): "The form was out of date. Please choose the number again.",
    ("SERVICE_UNAVAILABLE", "buy"): (
        "Our provider is not answering right now; please try again in a minute. If the "
        "purchase went through after all, the number appears under “Your numbers”; if not, "
        "any amount held is returned to your balance automatically."
    ),
    ("EARLY_CANCEL_DENIED", "cancel"): (
        "Too early to cancel: a number can be cancelled {window} after purchase, so in "
        "{wait}. Please try again then."
    ),
    ("BAD_STATUS", "cancel"): (
        "This number can no longer be cancelled: a code has arrived (complete it instead) or "
        "it is already closed."
    ),
    ("SERVICE_UNAVAILABLE", "cancel"): (
        "Our provider is not answering, so the number is not cancelled yet and nothing was "
        "refunded. Please try again in a minute."
    ),
    ("BAD_STATUS", "retry"): (
        "Another SMS can be requested only after a code has arrived on this number."
    ),
    ("SERVICE_UNAVAILABLE", "retry"): (
        "Our provider is not answering; another SMS was not requested. Please try again in "
        "a minute."
    ),
    ("BAD_STATUS", "complete"): (
        "A number can be completed only after a code has arrived. Without a code, cancel it "
        "to get your money back."
    ),
}


def failure(exc: err.ServiceError, action: str, **context) -> str:
    """The text for `exc` raised by `action`, filled in from `context`."""
    template = MESSAGES.get((exc.kind, action)) or MESSAGES.get((exc.kind, None))
    if template is None:
        return str(exc)
    try:
        return template.format(**context)
    except (KeyError, IndexError):  # a context value the view could not know
        return str(exc)
