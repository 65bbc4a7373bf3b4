"""Rented numbers: the second product, beside activations.

A rental is charged its retail price when it starts and at each continue, one `RentPeriod`
per charge with its own ledger row (so each is charged once and refunded at most once); a
cancel the upstream accepts (within its window, before any SMS) refunds its periods, and
finish and expiry refund nothing. States move only along `TRANSITIONS`, each move one
status-guarded UPDATE that only one caller wins; a refund rides on the move into a
refunding state, in the same transaction.

As for activations: no upstream call inside a database transaction (commit the hold, call
out through the guarded client, commit the outcome); a rent whose answer was lost stays
held as UNKNOWN until the worker settles it against the provider's rent list; providers
are tried in the routing order, the next only after a definite refusal.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import exists, select, update
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import (
    LedgerEntry,
    LedgerKind,
    Rental,
    RentMessage,
    RentPeriod,
    Settlement,
    utcnow,
)
from ..models import RentalStatus as R
from ..money import to_units
from ..transactions import writing
from ..upstream import deadline
from ..upstream import errors as up
from ..upstream.base import RentState
from . import catalog, refusals, rent_offers, settings, wallet, webhooks
from . import errors as err
from .activations import Customer, web_poll_budget
from .provider import upstream

log = logging.getLogger(__name__)

TRANSITIONS: dict[R, frozenset[R]] = {
    R.PENDING: frozenset({R.ACTIVE, R.FAILED, R.UNKNOWN}),
    R.UNKNOWN: frozenset({R.ACTIVE, R.FAILED}),
    R.ACTIVE: frozenset({R.FINISHED, R.CANCELLED, R.EXPIRED}),
    R.FINISHED: frozenset(),
    R.CANCELLED: frozenset(),
    R.EXPIRED: frozenset(),
    R.FAILED: frozenset(),
}
REFUNDING_STATES = frozenset({R.CANCELLED, R.FAILED})
OPEN_STATES = frozenset({R.PENDING, R.UNKNOWN, R.ACTIVE})
POLL_SECONDS = 30  # a rented number's SMS are asked for at most this often
PAGE_SIZE_MAX = 100

# A period's money: charged (pending, then confirmed or unknown), or refused/refunded.
PERIOD_PENDING, PERIOD_CONFIRMED, PERIOD_UNKNOWN = "pending", "confirmed", "unknown"
PERIOD_REFUNDED = "refunded"


def allowed(source: R, target: R) -> bool:
    return target in TRANSITIONS[source]


def _commit() -> None:
    try:
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise


def _refund_periods(rental_id: int, note: str) -> None:
    """Credit back every charged period of the rental not refunded yet. No commit."""
    periods = db.session.execute(
        select(RentPeriod)
        .where(RentPeriod.rental_id == rental_id, RentPeriod.status != PERIOD_REFUNDED)
        .where(
            exists().where(
                LedgerEntry.rent_period_id == RentPeriod.id,
                LedgerEntry.kind.in_([LedgerKind.RENT.value, LedgerKind.RENT_EXTENSION.value]),
            )
        )
    ).scalars()
    user_id = db.session.execute(select(Rental.user_id).where(Rental.id == rental_id)).scalar_one()
    for period in list(periods):
        if period.price > 0:
            wallet.credit(
                user_id,
                period.price,
                kind=LedgerKind.RENT_REFUND,
                rent_period_id=period.id,
                note=note[:500],
            )
        period.status = PERIOD_REFUNDED


def _move(rental_id: int, target: R, *, note: str, **values) -> bool:
    """Move the rental to `target` if its status allows; a refunding move credits its
    periods back. No commit. False (nothing changed) when another caller moved it first."""
    sources = [s.value for s, targets in TRANSITIONS.items() if target in targets]
    result = db.session.execute(
        update(Rental)
        .where(Rental.id == rental_id, Rental.status.in_(sources))
        .values(status=target.value, **values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return False
    if target in REFUNDING_STATES:
        _refund_periods(rental_id, note)
    log.info("rental %s → %s (%s)", rental_id, target.value, note)
    db.session.flush()
    _forget(rental_id)
    return True


def _forget(rental_id: int) -> None:
    existing = db.session.identity_map.get((Rental, (rental_id,), None))
    if existing is not None:
        db.session.expire(existing)


# --- reads ----------------------------------------------------------------------------

_MAX_ID = 2**31 - 1


def get_for_user(user: Customer, raw_id) -> Rental:
    """The user's rental by our id. Raises RentNotFound (also for others' ids)."""
    text = str(raw_id or "").strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 10 or int(text) > _MAX_ID:
        raise err.RentNotFound()
    rental = db.session.execute(
        select(Rental).where(Rental.id == int(text), Rental.user_id == user.id)
    ).scalar_one_or_none()
    if rental is None:
        raise err.RentNotFound()
    return rental


def open_for_user(user: Customer) -> list[Rental]:
    """The user's rented numbers still running, newest first."""
    return list(
        db.session.execute(
            select(Rental)
            .where(Rental.user_id == user.id, Rental.status == R.ACTIVE.value)
            .order_by(Rental.id.desc())
        ).scalars()
    )


