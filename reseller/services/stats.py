"""The business at a glance: outcomes, money and the upstream balance.

Every figure comes from recorded data, grouped by UTC calendar day:

* Outcomes come from `ActivationEvent` rows. An activation's outcome is the first event
  that moved it into one of: code received (`code_received`, or `completed`), `cancelled`,
  `expired`, `failed`. These are exclusive (a refunding state cannot follow a code), and
  the outcome is dated by that event.
* Revenue comes from the ledger: purchase rows minus refund rows, dated by the ledger row.
  Money held for activations still waiting counts as revenue until it is refunded, when
  the refund counts against the day of the refund.
* Upstream cost is what the upstream keeps: the `upstream_cost` of activations whose
  outcome is "code received", dated by the first code. Cancelled and expired activations
  were cancelled at the upstream (which refunds us), failed ones were never sold to us,
  and waiting ones may still be cancelled, so none of those cost anything (yet).
  Activations with a code but no known cost are counted in `cost_unknown`, not guessed.
* Profit is revenue minus upstream cost.
* The success rate is code received / (code received + cancelled + expired): of the numbers
  handed out that reached an outcome, the share that delivered a code. Failed purchases
  never handed out a number and are left out of it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import func, or_, select

from ..extensions import db
from ..models import (
    Activation,
    ActivationEvent,
    JobState,
    LedgerEntry,
    LedgerKind,
    User,
    utcnow,
)
from ..models import ActivationStatus as S
from ..money import to_units
from . import jobs, provider, settings

log = logging.getLogger(__name__)

PERIODS: tuple[tuple[str, str, int], ...] = (
    ("today", "Today", 1),
    ("7d", "7 days", 7),
    ("30d", "30 days", 30),
)
CHART_DAYS = 30
OUTCOMES = ("code", "cancelled", "expired", "failed")
CODE_STATES = (S.CODE_RECEIVED.value, S.COMPLETED.value)
CLOSED_STATES = (S.CANCELLED.value, S.EXPIRED.value, S.FAILED.value)


@dataclass
class Figures:
    """Totals over one or more days (money in money units)."""

    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    charged: int = 0  # money charged for numbers ("purchases" elsewhere count numbers)
    refunds: int = 0
    cost: int = 0
    cost_unknown: int = 0

    @property
    def revenue(self) -> int:
        return self.charged - self.refunds

    @property
    def profit(self) -> int:
        return self.revenue - self.cost

    @property
    def success_rate(self) -> float | None:
        """Share of handed-out numbers that delivered a code (None: no outcome yet)."""
        handed_out = self.outcomes["code"] + self.outcomes["cancelled"] + self.outcomes["expired"]
        return self.outcomes["code"] / handed_out if handed_out else None

    def add(self, other: Figures) -> None:
        for key in OUTCOMES:
            self.outcomes[key] += other.outcomes[key]
        self.charged += other.charged
        self.refunds += other.refunds
        self.cost += other.cost
        self.cost_unknown += other.cost_unknown


@dataclass
class Ranked:
    """One service's or country's figures in a period."""

    key: str | int
    codes: int = 0
    revenue: int = 0
    cost: int = 0

    @property
    def profit(self) -> int:
        return self.revenue - self.cost


@dataclass
class Overview:
    today: dt.date
    days: list[dt.date]  # the chart's days, oldest first, ending today
    daily: dict[dt.date, Figures]
    periods: dict[str, Figures]
    top_services: dict[str, list[Ranked]]
    top_countries: dict[str, list[Ranked]]


def _day(value) -> dt.date:
    """A `date(...)` result as a date: SQLite answers text, PostgreSQL a date."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def overview(now: dt.datetime | None = None, top: int = 5) -> Overview:
    """The figures for today, 7 and 30 days, per day over 30 days, and the top services
    and countries (by revenue) per period."""
    now = now or utcnow()
    today = now.date()
    days = [today - dt.timedelta(days=n) for n in range(CHART_DAYS - 1, -1, -1)]
    start = dt.datetime.combine(days[0], dt.time.min)
    daily: dict[dt.date, Figures] = {day: Figures() for day in days}
    # Per (day, service) and (day, country): codes, revenue, cost.
    by_service: dict[tuple[dt.date, str], Ranked] = {}
    by_country: dict[tuple[dt.date, int], Ranked] = {}

    def ranked(day, service, country_id) -> tuple[Ranked, Ranked]:
        s = by_service.setdefault((day, service), Ranked(service))
        c = by_country.setdefault((day, country_id), Ranked(country_id))
        return s, c

    # Money: purchases and refunds, per day, service and country.
    day_col = func.date(LedgerEntry.created_at)
    for day, kind, service, country_id, total in db.session.execute(
        select(
            day_col,
            LedgerEntry.kind,
            Activation.service,
            Activation.country_id,
            func.sum(LedgerEntry.amount),
        )
        .join(Activation, Activation.id == LedgerEntry.activation_id)
        .where(
            LedgerEntry.created_at >= start,
            LedgerEntry.kind.in_([LedgerKind.PURCHASE.value, LedgerKind.REFUND.value]),
        )
        .group_by(day_col, LedgerEntry.kind, Activation.service, Activation.country_id)
    ):
        day = _day(day)
        if day not in daily:
            continue  # a row stamped in the future (clock skew): not in any period
        total = int(total or 0)
        figures = daily[day]
        if kind == LedgerKind.PURCHASE.value:
            figures.charged += -total
        else:
            figures.refunds += total
        for row in ranked(day, service, country_id):
            row.revenue += -total

    # Codes: the first code event per activation. Every event of an activation falls within
    # its lifetime, so looking that far before the window finds every first code.
    lookback = dt.timedelta(seconds=settings.BY_KEY["activation_lifetime"].maximum or 0)
    first_code = (
        select(
            ActivationEvent.activation_id.label("activation_id"),
            func.min(ActivationEvent.created_at).label("at"),
        )
        .where(
            ActivationEvent.to_status.in_(CODE_STATES),
            ActivationEvent.created_at >= start - lookback,
        )
        .group_by(ActivationEvent.activation_id)
        .subquery()
    )
    code_day = func.date(first_code.c.at)
    for day, service, country_id, count, cost, unknown in db.session.execute(
        select(
            code_day,
            Activation.service,
            Activation.country_id,
            func.count(),
            func.coalesce(func.sum(Activation.upstream_cost), 0),
            func.count() - func.count(Activation.upstream_cost),
        )
        .join(Activation, Activation.id == first_code.c.activation_id)
        .where(first_code.c.at >= start)
        .group_by(code_day, Activation.service, Activation.country_id)
    ):
        day = _day(day)
        if day not in daily:
            continue
        figures = daily[day]
        figures.outcomes["code"] += count
        figures.cost += int(cost)
        figures.cost_unknown += unknown
        for row in ranked(day, service, country_id):
            row.codes += count
            row.cost += int(cost)

    # Closed without a code: one event per activation (the state table allows no other).
    closed_day = func.date(ActivationEvent.created_at)
    for day, status, count in db.session.execute(
        select(
            closed_day,
            ActivationEvent.to_status,
            func.count(func.distinct(ActivationEvent.activation_id)),
        )
        .where(
            ActivationEvent.to_status.in_(CLOSED_STATES),
            ActivationEvent.created_at >= start,
            # a note on a closed activation (a number tied to a settled purchase) is no outcome
            ActivationEvent.from_status.is_distinct_from(ActivationEvent.to_status),
        )
        .group_by(closed_day, ActivationEvent.to_status)
    ):
        day = _day(day)
        if day in daily:
            daily[day].outcomes[status] += count

    periods: dict[str, Figures] = {}
    top_services: dict[str, list[Ranked]] = {}
    top_countries: dict[str, list[Ranked]] = {}
    for key, _label, length in PERIODS:
        window = set(days[-length:])
        total = Figures()
        for day in window:
            total.add(daily[day])
        periods[key] = total
        top_services[key] = _top(by_service, window, top)
        top_countries[key] = _top(by_country, window, top)
    return Overview(today, days, daily, periods, top_services, top_countries)


