"""The upstream interface and the typed results it returns.

Amounts are `Decimal` in the upstream's currency (GrizzlySMS: USD); converting to our
integer money units is the caller's business.
"""

from __future__ import annotations

import abc
import datetime as dt
import hashlib
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from .errors import RentUnsupported


class UpstreamState(StrEnum):
    """What the upstream says about one activation (getStatus tokens)."""

    WAIT_CODE = "STATUS_WAIT_CODE"
    WAIT_RETRY = "STATUS_WAIT_RETRY"  # waiting for another SMS; carries the last code
    WAIT_RESEND = "STATUS_WAIT_RESEND"
    CANCELLED = "STATUS_CANCEL"
    CODE = "STATUS_OK"


@dataclass(frozen=True)
class StatusAnswer:
    state: UpstreamState
    code: str | None = None  # STATUS_OK:<code> / STATUS_WAIT_RETRY:<last code>
    # How many SMS the provider has delivered, when its protocol says (5sim lists them all):
    # a CODE answer whose count we have already recorded carries no new code.
    messages: int | None = None
    text: str | None = None  # the SMS text, when the provider sends it


@dataclass(frozen=True)
class PurchasedNumber:
    upstream_id: str  # digits
    phone: str  # digits, no "+"
    cost: Decimal | None = None  # what the upstream charged, when it said so
    country_id: int | None = None
    activation_time: dt.datetime | None = None
    activation_end: dt.datetime | None = None


@dataclass(frozen=True)
class PriceEntry:
    country_id: int
    service: str
    cost: Decimal
    count: int


@dataclass(frozen=True)
class CountryInfo:
    id: int
    name: str


@dataclass(frozen=True)
class ServiceInfo:
    code: str
    name: str


@dataclass(frozen=True)
class ActiveActivation:
    upstream_id: str
    phone: str | None
    service: str | None
    country_id: int | None
    status: str | None  # the upstream's activationStatus, as sent
    code: str | None


@dataclass(frozen=True)
class RentOffer:
    """What a provider asks for renting a number of one service for the hours asked."""

    service: str
    cost: Decimal
    count: int


@dataclass(frozen=True)
class RentedNumber:
    upstream_id: str  # digits
    phone: str  # digits, no "+"
    ends_at: dt.datetime | None = None  # naive UTC, when the provider said
    cost: Decimal | None = None


class RentState(StrEnum):
    OPEN = "open"  # the number is rented (with or without SMS so far)
    FINISHED = "finished"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class RentSms:
    sender: str | None
    text: str
    service: str | None = None
    received_at: dt.datetime | None = None  # naive UTC

    @property
    def key(self) -> str:
        """Tells this SMS from the others of the same number (providers send every SMS
        each time they are asked, without ids of their own)."""
        stamp = self.received_at.isoformat() if self.received_at else ""
        digest = hashlib.sha256(f"{self.sender}\x00{stamp}\x00{self.text}".encode())
        return digest.hexdigest()[:40]


@dataclass(frozen=True)
class RentStatus:
    state: RentState
    messages: tuple[RentSms, ...] = ()


class SetStatusAnswer(StrEnum):
    READY = "ACCESS_READY"
    RETRY_GET = "ACCESS_RETRY_GET"
    ACTIVATION = "ACCESS_ACTIVATION"
    CANCEL = "ACCESS_CANCEL"


@dataclass(frozen=True)
class Connection:
    """How to reach one provider account: what `Upstream.connect` builds a client from."""

    name: str  # the provider's slug, used in messages
    url: str = ""
    api_key: str = field(default="", repr=False)
    connect_timeout: float = 5.0
    read_timeout: float = 15.0


class Upstream(abc.ABC):
    """What the activation service needs from a provider.

    Every method raises `reseller.upstream.errors.UpstreamError` subclasses on failure:
    a protocol token becomes its own class, an unreachable provider `UpstreamUnavailable`,
    and a purchase whose answer was lost `UnknownOutcome`.
    """

    name: str = "upstream"
    # Names in the last price list the client could not map to our codes (console).
    skipped: tuple[str, ...] = ()

    @classmethod
    @abc.abstractmethod
    def connect(cls, connection: Connection) -> Upstream:
        """A client for one provider account."""

    def adopt_timings(self, lifetime: dt.timedelta, early_cancel: dt.timedelta) -> None:  # noqa: B027
        """Play by the operator's activation lifetime and early-cancel window (a simulated
        provider does; a real one keeps its own)."""

    @abc.abstractmethod
    def get_balance(self) -> Decimal: ...

    @abc.abstractmethod
    def get_prices(
        self, service: str | None = None, country_id: int | None = None
    ) -> list[PriceEntry]: ...

    @abc.abstractmethod
    def get_countries(self) -> list[CountryInfo]: ...

    @abc.abstractmethod
    def get_services(self) -> list[ServiceInfo]: ...

    @abc.abstractmethod
    def get_number(
        self, service: str, country_id: int, max_price: Decimal | None = None
    ) -> PurchasedNumber: ...

    @abc.abstractmethod
    def get_status(self, upstream_id: str) -> StatusAnswer: ...

    def get_sms_text(self, upstream_id: str, code: str) -> str | None:
        """The full text of the SMS that brought `code`, for a provider whose status answer
        carries only the code (one more call); None when it cannot tell. Never raises: a
        missing text changes nothing else. Providers that send the text with the status
        (`StatusAnswer.text`) are never asked."""
        return None

    @abc.abstractmethod
    def set_status(self, upstream_id: str, status: int) -> SetStatusAnswer: ...

    @abc.abstractmethod
    def get_active_activations(self) -> list[ActiveActivation]: ...

    # -- rent (long-term numbers): only providers with `rents` implement these ------------

    rents: bool = False  # whether this provider rents numbers (routing skips it otherwise)

    def get_rent_offers(
        self, country_id: int, hours: int, operator: str | None = None
    ) -> list[RentOffer]:
        """Every service this provider rents in the country for `hours`, with its cost."""
        raise RentUnsupported()

    def rent_number(
        self, service: str, country_id: int, hours: int, operator: str | None = None
    ) -> RentedNumber:
        """Rent a number (sent once: a lost answer raises UnknownOutcome)."""
        raise RentUnsupported()

    def get_rent_status(self, upstream_id: str) -> RentStatus:
        """The rent's state and every SMS it received so far, oldest first."""
        raise RentUnsupported()

    def set_rent_status(self, upstream_id: str, status: int) -> None:
        """1 finishes the rent, 2 cancels it (refused with CantCancel outside the window)."""
        raise RentUnsupported()

    def continue_rent(self, upstream_id: str, hours: int) -> RentedNumber:
        """Extend the rent by `hours` (sent once: a lost answer raises UnknownOutcome)."""
        raise RentUnsupported()

    def get_rent_list(self) -> list[RentedNumber]:
        """The rents open at the provider (to settle a rent whose answer was lost)."""
        raise RentUnsupported()
