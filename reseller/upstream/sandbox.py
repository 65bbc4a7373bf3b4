"""The sandbox upstream: a self-contained provider for trying the product without a
GrizzlySMS key.

Numbers, codes and money are simulated. The state of every activation lives in the
`sandbox_activations` table, so every gunicorn worker (and every host on the same database)
sees the same activations. Each call runs in its own short transaction on its own
connection (`db.engine.begin()`), never in the caller's `db.session`; the caller must have
closed its own transaction first (on SQLite a second writer would wait for it). An app
context is required. Time comes from `reseller.clock` only.

Behaviour, as a real provider's (protocol.md section 6):

* Every service but `ot` receives a code `code_delay` seconds after purchase; `ot` ("Any
  other") never receives one, which makes it the service to try cancel and expiry with.
* An activation lives `lifetime` seconds. Without a code by then it counts as cancelled
  (full refund); with one it counts as finished. This is derived on read: no background job.
  Codes due after the end of the lifetime never arrive.
* Cancel (8, or the old -1) before any code is refused with `EarlyCancelDenied` during the
  first `early_cancel` seconds, then allowed.
* A repeated cancel of a cancelled (or expired, code-less) activation answers
  `ACCESS_CANCEL` again, so a caller that lost the answer to its cancel can repeat it and
  learn the outcome. Every other status on a cancelled or finished activation answers
  `NoActivation`.
* Status 3 while the requested SMS is still on its way answers `ACCESS_RETRY_GET` again
  without rescheduling it.
* `get_prices` lists out-of-stock combinations with count 0; combinations absent from
  `PRICES` are not listed (buying them answers `NoNumbers`, like count 0).
* The balance starts at `STARTING_BALANCE` and is charged the cost of every number that
  was not cancelled (expired without a code counts as cancelled).
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import insert, select, update

from .. import clock
from ..extensions import db
from ..models import SandboxActivation, SandboxRental
from ..money import to_decimal, to_units
from .base import (
    ActiveActivation,
    Connection,
    CountryInfo,
    PriceEntry,
    PurchasedNumber,
    RentedNumber,
    RentOffer,
    RentSms,
    RentState,
    RentStatus,
    ServiceInfo,
    SetStatusAnswer,
    StatusAnswer,
    Upstream,
    UpstreamState,
)
from .errors import (
    AlreadyCancel,
    AlreadyFinish,
    BadCountry,
    BadService,
    BadStatus,
    CantCancel,
    EarlyCancelDenied,
    IncorrectStatus,
    NoActivation,
    NoIdRent,
    NoNumbers,
    RentDie,
    StatusAlreadyChanged,
    WrongMaxPrice,
)

# -- Catalog ---------------------------------------------------------------------------

COUNTRIES: dict[int, str] = {
    0: "Russia",
    12: "USA (virtual)",
    16: "United Kingdom",
    43: "Germany",
    187: "USA",
}

SERVICES: dict[str, str] = {
    "tg": "Telegram",
    "wa": "WhatsApp",
    "go": "Google",
    "ds": "Discord",
    "ig": "Instagram",
    "dr": "OpenAI",
    "ot": "Any other",
}

# The service that never receives an SMS: buy it to try cancel and expiry.
NO_SMS_SERVICE = "ot"

STARTING_BALANCE = Decimal("1000.00")


def _offer(country_id: int, service: str, cost: str, count: int) -> PriceEntry:
    return PriceEntry(country_id=country_id, service=service, cost=Decimal(cost), count=count)


# Upstream cost (USD) and stock per (country, service). Count 0: out of stock; a pair
# missing here is not sold at all. Both answer NoNumbers.
PRICES: tuple[PriceEntry, ...] = (
    _offer(0, "tg", "0.45", 310),
    _offer(0, "wa", "0.60", 95),
    _offer(0, "go", "0.12", 1200),
    _offer(0, "ds", "0.0545", 870),
    _offer(0, "ig", "0.15", 0),
    _offer(0, "ot", "0.12", 5000),
    _offer(12, "tg", "0.25", 120),
    _offer(12, "wa", "0.35", 80),
    _offer(12, "go", "0.18", 400),
    _offer(12, "ds", "0.0545", 640),
    _offer(12, "ig", "0.16", 230),
    _offer(12, "dr", "0.40", 0),
    _offer(12, "ot", "0.12", 900),
    _offer(16, "tg", "0.90", 44),
    _offer(16, "wa", "1.10", 0),
    _offer(16, "go", "0.30", 150),
    _offer(16, "dr", "0.75", 60),
    _offer(16, "ot", "0.20", 300),
    _offer(43, "tg", "1.20", 18),
    _offer(43, "wa", "1.50", 7),
    _offer(43, "go", "0.55", 90),
    _offer(43, "ot", "0.35", 120),
    _offer(187, "tg", "1.30", 606),
    _offer(187, "wa", "1.45", 210),
    _offer(187, "go", "0.95", 330),
    _offer(187, "ds", "0.65", 0),
    _offer(187, "ig", "0.85", 140),
    _offer(187, "dr", "1.50", 75),
    _offer(187, "ot", "0.80", 260),
)

_OFFERS: dict[tuple[int, str], PriceEntry] = {(p.country_id, p.service): p for p in PRICES}

# Phone number = prefix + `digits` digits derived from the row id (international format,
# no "+"): unique per row up to 10**digits rows.
PHONE_FORMATS: dict[int, tuple[str, int]] = {
    0: ("79", 9),
    12: ("1555", 7),
    16: ("447", 9),
    43: ("49151", 8),
    187: ("1555", 7),
}

_MAX_ROW_ID = 2**31 - 1  # INTEGER primary key; larger ids cannot exist


def phone_for(country_id: int, row_id: int) -> str:
    """The sandbox phone number of activation `row_id` (digits only)."""
    prefix, digits = PHONE_FORMATS[country_id]
    # An odd multiplier not divisible by 5 is a bijection modulo 10**digits: no repeats,
    # yet consecutive rows do not get consecutive numbers.
    subscriber = (row_id * 1_000_003 + 4_211) % 10**digits
    return f"{prefix}{subscriber:0{digits}d}"


def sms_code(row_id: int, sms_number: int) -> str:
    """The 6-digit code of the `sms_number`-th SMS (1-based) of activation `row_id`.

    Deterministic, so every worker answers the same. Every fourth (row, sms) pair, the
    first SMS of row 1 among them, gets a leading zero: real codes have them and clients
    must keep them.
    """
    digest = hashlib.sha256(f"sandbox:{row_id}:{sms_number}".encode()).digest()
    value = int.from_bytes(digest[:8], "big") % 1_000_000
    if (row_id + sms_number) % 4 == 2:
        value %= 100_000
    return f"{value:06d}"


def sms_text(service: str, code: str) -> str:
    """The full text of a sandbox SMS carrying `code`, as a service would word it."""
    name = SERVICES.get(service, "account")
    return f"{code} is your {name} verification code. Do not share it with anyone."


# -- Activation lifecycle --------------------------------------------------------------


class _Phase(enum.Enum):
    WAITING = "waiting"  # no code yet, still alive
    RETRY = "retry"  # a code arrived; another SMS was requested and is on its way
    CODE = "code"  # the latest requested code arrived
    FINISHED = "finished"  # completed with 6, or the lifetime ended after a code
    CANCELLED = "cancelled"  # cancelled, or the lifetime ended without a code


# What status 1/3/6/8 does in each phase. A pair absent here answers BadStatus, except in
# FINISHED and CANCELLED where it answers NoActivation.
_READY, _RETRY, _RETRY_AGAIN, _FINISH, _CANCEL = "ready", "retry", "retry_again", "finish", "cancel"
_TRANSITIONS: dict[tuple[_Phase, int], str] = {
    (_Phase.WAITING, 1): _READY,
    (_Phase.WAITING, 8): _CANCEL,  # after the early-cancel window
    (_Phase.CODE, 1): _READY,
    (_Phase.CODE, 3): _RETRY,
    (_Phase.CODE, 6): _FINISH,
    (_Phase.RETRY, 1): _READY,
    (_Phase.RETRY, 3): _RETRY_AGAIN,
    (_Phase.RETRY, 6): _FINISH,
    (_Phase.CANCELLED, 8): _CANCEL,
}

# getActiveActivations `activationStatus` per live phase (the values GrizzlySMS sends).
_ACTIVE_STATUS = {_Phase.WAITING: "4", _Phase.CODE: "2", _Phase.RETRY: "3"}

_table = SandboxActivation.__table__


# -- Rent -------------------------------------------------------------------------------

RENT_SMS_PER_NUMBER = 3  # a rented number (but `ot`'s) receives this many SMS
RENT_CANCEL_WINDOW = dt.timedelta(minutes=20)
_rentals = SandboxRental.__table__


def rent_cost(cost: Decimal, hours: int) -> Decimal:
    """The sandbox's rent price: twice the activation's, plus 5 cents an hour."""
    return (cost * 2 + Decimal("0.05") * hours).quantize(Decimal("0.01"))


class _SandboxRent:
    """The sandbox's rent family (mixed into SandboxUpstream). SMS are derived from the
    clock: the n-th arrives n × code_delay after the rent began, while it is open."""

    rents = True
    code_delay: dt.timedelta

    def get_rent_offers(
        self, country_id: int, hours: int, operator: str | None = None
    ) -> list[RentOffer]:
        country = _country_id(country_id)
        return [
            RentOffer(service=p.service, cost=rent_cost(p.cost, hours), count=p.count)
            for p in PRICES
            if p.country_id == country
        ]

    def rent_number(
        self, service: str, country_id: int, hours: int, operator: str | None = None
    ) -> RentedNumber:
        if service not in SERVICES:
            raise BadService()
        country = _country_id(country_id)
        offer = _OFFERS.get((country, service))
        if offer is None or offer.count <= 0:
            raise NoNumbers()
        now = clock.utcnow()
        cost = rent_cost(offer.cost, hours)
        ends_at = now + dt.timedelta(hours=hours)
        with db.engine.begin() as conn:
            row_id = conn.execute(
                insert(_rentals).values(
                    service=service,
                    country_id=country,
                    phone="",
                    cost=to_units(cost, round_up=True),
                    status="active",
                    created_at=now,
                    ends_at=ends_at,
                )
            ).inserted_primary_key[0]
            phone = phone_for(country, _MAX_ROW_ID - row_id)  # apart from activations'
            conn.execute(update(_rentals).where(_rentals.c.id == row_id).values(phone=phone))
        return RentedNumber(upstream_id=str(row_id), phone=phone, ends_at=ends_at, cost=cost)

    def _rental(self, conn: Any, upstream_id: str) -> Any:
        row = conn.execute(
            select(_rentals).where(_rentals.c.id == _row_id(upstream_id))
        ).one_or_none()
        if row is None:
            raise NoIdRent()
        return row

    def _rent_messages(self, row: Any, now: dt.datetime) -> tuple[RentSms, ...]:
        if row.service == NO_SMS_SERVICE:
            return ()
        until = min(now, row.ends_at)
        messages = []
        for n in range(1, RENT_SMS_PER_NUMBER + 1):
            at = row.created_at + self.code_delay * n
            if at > until:
                break
            code = sms_code(_MAX_ROW_ID - row.id, n)
            messages.append(
                RentSms(
                    sender=SERVICES[row.service],
                    text=f"Your {SERVICES[row.service]} code: {code}",
                    service=row.service,
                    received_at=at,
                )
            )
        return tuple(messages)

    def get_rent_status(self, upstream_id: str) -> RentStatus:
        now = clock.utcnow()
        with db.engine.begin() as conn:
            row = self._rental(conn, upstream_id)
        messages = self._rent_messages(row, now)
        if row.status == "cancelled":
            return RentStatus(RentState.CANCELLED, messages)
        if row.status == "finished" or now >= row.ends_at:
            return RentStatus(RentState.FINISHED, messages)
        return RentStatus(RentState.OPEN, messages)

    def set_rent_status(self, upstream_id: str, status: int) -> None:
        """1 finishes, 2 cancels (within 20 minutes, before any SMS)."""
        now = clock.utcnow()
        with db.engine.begin() as conn:
            row = self._rental(conn, upstream_id)
            if row.status == "cancelled":
                raise AlreadyCancel()
            if row.status == "finished" or now >= row.ends_at:
                raise AlreadyFinish()
            if int(status) == 1:
                values = {"status": "finished", "ends_at": now}
            elif int(status) == 2:
                if self._rent_messages(row, now) or now - row.created_at > RENT_CANCEL_WINDOW:
                    raise CantCancel()
                values = {"status": "cancelled", "ends_at": now}
            else:
                raise IncorrectStatus()
            conn.execute(update(_rentals).where(_rentals.c.id == row.id).values(**values))

    def continue_rent(self, upstream_id: str, hours: int) -> RentedNumber:
        now = clock.utcnow()
        with db.engine.begin() as conn:
            row = self._rental(conn, upstream_id)
            if row.status != "active" or now >= row.ends_at:
                raise RentDie()
            offer = _OFFERS.get((row.country_id, row.service))
            cost = rent_cost(offer.cost if offer else Decimal("0.10"), hours)
            ends_at = row.ends_at + dt.timedelta(hours=hours)
            conn.execute(update(_rentals).where(_rentals.c.id == row.id).values(ends_at=ends_at))
        return RentedNumber(upstream_id=str(row.id), phone=row.phone, ends_at=ends_at, cost=cost)

    def get_rent_list(self) -> list[RentedNumber]:
        now = clock.utcnow()
        with db.engine.begin() as conn:
            rows = conn.execute(
                select(_rentals).where(_rentals.c.status == "active", _rentals.c.ends_at > now)
            ).all()
        return [RentedNumber(str(r.id), r.phone, r.ends_at) for r in rows]


class SandboxUpstream(_SandboxRent, Upstream):
    """Simulated provider; see the module docstring for its behaviour.

    `code_delay`: seconds from purchase (or from status 3) to the next code.
    `lifetime`: seconds an activation lives. `early_cancel`: seconds after purchase during
    which a cancel is refused.
    """

    name = "sandbox"

    def __init__(self, code_delay: float = 10, lifetime: int = 1200, early_cancel: int = 120):
        self.code_delay = dt.timedelta(seconds=code_delay)
        self.lifetime = dt.timedelta(seconds=lifetime)
        self.early_cancel = dt.timedelta(seconds=early_cancel)

    @classmethod
    def connect(cls, connection: Connection) -> SandboxUpstream:
        """The sandbox needs no URL or key; its code delay is the app's SANDBOX_CODE_DELAY."""
        from flask import current_app

        return cls(code_delay=current_app.config.get("SANDBOX_CODE_DELAY", 10))

    def adopt_timings(self, lifetime: dt.timedelta, early_cancel: dt.timedelta) -> None:
        self.lifetime = lifetime
        self.early_cancel = early_cancel

    def __repr__(self) -> str:
        return (
            f"SandboxUpstream(code_delay={self.code_delay.total_seconds():g}, "
            f"lifetime={self.lifetime.total_seconds():g}, "
            f"early_cancel={self.early_cancel.total_seconds():g})"
        )

    # -- catalog ----------------------------------------------------------------------

    def get_countries(self) -> list[CountryInfo]:
        return [CountryInfo(id=cid, name=name) for cid, name in COUNTRIES.items()]

    def get_services(self) -> list[ServiceInfo]:
        return [ServiceInfo(code=code, name=name) for code, name in SERVICES.items()]

    def get_prices(
        self, service: str | None = None, country_id: int | None = None
    ) -> list[PriceEntry]:
        """Every offer matching the filters, out-of-stock ones with count 0.

        Unknown filter values match nothing (an empty list, no error).
        """
        return [
            p
            for p in PRICES
            if (service is None or p.service == service)
            and (country_id is None or str(p.country_id) == str(country_id))
        ]

    def get_balance(self) -> Decimal:
        """`STARTING_BALANCE` minus the cost of every number not cancelled or refunded."""
        now = clock.utcnow()
        with db.engine.begin() as conn:
            rows = conn.execute(select(_table).where(_table.c.status != "cancelled")).all()
        charged = sum(
            (to_decimal(r.cost) for r in rows if self._phase(r, now)[0] is not _Phase.CANCELLED),
            Decimal(0),
        )
        return STARTING_BALANCE - charged

    # -- activations ------------------------------------------------------------------

    def get_number(
        self, service: str, country_id: int, max_price: Decimal | None = None
    ) -> PurchasedNumber:
        """Buy a number. Raises BadService, BadCountry, NoNumbers or WrongMaxPrice."""
        if service not in SERVICES:
            raise BadService()
        country = _country_id(country_id)
        offer = _OFFERS.get((country, service))
        if offer is None or offer.count <= 0:
            raise NoNumbers()
        if max_price is not None and not _at_least(max_price, offer.cost):
            raise WrongMaxPrice(min_price=str(offer.cost))

        now = clock.utcnow()
        receives_sms = service != NO_SMS_SERVICE
        with db.engine.begin() as conn:
            result = conn.execute(
                insert(_table).values(
                    service=service,
                    country_id=country,
                    phone="",
                    cost=to_units(offer.cost, round_up=True),
                    status="waiting",
                    # sms_count counts the codes scheduled so far; code_due_at is when the
                    # latest one arrives.
                    sms_count=1 if receives_sms else 0,
                    code_due_at=now + self.code_delay if receives_sms else None,
                    created_at=now,
                )
            )
            row_id = result.inserted_primary_key[0]
            phone = phone_for(country, row_id)
            conn.execute(update(_table).where(_table.c.id == row_id).values(phone=phone))
        return PurchasedNumber(
            upstream_id=str(row_id),
            phone=phone,
            cost=offer.cost,
            country_id=country,
            activation_time=now,
            activation_end=now + self.lifetime,
        )

    def get_status(self, upstream_id: str) -> StatusAnswer:
        """The activation's state. Raises NoActivation for an unknown id."""
        row_id = _row_id(upstream_id)
        now = clock.utcnow()
        with db.engine.begin() as conn:
            row = conn.execute(select(_table).where(_table.c.id == row_id)).one_or_none()
        if row is None:
            raise NoActivation()
        phase, code = self._phase(row, now)
        if phase is _Phase.WAITING:
            return StatusAnswer(UpstreamState.WAIT_CODE)
        if phase is _Phase.RETRY:
            return StatusAnswer(UpstreamState.WAIT_RETRY, code)
        if phase is _Phase.CANCELLED:
            return StatusAnswer(UpstreamState.CANCELLED)
        # CODE, FINISHED; with the SMS's text, as providers that send it do
        return StatusAnswer(UpstreamState.CODE, code, text=sms_text(row.service, code))

    def set_status(self, upstream_id: str, status: int) -> SetStatusAnswer:
        """Apply status 1, 3, 6 or 8 (-1 is 8).

        Raises NoActivation (unknown id; any status but 8 on a cancelled activation, any
        status on a finished one), EarlyCancelDenied, BadStatus (an unknown status, or
        one the activation's phase does not allow), or StatusAlreadyChanged (a concurrent
        change won; should not happen, the row is locked).
        """
        row_id = _row_id(upstream_id)
        try:
            status = int(status)
        except (TypeError, ValueError):
            raise BadStatus() from None
        if status == -1:
            status = 8
        if status not in (1, 3, 6, 8):
            raise BadStatus()

        now = clock.utcnow()
        with db.engine.begin() as conn:
            row = conn.execute(
                select(_table).where(_table.c.id == row_id).with_for_update()
            ).one_or_none()
            if row is None:
                raise NoActivation()
            phase, _ = self._phase(row, now)
            action = _TRANSITIONS.get((phase, status))
            if action is None:
                if phase in (_Phase.FINISHED, _Phase.CANCELLED):
                    raise NoActivation()
                raise BadStatus()

            if action == _READY:
                return SetStatusAnswer.READY
            if action == _RETRY_AGAIN:
                return SetStatusAnswer.RETRY_GET
            if action == _RETRY:
                self._change(
                    conn,
                    row,
                    status="retry",
                    sms_count=row.sms_count + 1,
                    code_due_at=now + self.code_delay,
                )
                return SetStatusAnswer.RETRY_GET
            if action == _FINISH:
                # A code still on its way never arrives.
                delivered = self._delivered(row, now)
                self._change(conn, row, status="done", sms_count=delivered, code_due_at=None)
                return SetStatusAnswer.ACTIVATION
            # _CANCEL
            if phase is _Phase.WAITING and now - row.created_at < self.early_cancel:
                raise EarlyCancelDenied()
            if row.status != "cancelled":  # expired without a code: record it
                self._change(conn, row, status="cancelled", sms_count=0, code_due_at=None)
            return SetStatusAnswer.CANCEL

    def get_active_activations(self) -> list[ActiveActivation]:
        """Activations neither cancelled, finished nor past their lifetime, oldest first."""
        now = clock.utcnow()
        with db.engine.begin() as conn:
            rows = conn.execute(
                select(_table)
                .where(
                    _table.c.status.in_(("waiting", "retry")),
                    _table.c.created_at > now - self.lifetime,
                )
                .order_by(_table.c.id)
            ).all()
        active = []
        for row in rows:
            phase, code = self._phase(row, now)
            if phase not in _ACTIVE_STATUS:
                continue
            active.append(
                ActiveActivation(
                    upstream_id=str(row.id),
                    phone=row.phone,
                    service=row.service,
                    country_id=row.country_id,
                    status=_ACTIVE_STATUS[phase],
                    code=code,
                )
            )
        return active

    # -- internals --------------------------------------------------------------------

    def _delivered(self, row: Any, now: dt.datetime) -> int:
        """How many codes have arrived: the latest scheduled one only once it is due,
        and only if due within the lifetime."""
        arrived_by = min(now, row.created_at + self.lifetime)
        if row.code_due_at is not None and row.code_due_at > arrived_by:
            return row.sms_count - 1
        return row.sms_count

    def _phase(self, row: Any, now: dt.datetime) -> tuple[_Phase, str | None]:
        """The activation's phase at `now` and its latest arrived code (None: none yet)."""
        delivered = self._delivered(row, now)
        code = sms_code(row.id, delivered) if delivered > 0 else None
        if row.status == "cancelled":
            return _Phase.CANCELLED, None
        if row.status == "done":
            return _Phase.FINISHED, code
        if now >= row.created_at + self.lifetime:
            return (_Phase.FINISHED, code) if delivered else (_Phase.CANCELLED, None)
        if delivered == 0:
            return _Phase.WAITING, None
        if delivered < row.sms_count:
            return _Phase.RETRY, code
        return _Phase.CODE, code

    @staticmethod
    def _change(conn: Any, row: Any, **values: Any) -> None:
        """Update `row`, guarded by the state it was read in (the row lock already
        serialises writers; this keeps a lost race from passing silently)."""
        result = conn.execute(
            update(_table)
            .where(
                _table.c.id == row.id,
                _table.c.status == row.status,
                _table.c.sms_count == row.sms_count,
            )
            .values(**values)
        )
        if result.rowcount != 1:
            raise StatusAlreadyChanged()


def _row_id(upstream_id: str) -> int:
    text = str(upstream_id).strip()
    if not (text.isascii() and text.isdigit()):
        raise NoActivation()
    row_id = int(text)
    if not 0 < row_id <= _MAX_ROW_ID:
        raise NoActivation()
    return row_id


def _country_id(country_id: int | str) -> int:
    try:
        country = int(str(country_id).strip())
    except ValueError:
        raise BadCountry() from None
    if country not in COUNTRIES:
        raise BadCountry()
    return country


def _at_least(max_price: Decimal | str | int | float, cost: Decimal) -> bool:
    """Whether `max_price` covers `cost`; a price that is no number covers nothing."""
    try:
        limit = Decimal(str(max_price))
    except InvalidOperation:
        return False
    return limit.is_finite() and limit >= cost