def recent_for_user(user: Customer, limit: int = 50) -> list[Rental]:
    return list(
        db.session.execute(
            select(Rental).where(Rental.user_id == user.id).order_by(Rental.id.desc()).limit(limit)
        ).scalars()
    )


def messages_page(rental: Rental, page: int = 0, size: int = PAGE_SIZE_MAX) -> list[RentMessage]:
    """The rental's SMS newest first, page `page` (0-based) of `size`."""
    size = max(1, min(size, PAGE_SIZE_MAX))
    return list(
        db.session.execute(
            select(RentMessage)
            .where(RentMessage.rental_id == rental.id)
            .order_by(RentMessage.received_at.desc(), RentMessage.id.desc())
            .offset(max(page, 0) * size)
            .limit(size)
        ).scalars()
    )


def time_left(rental: Rental) -> int:
    """Seconds until the rental ends (0 once over or closed)."""
    if rental.ends_at is None or R(rental.status) != R.ACTIVE:
        return 0
    return max(0, int((rental.ends_at - utcnow()).total_seconds()))


# --- rent -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RentRequest:
    service: str
    country: str | None = None
    hours: str | None = None
    operator: str | None = None


def _country(raw: str | None) -> int:
    if raw is None or str(raw).strip() == "":
        return settings.get("default_country")
    try:
        country_id = catalog.parse_country(raw)
    except catalog.UnknownCountry:
        raise err.BadCountry() from None
    country = catalog.country(country_id)
    if country is None or not country.enabled:
        raise err.BadCountry()
    return country_id


def offer_country(raw: str | None) -> int:
    """The country of a rent request (the operator's default when none). Raises BadCountry."""
    return _country(raw)


_REFUSAL_RANK = (err.NoNumbers, err.InvalidTime, err.BadService, err.BadCountry)


def _refusal(exc: up.UpstreamError) -> type[err.ServiceError] | None:
    """The customer's error for a definite refusal (nothing rented); None for an unknown
    outcome, which stays with that provider until the worker settles it (`refusals`)."""
    return refusals.definite_refusal(exc, refusals.RENT_REFUSALS)


def rent_number(user: Customer, request: RentRequest) -> Rental:
    """Charge the retail price of the period and rent a number upstream.

    Raises BadService, BadCountry, InvalidTime, BadParameter, NoNumbers, NoBalance and
    ServiceUnavailable (also when the outcome is unknown: the charge is held until the
    worker settles it)."""
    service_code = (request.service or "").strip()
    service = catalog.service(service_code) if service_code else None
    if service is None or not service.enabled:
        raise err.BadService()
    country_id = _country(request.country)
    hours = rent_offers.parse_hours(request.hours)
    operator = rent_offers.parse_operator(request.operator)
    quote = rent_offers.quote(service_code, country_id, hours, operator)
    route = [
        c for c in quote.route if settings.get("serve_at_loss") == "yes" or c.cost <= quote.price
    ]
    rental_id = _hold(user.id, quote, operator, route[0].name)
    refused: list[err.ServiceError] = []
    for attempt, candidate in enumerate(route):
        if attempt and not _switch_provider(rental_id, candidate.name):
            raise err.ServiceUnavailable()  # settled meanwhile
        try:
            number = candidate.client.rent_number(service_code, country_id, hours, operator)
        except up.UpstreamError as exc:
            mapped = _refusal(exc)
            if mapped is None:
                log.warning("rent %s: unknown outcome at %s (%s)", rental_id, candidate.name, exc)
                if _move(rental_id, R.UNKNOWN, note=str(exc)[:200], error=str(exc)[:200]):
                    _commit()
                raise err.ServiceUnavailable() from None
            log.info("rent %s refused by %s: %s", rental_id, candidate.name, exc.token)
            refused.append(mapped())
            continue
        except Exception:
            log.exception("rent %s: unexpected failure; keeping the hold", rental_id)
            db.session.rollback()
            if _move(rental_id, R.UNKNOWN, note="unexpected error"):
                _commit()
            raise err.ServiceUnavailable() from None
        return _start(rental_id, candidate, number, hours)
    if _move(rental_id, R.FAILED, note="refused by every provider", closed_at=utcnow()):
        _commit()
    raise _best(refused)