def _top(rows: dict[tuple[dt.date, str | int], Ranked], window: set[dt.date], n: int):
    merged: dict[str | int, Ranked] = {}
    for (day, key), row in rows.items():
        if day not in window:
            continue
        total = merged.setdefault(key, Ranked(key))
        total.codes += row.codes
        total.revenue += row.revenue
        total.cost += row.cost
    ordered = sorted(merged.values(), key=lambda r: (-r.revenue, -r.codes, str(r.key)))
    return [r for r in ordered if r.revenue or r.codes][:n]


# --- provider balances ----------------------------------------------------------------------

BALANCE_JOB = "balance:{}"  # per provider: its last balance reading
BALANCE_MAX_AGE = 60  # seconds a reading is reused before the provider is asked again


@dataclass(frozen=True)
class BalanceReading:
    balance: int | None  # our money units (converted at the provider's rate); None: no answer
    error: str | None  # why not, when it did not
    checked_at: dt.datetime | None
    amount: str | None = None  # what the provider said, in its own currency

    @property
    def reachable(self) -> bool:
        return self.balance is not None

    @property
    def low(self) -> bool:
        return self.balance is not None and self.balance < settings.get("low_balance_threshold")


def _stored_reading(job: JobState | None) -> BalanceReading:
    if job is None or not job.value:
        return BalanceReading(None, "not checked yet", None)
    try:
        data = json.loads(job.value)
    except ValueError:
        return BalanceReading(None, "not checked yet", None)
    return BalanceReading(
        data.get("balance"), data.get("error"), job.last_run_at, data.get("amount")
    )


