"""Which upstream answers to a purchase or a rent say that nothing was sold.

One judgement for both products: a definite refusal fails over to the next provider (or is
refunded); every other answer leaves the outcome unknown — ERROR_SQL (the provider's
database failed, perhaps after it sold), a token that answers another action, free text we
do not know, a lost answer — and the hold stays with that provider until the worker settles
it there; no other provider is asked.
"""

from __future__ import annotations

from ..upstream import errors as up
from . import errors as err

# What the customer hears for each refusal that sold nothing.
PURCHASE_REFUSALS: dict[type[up.UpstreamError], type[err.ServiceError]] = {
    up.NoNumbers: err.NoNumbers,
    up.NoBalance: err.NoNumbers,  # our upstream wallet is empty: to the customer, no numbers
    up.ServiceUnavailableRegion: err.NoNumbers,
    up.RefusedInWords: err.NoNumbers,  # e.g. "prohibited for sale by administration"
    up.BadService: err.BadService,
    up.BadCountry: err.BadCountry,
    up.BadAction: err.ServiceUnavailable,  # the provider does not know the action
    up.ActionNotAvailable: err.ServiceUnavailable,
    up.Banned: err.ServiceUnavailable,
    up.BadKey: err.ServiceUnavailable,
    up.NoKey: err.ServiceUnavailable,
    up.IpNotAllowed: err.ServiceUnavailable,
    up.AccountInactive: err.ServiceUnavailable,
    up.UpstreamUnavailable: err.ServiceUnavailable,  # nothing was sent, or taken on: 503, 429
}

# A rent's own refusals besides a purchase's.
RENT_REFUSALS: dict[type[up.UpstreamError], type[err.ServiceError]] = {
    **PURCHASE_REFUSALS,
    up.OutOfStock: err.NoNumbers,
    up.RentUnsupported: err.NoNumbers,  # this provider rents nothing: try another
    up.InvalidTime: err.InvalidTime,
}


def definite_refusal(
    exc: up.UpstreamError, refusals: dict[type[up.UpstreamError], type[err.ServiceError]]
) -> type[err.ServiceError] | None:
    """The customer's error for an answer in `refusals` (it sold nothing); None when the
    outcome is unknown."""
    for cls in type(exc).__mro__:
        if cls in refusals:
            return refusals[cls]
    return None


# Continuing a rent: also refused when the rent has ended upstream.
CONTINUE_REFUSALS: dict[type[up.UpstreamError], type[err.ServiceError]] = {
    **RENT_REFUSALS,
    up.RentDie: err.RentDie,
}