def _best(refusals: list[err.ServiceError]) -> err.ServiceError:
    for cls in _REFUSAL_RANK:
        for refusal in refusals:
            if isinstance(refusal, cls):
                return refusal
    return refusals[0] if refusals else err.NoNumbers()


def _hold(user_id: int, quote, operator: str | None, provider_name: str) -> int:
    """Commit the rental as pending with its first period charged. Returns its id."""
    try:
        rental = Rental(
            user_id=user_id,
            service=quote.service,
            country_id=quote.country_id,
            operator=operator or "any",
            status=R.PENDING.value,
            hours=quote.hours,
            price=quote.price,
            upstream_name=provider_name,
        )
        db.session.add(rental)
        db.session.flush()
        period = RentPeriod(rental_id=rental.id, seq=1, hours=quote.hours, price=quote.price)
        db.session.add(period)
        db.session.flush()
        if quote.price > 0:
            wallet.debit(user_id, quote.price, kind=LedgerKind.RENT, rent_period_id=period.id)
        rental_id = rental.id
        db.session.commit()
        return rental_id
    except wallet.InsufficientFunds:
        db.session.rollback()
        raise err.NoBalance() from None
    except Exception:
        db.session.rollback()
        raise


def _switch_provider(rental_id: int, name: str) -> bool:
    result = db.session.execute(
        update(Rental)
        .where(Rental.id == rental_id, Rental.status == R.PENDING.value)
        .values(upstream_name=name)
        .execution_options(synchronize_session=False)
    )
    _commit()
    return result.rowcount == 1


def _start(rental_id: int, candidate, number, hours: int) -> Rental:
    now = utcnow()
    cost = to_units(number.cost * candidate.rate, round_up=True) if number.cost else None
    moved = _move(
        rental_id,
        R.ACTIVE,
        note=f"{candidate.name} #{number.upstream_id}",
        upstream_id=number.upstream_id,
        phone=number.phone,
        upstream_cost=cost,
        started_at=now,
        ends_at=now + dt.timedelta(hours=hours),
        next_poll_at=now + dt.timedelta(seconds=POLL_SECONDS),
    )
    if moved:
        db.session.execute(
            update(RentPeriod)
            .where(RentPeriod.rental_id == rental_id, RentPeriod.seq == 1)
            .values(status=PERIOD_CONFIRMED, upstream_cost=cost)
        )
    _commit()
    if not moved:
        # The worker settled (refunded) this rent meanwhile: give the number back.
        log.warning("rent %s settled before its answer arrived; cancelling", rental_id)
        try:
            candidate.client.set_rent_status(number.upstream_id, 2)
        except up.UpstreamError as exc:
            log.warning("could not cancel orphan rent %s: %s", number.upstream_id, exc.token)
        raise err.ServiceUnavailable()
    return db.session.get(Rental, rental_id)


# --- status, SMS ------------------------------------------------------------------------


def status(user: Customer, raw_id, *, poll: bool = True) -> Rental:
    """The user's rental, its SMS brought up to date when its poll is due. Raises
    RentNotFound."""
    rental = get_for_user(user, raw_id)
    if poll and _poll_due(rental):
        with deadline.within(web_poll_budget().deadline):  # a slow provider waits no longer
            refresh(rental.id, actor="customer")
        rental = db.session.get(Rental, rental.id)
    return rental