def stored_upstream_balance(name: str | None = None) -> BalanceReading:
    """The last shared reading of provider `name` (default: the environment's), whatever
    its age; never asks the provider."""
    name = name or provider.default_name()
    return _stored_reading(db.session.get(JobState, BALANCE_JOB.format(name)))


def upstream_balance(max_age: int = BALANCE_MAX_AGE, name: str | None = None) -> BalanceReading:
    """Provider `name`'s balance (default: the environment's), asked at most once per
    `max_age` seconds across every process (the reading is shared in `JobState`). Never
    raises for provider trouble: an unreachable provider gives a reading without a balance."""
    name = name or provider.default_name()
    job_name = BALANCE_JOB.format(name)
    if not jobs.claim_job(job_name, every=max_age, hold=60):
        return _stored_reading(db.session.get(JobState, job_name))
    balance, error, amount = None, None, None
    try:
        seller = provider.upstream(name)
        amount = Decimal(seller.get_balance())
        balance = to_units(amount * routing_rate(name))
    except Exception as exc:  # noqa: BLE001 - the console must render whatever the provider does
        db.session.rollback()
        error = provider.failure_reason(exc)
        log.warning("%s balance: %s", name, exc)
    if balance is None:
        amount = None
    value = {"balance": balance, "error": error, "amount": None if amount is None else str(amount)}
    jobs.finish_job(job_name, value=json.dumps(value))
    return _stored_reading(db.session.get(JobState, job_name))


def routing_rate(name: str) -> Decimal:
    row = provider.by_name(name)
    return Decimal(str(row.rate)) if row is not None else Decimal(1)


def provider_balances(max_age: int = BALANCE_MAX_AGE) -> dict[str, BalanceReading]:
    """Every provider's balance reading, refreshing those older than `max_age`."""
    return {p.name: upstream_balance(max_age, p.name) for p in provider.all_providers()}


def enabled_provider_balances(max_age: int = BALANCE_MAX_AGE) -> dict[str, BalanceReading]:
    """The enabled providers' balance readings (the console's warnings), refreshing those
    older than `max_age`."""
    return {
        p.name: upstream_balance(max_age, p.name) for p in provider.all_providers() if p.enabled
    }


def console_balances(max_age: int = BALANCE_MAX_AGE) -> dict[str, BalanceReading]:
    """Every provider's reading as a console page shows it, read once for its banner and
    its cards: the enabled ones refreshed when older than `max_age`, the others as last
    read."""
    return stored_provider_balances() | enabled_provider_balances(max_age)


def stored_provider_balances() -> dict[str, BalanceReading]:
    """Every provider's last reading; never asks a provider."""
    names = [p.name for p in provider.all_providers()]
    jobs_by_name = {
        j.name: j
        for j in db.session.execute(
            select(JobState).where(JobState.name.in_([BALANCE_JOB.format(n) for n in names]))
        ).scalars()
    }
    return {n: _stored_reading(jobs_by_name.get(BALANCE_JOB.format(n))) for n in names}


# --- per provider ---------------------------------------------------------------------------


