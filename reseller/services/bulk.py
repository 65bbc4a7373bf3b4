"""Buying several numbers of one kind at once: each one its own activation and charge
through `activations.buy_number`, the one money path; the first refusal stops the rest."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..extensions import db
from ..models import Activation
from . import activations
from .activations import Customer, PurchaseRequest
from .errors import ServiceError

MAX_QUANTITY = 10  # numbers one form may buy


@dataclass
class Several:
    """What a purchase of `wanted` numbers did: the numbers bought, in order, and the
    refusal that stopped the rest (None when every one was bought)."""

    wanted: int
    bought: list[Activation] = field(default_factory=list)
    refusal: ServiceError | None = None

    @property
    def partial(self) -> bool:
        return bool(self.bought) and self.refusal is not None


def buy_several(user: Customer, request: PurchaseRequest, quantity: int) -> Several:
    """Buy `quantity` numbers (1 to MAX_QUANTITY) like `request`, one after the other. The
    n-th number's order id is the request's with `-n` appended (the first keeps it as it
    is), so the same form sent twice buys nothing more. A refusal (no balance left, no
    stock, the price changed…) stops the loop and is returned, not raised: the numbers
    already bought stay bought and charged. Raises ValueError for a quantity out of range."""
    if not 1 <= quantity <= MAX_QUANTITY:
        raise ValueError(f"quantity must be 1 to {MAX_QUANTITY}")
    result = Several(wanted=quantity)
    for n in range(1, quantity + 1):
        order_id = request.order_id
        if order_id and n > 1:
            order_id = f"{order_id}-{n}"
        one = PurchaseRequest(request.service, request.country, request.max_price, order_id)
        try:
            result.bought.append(activations.buy_number(user, one))
        except ServiceError as exc:
            db.session.rollback()
            result.refusal = exc
            break
    return result