def _poll_due(rental: Rental) -> bool:
    if R(rental.status) != R.ACTIVE:
        return False
    return rental.next_poll_at is None or rental.next_poll_at <= utcnow()


def _claim_poll(rental_id: int) -> Rental | None:
    now = utcnow()
    result = db.session.execute(
        update(Rental)
        .where(
            Rental.id == rental_id,
            Rental.status == R.ACTIVE.value,
            (Rental.next_poll_at.is_(None)) | (Rental.next_poll_at <= now),
        )
        .values(next_poll_at=now + dt.timedelta(seconds=POLL_SECONDS))
        .execution_options(synchronize_session=False)
    )
    _commit()
    if result.rowcount != 1:
        return None
    _forget(rental_id)
    return db.session.get(Rental, rental_id)


@writing()  # also from a page view's poll
def refresh(rental_id: int, *, actor: str = "worker", force: bool = False) -> int:
    """Ask the rental's provider for its SMS (at most once per POLL_SECONDS anywhere, unless
    `force`) and keep the new ones. Never raises for upstream trouble. Returns how many SMS
    were new."""
    if force:
        rental = db.session.get(Rental, rental_id)
        if rental is None or R(rental.status) != R.ACTIVE:
            return 0
    else:
        rental = _claim_poll(rental_id)
        if rental is None:
            return 0
    upstream_id, seller = rental.upstream_id, rental.upstream_name
    try:
        answer = upstream(seller).get_rent_status(upstream_id)
    except up.UpstreamError as exc:
        log.info("rent poll %s: %s", rental_id, exc.token)
        return 0
    new = _record_messages(rental_id, answer.messages)
    closed = _CLOSED_UPSTREAM.get(answer.state)
    if closed is not None and _move(rental_id, closed[0], note=closed[1], closed_at=utcnow()):
        _commit()
    log.debug("rent poll %s by %s: %s new SMS", rental_id, actor, new)
    return new


# A rent the provider closed on its own: cancelled (it refunded us: so do we) or ended.
_CLOSED_UPSTREAM = {
    RentState.CANCELLED: (R.CANCELLED, "the provider cancelled it"),
    RentState.FINISHED: (R.EXPIRED, "the provider ended it"),
}


def _record_messages(rental_id: int, messages) -> int:
    """Keep the SMS not kept yet and queue a `rent_sms` webhook event for each. Commits."""
    if not messages:
        return 0
    known = set(
        db.session.execute(select(RentMessage.key).where(RentMessage.rental_id == rental_id))
        .scalars()
        .all()
    )
    fresh = [m for m in messages if m.key not in known]
    if not fresh:
        db.session.rollback()
        return 0
    rental = db.session.get(Rental, rental_id)
    endpoint = webhooks.endpoint_for(rental.user_id)
    try:
        for sms in fresh:
            message = RentMessage(
                rental_id=rental_id,
                key=sms.key,
                sender=(sms.sender or "")[:64] or None,
                text=sms.text,
                service=(sms.service or rental.service)[:40],
                received_at=sms.received_at or utcnow(),
            )
            db.session.add(message)
            db.session.flush()
            if endpoint is not None:
                webhooks.record_rent_sms(endpoint.id, rental_id, message)
        db.session.execute(
            update(Rental)
            .where(Rental.id == rental_id)
            .values(sms_count=Rental.sms_count + len(fresh))
            .execution_options(synchronize_session=False)
        )
        db.session.commit()
    except IntegrityError:
        db.session.rollback()  # a concurrent poller kept them first
        return 0
    _forget(rental_id)
    return len(fresh)


# --- setRentStatus ----------------------------------------------------------------------

STATUS_FINISH, STATUS_CANCEL = 1, 2


def set_status(user: Customer, raw_id, raw_status) -> Rental:
    """setRentStatus: 1 finishes, 2 cancels. Raises RentNotFound, IncorrectStatus,
    AlreadyFinish, AlreadyCancel, CantCancel, ServiceUnavailable."""
    rental = get_for_user(user, raw_id)
    text = str(raw_status if raw_status is not None else "").strip()
    if text not in ("1", "2"):
        raise err.IncorrectStatus()
    if int(text) == STATUS_FINISH:
        return finish(rental)
    return cancel(rental)