@dataclass
class ProviderFigures:
    """One provider's activations bought in a period (dated by purchase)."""

    purchases: int = 0  # numbers it sold us
    codes: int = 0
    cancelled: int = 0  # cancelled or expired: refunded to the customer, not charged to us
    failed: int = 0  # refused or never answered: refunded, nothing bought
    revenue: int = 0  # what customers paid for numbers that delivered a code
    cost: int = 0  # what the provider charged for those

    @property
    def refunds(self) -> int:
        return self.cancelled + self.failed

    @property
    def profit(self) -> int:
        return self.revenue - self.cost

    @property
    def success_rate(self) -> float | None:
        done = self.codes + self.cancelled
        return self.codes / done if done else None


def provider_figures(now: dt.datetime | None = None) -> dict[str, dict[str, ProviderFigures]]:
    """{provider name: {period key: figures}} for today, 7 and 30 days (UTC days), from
    the activations each provider sold, dated by purchase."""
    now = now or utcnow()
    today = dt.datetime.combine(now.date(), dt.time())
    since = {key: today - dt.timedelta(days=days - 1) for key, _label, days in PERIODS}
    result: dict[str, dict[str, ProviderFigures]] = {}
    for key, start in since.items():
        grouped = db.session.execute(
            select(
                Activation.upstream_name,
                Activation.status,
                func.count(),
                func.coalesce(func.sum(Activation.price), 0),
                func.coalesce(func.sum(Activation.upstream_cost), 0),
            )
            .where(Activation.created_at >= start)
            .group_by(Activation.upstream_name, Activation.status)
        ).all()
        for name, status, count, revenue, cost in grouped:
            figures = result.setdefault(name, {k: ProviderFigures() for k in since})[key]
            if status == S.FAILED.value:
                figures.failed += count
                continue
            if status in (S.PENDING.value, S.UNKNOWN.value):
                continue
            figures.purchases += count
            if status in (*CODE_STATES, S.RETRY_WAIT.value):
                figures.codes += count
                figures.revenue += int(revenue)
                figures.cost += int(cost)
            elif status in (S.CANCELLED.value, S.EXPIRED.value):
                figures.cancelled += count
    return result


# --- customers and what they are owed --------------------------------------------------------


@dataclass
class CustomerFigures:
    """Customer accounts (admins left out): how many, how many new and active per period."""

    total: int = 0
    disabled: int = 0
    new: dict[str, int] = field(default_factory=dict)  # period key → signed up in it
    active: dict[str, int] = field(default_factory=dict)  # logged in or used the API in it
    buying: dict[str, int] = field(default_factory=dict)  # bought at least one number in it


def customer_figures(now: dt.datetime | None = None) -> CustomerFigures:
    """Customers (accounts that are not admins) per period of UTC days: signed up, active
    (logged in or called the API) and buying (an activation created)."""
    now = now or utcnow()
    today = dt.datetime.combine(now.date(), dt.time())
    customers = User.is_admin.is_(False)
    figures = CustomerFigures()
    figures.total, figures.disabled = db.session.execute(
        select(func.count(User.id), func.count(User.id).filter(User.active.is_(False))).where(
            customers
        )
    ).one()
    for key, _label, days in PERIODS:
        start = today - dt.timedelta(days=days - 1)
        figures.new[key], figures.active[key] = db.session.execute(
            select(
                func.count(User.id).filter(User.created_at >= start),
                func.count(User.id).filter(
                    or_(User.last_login_at >= start, User.last_activity_at >= start)
                ),
            ).where(customers)
        ).one()
        figures.buying[key] = db.session.execute(
            select(func.count(func.distinct(Activation.user_id)))
            .join(User, User.id == Activation.user_id)
            .where(customers, Activation.created_at >= start)
        ).scalar_one()
    return figures


@dataclass(frozen=True)
class Funding:
    """What customers' wallets hold (money we owe them) against what the providers hold."""

    owed: int  # the sum of every wallet, our money units
    held: int  # the sum of the provider balances that could be read, our money units
    unread: list[str]  # enabled providers whose balance is not known

    @property
    def short(self) -> int:
        """How much more the wallets hold than the providers (0: covered)."""
        return max(0, self.owed - self.held)


def funding(readings: dict[str, BalanceReading]) -> Funding:
    """Wallets against the given providers' readings (balances already in our money)."""
    owed = db.session.execute(select(func.coalesce(func.sum(User.balance), 0))).scalar_one()
    held = sum(r.balance for r in readings.values() if r.balance is not None)
    unread = sorted(name for name, r in readings.items() if r.balance is None)
    return Funding(int(owed), int(held), unread)
