"""The background pass: poll, expire, deliver webhooks, settle, refresh prices.

Run by `flask worker` (a loop) or `flask worker --once` (cron). Several workers may run at
once, on several hosts: rows are claimed in the database (`FOR UPDATE SKIP LOCKED` on
PostgreSQL, status- and time-guarded UPDATEs everywhere) so none is processed twice.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field

from flask import current_app
from sqlalchemy import or_, select

from ..extensions import db
from ..models import Activation, JobState, utcnow
from ..models import ActivationStatus as S
from ..upstream import errors as up
from ..upstream.base import SetStatusAnswer
from . import (
    activations,
    catalog,
    health,
    mail,
    payments,
    provider,
    rentals,
    settings,
    telegram,
    webhooks,
)
from .jobs import claim_job, claim_rows, finish_job, mark_ran, release
from .provider import upstream

log = logging.getLogger(__name__)


@dataclass
class PassReport:
    polled: int = 0
    expired: int = 0
    settled: int = 0
    settled_unconfirmed: int = 0  # of `settled`: without the upstream's active list
    orphans_cancelled: int = 0
    foreign: int = 0  # upstream activations we did not buy, left alone
    webhooks_delivered: int = 0
    webhooks_failed: int = 0
    mails_sent: int = 0
    mails_failed: int = 0
    prices_refreshed: bool = False
    payments_credited: int = 0
    payments_expired: int = 0
    rent_sms: int = 0
    rentals_expired: int = 0
    rentals_settled: int = 0
    telegram_sent: int = 0
    telegram_failed: int = 0
    errors: list[str] = field(default_factory=list)
    # The exception behind an error, by its message: logged with its traceback when the
    # error first appears (`flask worker` says a repeating error once, not every pass).
    exceptions: dict[str, BaseException] = field(default_factory=dict)

    def fail(self, message: str, exc: BaseException) -> None:
        self.errors.append(message)
        self.exceptions[message] = exc

    def did_something(self) -> bool:
        counts = (
            self.polled,
            self.expired,
            self.settled,
            self.orphans_cancelled,
            self.webhooks_delivered,
            self.webhooks_failed,
            self.payments_credited,
            self.payments_expired,
            self.rent_sms,
            self.rentals_expired,
            self.rentals_settled,
            self.telegram_sent,
            self.telegram_failed,
        )
        return self.prices_refreshed or any(counts)

    def summary(self, *, errors: bool = True) -> str:
        return (
            f"polled {self.polled}, expired {self.expired}, settled {self.settled}"
            + (
                f" ({self.settled_unconfirmed} without upstream confirmation)"
                if self.settled_unconfirmed
                else ""
            )
            + f", orphans cancelled {self.orphans_cancelled}, foreign {self.foreign}, "
            f"webhooks delivered {self.webhooks_delivered} failed {self.webhooks_failed}, "
            f"mails sent {self.mails_sent} failed {self.mails_failed}, "
            f"prices {'refreshed' if self.prices_refreshed else 'fresh'}, "
            f"top-ups credited {self.payments_credited}, expired {self.payments_expired}"
            + (
                f", rent SMS {self.rent_sms}, rentals expired {self.rentals_expired} "
                f"settled {self.rentals_settled}"
                if self.rent_sms or self.rentals_expired or self.rentals_settled
                else ""
            )
            + (
                f", telegram sent {self.telegram_sent} failed {self.telegram_failed}"
                if self.telegram_sent or self.telegram_failed
                else ""
            )
            + (f", errors: {'; '.join(self.errors)}" if errors and self.errors else "")
        )


def settle_after() -> int:
    """Seconds after which a pending purchase cannot still be waiting for its answer."""
    config = current_app.config
    if config.get("SETTLE_AFTER"):
        return int(config["SETTLE_AFTER"])
    return int(config["UPSTREAM_CONNECT_TIMEOUT"] + config["UPSTREAM_READ_TIMEOUT"]) + 30


def poll_due(report: PassReport) -> None:
    """Poll the activations whose slot is due, for at most WORKER_POLL_BUDGET seconds in all
    (each upstream wait capped at the time left): a slow upstream delays the next pass's
    expiry and refunds by no more than that. Rows left over are released for the next pass."""
    budget = activations.PollBudget(current_app.config["WORKER_POLL_BUDGET"])
    now = utcnow()
    ids = claim_rows(
        Activation,
        select(Activation.id).where(
            Activation.status.in_([S.ALLOCATED.value, S.RETRY_WAIT.value]),
            or_(Activation.next_poll_at.is_(None), Activation.next_poll_at <= now),
        ),
        claim_seconds=60,
    )
    for activation_id in ids:
        try:
            if budget.spent:
                continue
            activation = db.session.get(Activation, activation_id)
            before = activation.next_poll_at
            activation = activations.refresh_status(activation, actor="worker", budget=budget)
            if activation.next_poll_at != before:
                report.polled += 1
        except Exception as exc:  # keep going; one bad row must not stop the pass
            db.session.rollback()
            report.fail(f"poll {activation_id}: {type(exc).__name__}", exc)
        finally:
            release(Activation, activation_id)


def expire_overdue(report: PassReport) -> None:
    now = utcnow()
    ids = claim_rows(
        Activation,
        select(Activation.id).where(
            Activation.status.in_([S.ALLOCATED.value, S.CODE_RECEIVED.value, S.RETRY_WAIT.value]),
            Activation.expires_at <= now,
        ),
        claim_seconds=120,
    )
    for activation_id in ids:
        try:
            if activations.expire(activation_id, actor="worker"):
                report.expired += 1
        except Exception as exc:
            db.session.rollback()
            report.fail(f"expire {activation_id}: {type(exc).__name__}", exc)
        finally:
            release(Activation, activation_id)


def _sellers() -> list[str]:
    """Providers that may hold numbers of ours: every enabled one, and any (even disabled)
    with an open activation."""
    open_names = set(
        db.session.execute(
            select(Activation.upstream_name)
            .where(Activation.status.in_([s.value for s in activations.ACTIVE_STATES]))
            .distinct()
        ).scalars()
    )
    names = [p.name for p in provider.all_providers() if p.enabled or p.name in open_names]
    return names + sorted(open_names - set(names))


def settle_purchases(report: PassReport) -> None:
    """Settle purchases whose answer never came and release the numbers bought for them,
    provider by provider: each purchase with the provider it was sent to, against that
    provider's active list only.

    A pending/unknown purchase older than `settle_after()` is refunded whatever the
    upstream says. Only when the upstream's active list cannot be read does it wait longer
    (`settle_blind_after()`: by then any number bought for it has run out its lifetime
    upstream), and it is recorded as settled without upstream confirmation.

    With the list read, upstream numbers no activation of ours holds (orphans) are judged
    once seen for `settle_after()` (an answer still on its way is never raced): one that can
    be tied to one of our settled purchases (same service and country, appeared in that
    purchase's window, one number per purchase) is released upstream; any other is foreign
    (the operator's own purchase, another instance on the same key): left alone and listed.
    """
    if not claim_job("settle", every=0, hold=300):
        return
    try:
        for name in _sellers():
            _settle_with(name, report)
        finish_job("settle")
    except Exception:
        db.session.rollback()
        finish_job("settle", ran=False)
        raise


def _settle_with(name: str, report: PassReport) -> None:
    state = SettleState.load(name)
    try:
        active = upstream(name).get_active_activations()
    except up.UpstreamError as exc:
        report.errors.append(f"active activations: {exc.token} at {name}")
        _refund_stale_holds(name, report, unconfirmed=f"active list unavailable: {exc.token}")
        state.store(name)
        return
    _refund_stale_holds(name, report)
    _sweep_orphans(name, active, state, report).store(name)
    db.session.commit()


def settle_blind_after() -> int:
    """Seconds after which a purchase is refunded although the upstream's list is unreadable."""
    return settle_after() + int(settings.get("activation_lifetime"))


def _refund_stale_holds(name: str, report: PassReport, *, unconfirmed: str | None = None) -> None:
    wait = settle_after() if unconfirmed is None else settle_blind_after()
    cutoff = utcnow() - dt.timedelta(seconds=wait)
    stale = db.session.execute(
        select(Activation.id).where(
            Activation.upstream_name == name,
            Activation.status.in_([S.PENDING.value, S.UNKNOWN.value]),
            Activation.created_at <= cutoff,
        )
    ).scalars()
    for activation_id in list(stale):
        if activations.settle_lost_purchase(activation_id, unconfirmed=unconfirmed):
            report.settled += 1
            report.settled_unconfirmed += unconfirmed is not None


@dataclass(frozen=True)
class ForeignActivation:
    """An upstream activation we did not buy (left alone, listed on the console)."""

    provider: str
    upstream_id: str
    service: str | None
    country_id: int | None
    phone: str | None
    status: str | None
    first_seen: dt.datetime


@dataclass
class SettleState:
    """What the settle job remembers between passes, per provider (JobState "settle:NAME"):
    when its list was last read, when each orphan was first seen (and the reading before, so
    that it appeared between the two), and the foreign activations of the last reading."""

    listed_at: dt.datetime | None = None
    seen: dict[str, tuple[dt.datetime, dt.datetime | None]] = field(default_factory=dict)
    foreign: list[ForeignActivation] = field(default_factory=list)

    @classmethod
    def load(cls, name: str) -> SettleState:
        job = db.session.get(JobState, f"settle:{name}")
        try:
            data = json.loads(job.value) if job is not None and job.value else {}
            return cls(
                listed_at=_when(data.get("listed_at")),
                seen={
                    key: (_when(item["first"]), _when(item.get("after")))
                    for key, item in data.get("seen", {}).items()
                },
                foreign=[
                    ForeignActivation(
                        **{**item, "provider": name, "first_seen": _when(item["first_seen"])}
                    )
                    for item in data.get("foreign", [])
                ],
            )
        except (ValueError, TypeError, KeyError, AttributeError):  # an older shape: start anew
            return cls()

    def store(self, name: str) -> None:
        """Keep this state for provider `name` (no commit)."""
        job = db.session.get(JobState, f"settle:{name}")
        if job is None:
            job = JobState(name=f"settle:{name}")
            db.session.add(job)
        job.value, job.last_run_at = self.dump(), utcnow()

    def dump(self) -> str:
        return json.dumps(
            {
                "listed_at": _iso(self.listed_at),
                "seen": {
                    key: {"first": _iso(first), "after": _iso(after)}
                    for key, (first, after) in self.seen.items()
                },
                "foreign": [
                    {
                        **{k: v for k, v in vars(item).items() if k != "provider"},
                        "first_seen": _iso(item.first_seen),
                    }
                    for item in self.foreign
                ],
            }
        )


def _when(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text) if text else None


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def foreign_activations() -> tuple[list[ForeignActivation], dt.datetime | None]:
    """The provider activations the last settle pass judged foreign (every provider's), and
    when the oldest of those lists was read."""
    foreign: list[ForeignActivation] = []
    read: list[dt.datetime] = []
    for row in provider.all_providers():
        state = SettleState.load(row.name)
        foreign.extend(state.foreign)
        if state.listed_at is not None:
            read.append(state.listed_at)
    return foreign, min(read) if read else None


def _sweep_orphans(name: str, active: list, state: SettleState, report: PassReport) -> SettleState:
    now = utcnow()
    judged_before = now - dt.timedelta(seconds=settle_after())
    holders = (
        dict(
            db.session.execute(
                select(Activation.upstream_id, Activation.status).where(
                    Activation.upstream_name == name,
                    Activation.upstream_id.in_([a.upstream_id for a in active]),
                )
            ).all()
        )
        if active
        else {}
    )
    seen: dict[str, tuple[dt.datetime, dt.datetime | None]] = {}
    judged = []
    for item in active:
        holder = holders.get(item.upstream_id)
        if holder == S.FAILED.value:
            _release(name, item.upstream_id, report)  # tied earlier, or its answer came too late
        elif holder is None:
            first, after = state.seen.get(item.upstream_id, (now, state.listed_at))
            seen[item.upstream_id] = (first, after)
            if first <= judged_before:
                judged.append(item)
    db.session.commit()
    foreign = []
    for item in judged:
        first, after = seen[item.upstream_id]
        purchase = _purchase_for(name, item, first, after)
        if purchase is not None and activations.tie_upstream_number(
            purchase, item.upstream_id, item.phone
        ):
            log.warning(
                "%s activation %s was bought for purchase %s", name, item.upstream_id, purchase
            )
            del seen[item.upstream_id]
            _release(name, item.upstream_id, report)
        else:
            foreign.append(
                ForeignActivation(
                    name,
                    item.upstream_id,
                    item.service,
                    item.country_id,
                    item.phone,
                    item.status,
                    first,
                )
            )
    report.foreign += len(foreign)
    return SettleState(listed_at=now, seen=seen, foreign=foreign)


def _purchase_for(name: str, item, first: dt.datetime, after: dt.datetime | None) -> int | None:
    """The earliest settled purchase without a number that upstream activation `item` can be
    tied to: same service and country, and the item appeared (after the reading `after`, by
    the reading `first`) within the purchase's window (created … created + settle_after)."""
    window = dt.timedelta(seconds=settle_after())
    lookback = first - window - dt.timedelta(seconds=int(settings.get("activation_lifetime")))
    stmt = (
        select(Activation.id, Activation.created_at)
        .where(
            Activation.upstream_name == name,
            Activation.status == S.FAILED.value,
            Activation.settlement.is_not(None),
            Activation.upstream_id.is_(None),
            Activation.service == item.service,
            Activation.country_id == item.country_id,
            Activation.created_at >= lookback,
            Activation.created_at <= first,
        )
        .order_by(Activation.created_at, Activation.id)
    )
    for activation_id, created_at in db.session.execute(stmt):
        if after is None or after < created_at + window:
            return activation_id
    return None


def _release(name: str, upstream_id: str, report: PassReport) -> None:
    """Cancel at provider `name` a number no customer holds; counted once it confirms."""
    try:
        answer = upstream(name).set_status(upstream_id, activations.STATUS_CANCEL)
    except up.UpstreamError as exc:
        log.info("releasing upstream activation %s: %s", upstream_id, exc.token)
        return
    if answer == SetStatusAnswer.CANCEL:
        report.orphans_cancelled += 1
        log.warning("cancelled upstream activation %s, bought for no customer", upstream_id)


def deliver_webhooks(report: PassReport) -> None:
    """Push queued customer webhook events (codes polled above go out in the same pass)."""
    counts = webhooks.deliver_due()
    report.webhooks_delivered += counts.delivered
    report.webhooks_failed += counts.failed
    webhooks.prune_if_due()


def deliver_telegram(report: PassReport) -> None:
    """Push the bot's outbox (codes polled above, expiries, broadcasts) to Telegram chats."""
    if not current_app.config.get("TELEGRAM_BOT_TOKEN"):
        return
    from ..telegram import push  # the bot's sender (aiogram loads only where the bot runs)

    counts = push.deliver_due()
    report.telegram_sent += counts.sent
    report.telegram_failed += counts.failed
    telegram.prune_if_due()


def deliver_mail(report: PassReport) -> None:
    """Send the queued mails (password resets, e-mail links)."""
    counts = mail.deliver_due()
    report.mails_sent += counts.sent
    report.mails_failed += counts.failed
    mail.prune_if_due()


def refresh_prices(report: PassReport, *, force: bool = False) -> None:
    """Every enabled provider's catalogue, then the offers (`PRICE_REFRESH_INTERVAL`)."""
    every = current_app.config["PRICE_REFRESH_INTERVAL"]
    force = force or bool(catalog.unsynced())  # a new provider sells from the next pass
    if not claim_job("prices", every=0 if force else every, hold=600):
        return
    try:
        results = catalog.refresh_all()
    except Exception:
        db.session.rollback()
        finish_job("prices", ran=False)
        raise
    failed = {name: r["error"] for name, r in results.items() if "error" in r}
    for name, token in failed.items():
        report.errors.append(f"prices: {token} at {name}")
    if results and len(failed) == len(results):
        finish_job("prices", ran=False)  # nobody answered: try again next pass
        return
    report.prices_refreshed = True
    finish_job("prices", value=json.dumps({n: r.get("prices") for n, r in results.items()}))


def refresh_offers(report: PassReport) -> None:  # noqa: ARG001
    """Rebuild the offers when the providers routing would use changed (a breaker opened
    or cooled, a setting changed) since they were built."""
    if not catalog.offers_current():
        catalog.rebuild_offers()


def refresh_upstream_balance(report: PassReport) -> None:  # noqa: ARG001
    """Keep every provider's shared balance reading (for /healthz and the console) at most
    a minute old."""
    from . import stats

    stats.provider_balances()
    db.session.commit()


def reconcile_payments(report: PassReport) -> None:
    """Top-ups: credit what the gateways say is paid (lost notifications), expire the rest."""
    found = payments.reconcile()
    report.payments_credited += found.credited
    report.payments_expired += found.expired
    report.errors.extend(f"payments: {error}" for error in found.errors)


def expire_rentals(report: PassReport) -> None:
    report.rentals_expired += rentals.expire_overdue()


def settle_rentals(report: PassReport) -> None:
    """Rents whose answer never came, settled as purchases are (`settle_purchases`)."""
    settled, errors = rentals.settle_lost(settle_after(), settle_blind_after())
    report.rentals_settled += settled
    report.errors.extend(errors)


def poll_rentals(report: PassReport) -> None:
    """New SMS of rented numbers (each queued as a `rent_sms` webhook event)."""
    budget = activations.PollBudget(current_app.config["WORKER_POLL_BUDGET"])
    report.rent_sms += rentals.poll_due(
        budget,
        on_error=lambda rental_id, exc: report.fail(
            f"rent poll {rental_id}: {type(exc).__name__}", exc
        ),
    )


STEPS = (
    expire_overdue,
    settle_purchases,
    expire_rentals,
    settle_rentals,
    reconcile_payments,
    poll_due,
    poll_rentals,
    deliver_webhooks,
    deliver_telegram,
    deliver_mail,
    refresh_upstream_balance,
    refresh_prices,
    refresh_offers,
)


def run_once() -> PassReport:
    report = PassReport()
    settings.forget()
    # Money first: expiry, refunds of unanswered purchases and top-ups run before anything
    # that may wait on a slow upstream (polling is bounded; offers, prices and balances last).
    for step in STEPS:
        try:
            step(report)
        except Exception as exc:
            db.session.rollback()
            report.fail(f"{step.__name__}: {type(exc).__name__}", exc)
    # Nothing stays open between passes: a step's last read (the offers' check) began a
    # transaction, and `flask worker` sleeps after the pass. On SQLite every transaction
    # holds the write lock (reseller.sqlite), so every purchase, cancel and due poll waited
    # out the worker's sleep; on PostgreSQL the session sat idle in a transaction.
    try:
        db.session.commit()
        mark_ran(health.WORKER_PASS_JOB)  # /metrics: a stalled worker is seen by its age
    except Exception as exc:
        db.session.rollback()
        report.fail(f"end of pass: {type(exc).__name__}", exc)
    return report