def _closed_error(rental: Rental) -> err.ServiceError | None:
    state = R(rental.status)
    if state in (R.CANCELLED, R.FAILED):
        return err.AlreadyCancel()
    if state in (R.FINISHED, R.EXPIRED):
        return err.AlreadyFinish()
    if state != R.ACTIVE:
        return err.IncorrectStatus()  # its rent is still being settled
    return None


def finish(rental: Rental, *, actor: str = "customer") -> Rental:
    """End the rent now; nothing is refunded. Tells the provider (best effort)."""
    error = _closed_error(rental)
    if error is not None:
        raise error
    rental_id, upstream_id, seller = rental.id, rental.upstream_id, rental.upstream_name
    refresh(rental_id, actor=actor, force=True)  # keep what arrived until now
    try:
        upstream(seller).set_rent_status(upstream_id, STATUS_FINISH)
    except up.UpstreamError as exc:
        log.info("finish rent %s upstream: %s (ignored)", upstream_id, exc.token)
    if _move(rental_id, R.FINISHED, note=f"finished by {actor}", closed_at=utcnow()):
        _commit()
    rental = db.session.get(Rental, rental_id)
    if R(rental.status) not in (R.FINISHED, R.EXPIRED):
        raise _closed_error(rental) or err.AlreadyFinish()
    return rental


def cancel(rental: Rental, *, actor: str = "customer") -> Rental:
    """Cancel before any SMS, within the provider's window; refunded once the provider
    accepts."""
    error = _closed_error(rental)
    if error is not None:
        raise error
    rental_id, upstream_id, seller = rental.id, rental.upstream_id, rental.upstream_name
    refresh(rental_id, actor=actor, force=True)  # an SMS that arrived forbids the cancel
    rental = db.session.get(Rental, rental_id)
    if rental.sms_count > 0 or len(rental.periods) > 1:
        raise err.CantCancel()
    if R(rental.status) != R.ACTIVE:
        raise _closed_error(rental) or err.CantCancel()
    try:
        upstream(seller).set_rent_status(upstream_id, STATUS_CANCEL)
    except up.AlreadyCancel:
        pass  # an earlier cancel's answer was lost: it is cancelled
    except (up.CantCancel, up.RentDie, up.StatusFinish, up.AlreadyFinish):
        raise err.CantCancel() from None
    except up.UpstreamError as exc:
        log.info("cancel rent %s refused upstream: %s", rental_id, exc.token)
        raise err.ServiceUnavailable() from None
    if _move(rental_id, R.CANCELLED, note=f"cancelled by {actor}", closed_at=utcnow()):
        _commit()
    return db.session.get(Rental, rental_id)


# --- continue ---------------------------------------------------------------------------


def continue_quote(user: Customer, raw_id, raw_hours) -> tuple[Rental, int, int]:
    """(rental, hours, our price) of continuing the user's rental. Raises RentNotFound,
    InvalidTime, RentDie."""
    rental = get_for_user(user, raw_id)
    hours = rent_offers.parse_hours(raw_hours)
    if R(rental.status) != R.ACTIVE:
        raise err.RentDie()
    price, _cost = rent_offers.continue_price(rental, hours)
    return rental, hours, price


def continue_rent(user: Customer, raw_id, raw_hours) -> Rental:
    """Extend the user's rental by the hours asked, charged as a period of its own.

    Raises RentNotFound, InvalidTime, RentDie, NoBalance, NoNumbers and ServiceUnavailable
    (a lost answer: the period's charge is held, marked unknown for the operator)."""
    rental = get_for_user(user, raw_id)
    hours = rent_offers.parse_hours(raw_hours)
    if R(rental.status) != R.ACTIVE or time_left(rental) <= 0:
        raise err.RentDie()
    price, cost = rent_offers.continue_price(rental, hours)
    rental_id, upstream_id, seller = rental.id, rental.upstream_id, rental.upstream_name
    ends_before = rental.ends_at
    period_id = _hold_period(rental, hours, price, cost)
    try:
        number = upstream(seller).continue_rent(upstream_id, hours)
    except up.UpstreamError as exc:
        mapped = refusals.definite_refusal(exc, refusals.CONTINUE_REFUSALS)
        period = db.session.get(RentPeriod, period_id)
        if mapped is None:
            log.warning("continue rent %s: unknown outcome (%s)", rental_id, exc)
            period.status = PERIOD_UNKNOWN
            _commit()
            raise err.ServiceUnavailable() from None
        _refuse_period(period, f"continue refused: {exc.token}")
        cannot = isinstance(exc, up.RentDie | up.RentUnsupported)  # ended, or no such thing
        raise (err.RentDie() if cannot else mapped()) from None
    ends_at = ends_before + dt.timedelta(hours=hours)  # (a concurrent continue's
    # period takes the same seq and fails: one continue at a time)
    values = {"hours": Rental.hours + hours, "ends_at": ends_at}
    if number.upstream_id and number.upstream_id != upstream_id:
        values["upstream_id"] = number.upstream_id  # some providers re-order under a new id
    db.session.execute(
        update(Rental)
        .where(Rental.id == rental_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    db.session.get(RentPeriod, period_id).status = PERIOD_CONFIRMED
    _commit()
    _forget(rental_id)
    return db.session.get(Rental, rental_id)


def _hold_period(rental: Rental, hours: int, price: int, cost: int | None) -> int:
    try:
        seq = len(rental.periods) + 1
        period = RentPeriod(
            rental_id=rental.id, seq=seq, hours=hours, price=price, upstream_cost=cost
        )
        db.session.add(period)
        db.session.flush()
        if price > 0:
            wallet.debit(
                rental.user_id, price, kind=LedgerKind.RENT_EXTENSION, rent_period_id=period.id
            )
        db.session.execute(
            update(Rental)
            .where(Rental.id == rental.id)
            .values(price=Rental.price + price)
            .execution_options(synchronize_session=False)
        )
        period_id = period.id
        db.session.commit()
        return period_id
    except wallet.InsufficientFunds:
        db.session.rollback()
        raise err.NoBalance() from None
    except IntegrityError:
        db.session.rollback()
        raise err.ServiceUnavailable() from None  # a concurrent continue took this seq


def _refuse_period(period: RentPeriod, note: str) -> None:
    """Give a refused continue's charge back. Commits."""
    rental = db.session.get(Rental, period.rental_id)
    if period.price > 0:
        wallet.credit(
            rental.user_id,
            period.price,
            kind=LedgerKind.RENT_REFUND,
            rent_period_id=period.id,
            note=note[:500],
        )
    period.status = PERIOD_REFUNDED
    db.session.execute(
        update(Rental)
        .where(Rental.id == rental.id)
        .values(price=Rental.price - period.price)
        .execution_options(synchronize_session=False)
    )
    _commit()
    _forget(rental.id)


# --- the worker's part --------------------------------------------------------------------


def expire(rental_id: int, *, actor: str = "worker") -> bool:
    """Close a rental whose time ran out (a last look for SMS first). No refund."""
    rental = db.session.get(Rental, rental_id)
    if rental is None or R(rental.status) != R.ACTIVE or rental.ends_at > utcnow():
        return False
    refresh(rental_id, actor=actor, force=True)
    moved = _move(rental_id, R.EXPIRED, note="rent time over", closed_at=utcnow())
    _commit()
    return moved


def settle_lost_rent(rental_id: int, *, unconfirmed: str | None = None) -> bool:
    """Refund a rent whose answer never came. Commits; True when it moved."""
    if unconfirmed is None:
        settlement, note = Settlement.LISTED, "rent answer never arrived; refunded"
    else:
        settlement = Settlement.UNCONFIRMED
        note = f"refunded without upstream confirmation ({unconfirmed})"
    moved = _move(
        rental_id,
        R.FAILED,
        note=note,
        closed_at=utcnow(),
        settlement=settlement.value,
        error=note[:200],
    )
    _commit()
    return moved


# --- worker steps (reseller.services.worker runs them each pass) ---------------------------


def poll_due(budget, on_error=None) -> int:
    """Ask the providers for the SMS of open rentals whose poll slot is due, within the
    worker's poll `budget` (activations.PollBudget); the rest wait for the next pass.
    Returns how many new SMS were kept. A rental whose poll fails is handed with the
    exception to `on_error(rental_id, exc)` (by default: logged) and the others go on."""
    from .jobs import claim_rows, release

    now = utcnow()
    ids = claim_rows(
        Rental,
        select(Rental.id).where(
            Rental.status == R.ACTIVE.value,
            (Rental.next_poll_at.is_(None)) | (Rental.next_poll_at <= now),
        ),
        claim_seconds=60,
    )
    new = 0
    for rental_id in ids:
        try:
            if not budget.spent:
                with deadline.within(budget.deadline):
                    new += refresh(rental_id, actor="worker")
        except Exception as exc:
            db.session.rollback()
            if on_error is None:
                log.exception("rent poll %s failed", rental_id)
            else:
                on_error(rental_id, exc)
        finally:
            release(Rental, rental_id)
    return new


def expire_overdue() -> int:
    """Close the rentals whose time ran out. Returns how many closed."""
    from .jobs import claim_rows, release

    ids = claim_rows(
        Rental,
        select(Rental.id).where(Rental.status == R.ACTIVE.value, Rental.ends_at <= utcnow()),
        claim_seconds=120,
    )
    closed = 0
    for rental_id in ids:
        try:
            closed += expire(rental_id)
        except Exception:
            db.session.rollback()
            log.exception("rent expiry %s failed", rental_id)
        finally:
            release(Rental, rental_id)
    return closed


def settle_lost(settle_after: int, settle_blind_after: int) -> tuple[int, list[str]]:
    """Settle rents whose answer never came, provider by provider (the pattern of
    activations' settlement): refunded once older than `settle_after` when the provider's
    rent list was read, after `settle_blind_after` when it could not be. A rent the
    provider lists that no rental of ours holds is given back (cancelled) when it can only
    be one of these lost rents: the provider has nothing else of ours in flight.
    Returns (how many were settled, errors)."""
    now = utcnow()
    names = db.session.execute(
        select(Rental.upstream_name)
        .where(Rental.status.in_([R.PENDING.value, R.UNKNOWN.value]))
        .distinct()
    ).scalars()
    settled, errors = 0, []
    for name in list(names):
        stale_before = now - dt.timedelta(seconds=settle_after)
        try:
            listed = upstream(name).get_rent_list()
        except up.UpstreamError as exc:
            errors.append(f"rent list: {exc.token} at {name}")
            cutoff = now - dt.timedelta(seconds=settle_blind_after)
            for rental_id in _lost(name, cutoff):
                settled += settle_lost_rent(rental_id, unconfirmed=f"rent list: {exc.token}")
            continue
        lost = _lost(name, stale_before)
        for rental_id in lost:
            settled += settle_lost_rent(rental_id)
        in_flight = db.session.execute(
            select(Rental.id).where(
                Rental.upstream_name == name,
                Rental.status.in_([R.PENDING.value, R.UNKNOWN.value]),
            )
        ).first()
        if lost and in_flight is None:
            _release_unheld(name, listed, len(lost))
    db.session.commit()
    return settled, errors


def _lost(name: str, cutoff: dt.datetime) -> list[int]:
    return list(
        db.session.execute(
            select(Rental.id).where(
                Rental.upstream_name == name,
                Rental.status.in_([R.PENDING.value, R.UNKNOWN.value]),
                Rental.created_at <= cutoff,
            )
        ).scalars()
    )


def _release_unheld(name: str, listed, most: int) -> None:
    ids = [r.upstream_id for r in listed]
    held = set(
        db.session.execute(
            select(Rental.upstream_id).where(
                Rental.upstream_name == name, Rental.upstream_id.in_(ids)
            )
        ).scalars()
    )
    unheld = [upstream_id for upstream_id in ids if upstream_id not in held]
    if len(unheld) > most:
        log.warning("%s lists %s rents of no rental of ours: left alone", name, len(unheld))
        return
    for upstream_id in unheld:
        try:
            upstream(name).set_rent_status(upstream_id, STATUS_CANCEL)
            log.warning("cancelled %s rent %s, rented for no customer", name, upstream_id)
        except up.UpstreamError as exc:
            log.warning("could not cancel %s rent %s: %s", name, upstream_id, exc.token)
