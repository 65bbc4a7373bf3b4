"""Operator actions, each recorded in the audit log in the same transaction as the change.

`actor` is the admin who acts, or None for the command line. Failures an operator can fix
raise `AdminError` with a message for people.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from ..extensions import db
from ..models import (
    Activation,
    AuditLog,
    Country,
    LedgerEntry,
    PricingRule,
    Service,
    Settlement,
    User,
    utcnow,
)
from ..money import BadAmount, format_amount, parse_amount
from . import accounts, catalog, pricing, settings, wallet, worker
from .audit import audit


class AdminError(ValueError):
    """An operator request that cannot be done; the message says why."""


# --- accounts ---------------------------------------------------------------------------


def set_active(user: User, active: bool, actor: User | None) -> None:
    """Enable or disable an account; commits with its audit row.

    Raises AdminError when an admin tries to disable their own account.
    """
    if not active and actor is not None and actor.id == user.id:
        raise AdminError("You cannot disable your own account.")
    before = user.active
    user.active = active
    audit(
        actor,
        "user.enable" if active else "user.disable",
        f"user:{user.id}",
        {"active": before},
        {"active": active},
    )
    db.session.commit()


def set_admin(user: User, is_admin: bool, actor: User | None) -> None:
    """Grant or revoke the admin flag; commits with its audit row.

    Raises AdminError when an admin tries to revoke their own flag.
    """
    if not is_admin and actor is not None and actor.id == user.id:
        raise AdminError("You cannot revoke your own admin rights.")
    before = user.is_admin
    user.is_admin = is_admin
    audit(
        actor,
        "user.grant_admin" if is_admin else "user.revoke_admin",
        f"user:{user.id}",
        {"is_admin": before},
        {"is_admin": is_admin},
    )
    db.session.commit()


def regenerate_api_key(user: User, actor: User | None) -> None:
    """Give the customer a new API key (the old one stops working); commits with the audit.

    Neither key goes into the audit log.
    """
    audit(actor, "user.regenerate_api_key", f"user:{user.id}", None, {"api_key": "regenerated"})
    accounts.regenerate_api_key(user)


def parse_adjustment(text: str) -> int:
    """Money units for an operator's credit (`10.50`) or debit (`-3`).

    Raises AdminError for text that is not a non-zero amount with at most two decimals.
    """
    try:
        amount = parse_amount(text, allow_negative=True)
    except BadAmount as exc:
        raise AdminError(str(exc)) from None
    if amount == 0:
        raise AdminError("The amount must not be zero.")
    return amount


def adjust_balance(user: User, amount: int, note: str, actor: User | None) -> wallet.Posting:
    """Credit (amount > 0) or debit (< 0) a customer through the wallet; commits the ledger
    row (naming the actor) and its audit row together.

    Raises AdminError without a note, or when a debit exceeds the balance.
    """
    note = (note or "").strip()
    if not note:
        raise AdminError("A note is required.")
    # Read the balance under the row lock the debit takes anyway (PostgreSQL), so the audit
    # row's before/after match the ledger even when two operators act at once.
    balance = db.session.execute(
        select(User.balance).where(User.id == user.id).with_for_update()
    ).scalar_one()
    audit(
        actor,
        "wallet.credit" if amount > 0 else "wallet.debit",
        f"user:{user.id}",
        {"balance": format_amount(balance)},
        {
            "balance": format_amount(balance + amount),
            "amount": format_amount(amount),
            "note": note,
        },
    )
    try:
        return wallet.adjust(user.id, amount, note=note, actor_id=actor.id if actor else None)
    except wallet.InsufficientFunds:
        raise AdminError(
            f"Cannot debit {format_amount(-amount)}: the balance is {format_amount(balance)}."
        ) from None


# --- pricing ------------------------------------------------------------------------------

ANY = "*"  # a rule's scope part that matches every service or every country


@dataclass(frozen=True)
class RuleScope:
    service: str | None
    country_id: int | None

    @property
    def label(self) -> str:
        return f"{self.service or ANY}/{ANY if self.country_id is None else self.country_id}"


def parse_scope(service_text: str | None, country_text: str | None) -> RuleScope:
    """A rule's scope from a service (code, name, or "Name (code)") and a country (id,
    alpha-2 code, name, or "Name (id)"); `*` or an empty value means any. Raises
    AdminError for unknown ones or an empty scope."""
    service_text = (service_text or "").strip()
    country_text = (country_text or "").strip()
    service, country_id = None, None
    if service_text not in ("", ANY):
        found = catalog.find_service(service_text)
        if found is None:
            raise AdminError(
                f"Unknown service {service_text[:60]!r} (refresh the catalog from the upstream?)."
            )
        service = found.code
    if country_text not in ("", ANY):
        country = catalog.find_country(country_text)
        if country is None:
            raise AdminError(f"Unknown country {country_text[:60]!r}.")
        country_id = country.id
    if service is None and country_id is None:
        raise AdminError("A rule needs a service, a country or both; use the global markup.")
    return RuleScope(service, country_id)


def parse_markup(text: str | None) -> Decimal:
    """A markup percentage (0 to 10000, two decimals). Raises AdminError."""
    raw = str(text or "").strip().replace(",", ".")
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise AdminError(f"{raw[:20]!r} is not a percentage.") from None
    if not value.is_finite():
        raise AdminError(f"{raw[:20]!r} is not a percentage.")
    if not 0 <= value <= 10_000:  # before quantize: a huge value overflows it
        raise AdminError("The markup must be between 0 and 10000 %.")
    if value != value.quantize(Decimal("0.01")):
        raise AdminError(f"{raw[:20]!r} is not a percentage with at most two decimals.")
    return value


def parse_fixed_price(text: str | None) -> int:
    """A fixed retail price in money units (whole cents, above zero). Raises AdminError."""
    try:
        price = parse_amount(text or "")
    except BadAmount as exc:
        raise AdminError(str(exc)) from None
    if price <= 0:
        raise AdminError("A fixed price must be above zero.")
    return price


def _rule_state(rule: PricingRule | None) -> dict | None:
    if rule is None:
        return None
    return {
        "service": rule.service,
        "country_id": rule.country_id,
        "fixed_price": None if rule.fixed_price is None else format_amount(rule.fixed_price),
        "markup_percent": None if rule.markup_percent is None else str(rule.markup_percent),
    }


def rule_for(scope: RuleScope) -> PricingRule | None:
    # `IS` comparisons: the unique constraint does not cover NULL parts on either database.
    return db.session.execute(
        select(PricingRule).where(
            PricingRule.service.is_(None)
            if scope.service is None
            else PricingRule.service == scope.service,
            PricingRule.country_id.is_(None)
            if scope.country_id is None
            else PricingRule.country_id == scope.country_id,
        )
    ).scalar_one_or_none()


class BelowCost(AdminError):
    """A rule that would price pairs below their upstream cost, not confirmed."""

    def __init__(self, shortfalls: list[pricing.Shortfall]):
        self.shortfalls = shortfalls
        worst = shortfalls[0]
        super().__init__(
            f"This price is below the upstream cost of {len(shortfalls)} pair(s), by up to "
            f"{format_amount(worst.loss)} per number ({worst.service} in country "
            f"{worst.country_id} costs {format_amount(worst.cost)})."
        )


def set_rule(
    scope: RuleScope,
    *,
    fixed_price: int | None = None,
    markup_percent: Decimal | None = None,
    accept_loss: bool = False,
    actor: User | None,
) -> PricingRule:
    """Create or replace the rule for this scope (exactly one of fixed price or markup);
    commits with its audit row. Takes effect on the next quote.

    Raises AdminError without exactly one of the two, or when a concurrent change won;
    BelowCost when it prices a cached pair below its upstream cost and `accept_loss` is
    not given (such pairs then sell at their cost, without a margin).
    """
    if (fixed_price is None) == (markup_percent is None):
        raise AdminError("Give either a fixed price or a markup.")
    if not accept_loss:
        shortfalls = pricing.below_cost(
            scope.service,
            scope.country_id,
            fixed_price=fixed_price,
            markup_percent=markup_percent,
        )
        if shortfalls:
            raise BelowCost(shortfalls)
    rule = rule_for(scope)
    before = _rule_state(rule)
    if rule is None:
        rule = PricingRule(service=scope.service, country_id=scope.country_id)
        db.session.add(rule)
    rule.fixed_price = fixed_price
    rule.markup_percent = markup_percent
    audit(
        actor,
        "pricing.rule_set" if before is None else "pricing.rule_update",
        f"rule:{scope.label}",
        before,
        _rule_state(rule),
    )
    try:
        db.session.commit()
    except IntegrityError:  # another operator created this scope's rule a moment ago
        db.session.rollback()
        raise AdminError("The rule was changed at the same time; look and try again.") from None
    return rule


def delete_rule(rule: PricingRule, actor: User | None) -> None:
    """Remove a rule (prices fall back to the next rule); commits with its audit row."""
    scope = RuleScope(rule.service, rule.country_id)
    audit(actor, "pricing.rule_delete", f"rule:{scope.label}", _rule_state(rule), None)
    db.session.delete(rule)
    db.session.commit()


def rules() -> list[PricingRule]:
    return list(
        db.session.execute(
            select(PricingRule).order_by(
                PricingRule.service.is_(None),
                PricingRule.service,
                PricingRule.country_id,
            )
        ).scalars()
    )


def set_service_enabled(service: Service, enabled: bool, actor: User | None) -> None:
    """Switch a service on or off for customers; commits with its audit row."""
    before = service.enabled
    service.enabled = enabled
    audit(
        actor,
        "service.enable" if enabled else "service.disable",
        f"service:{service.code}",
        {"enabled": before},
        {"enabled": enabled},
    )
    db.session.commit()


def set_country_enabled(country: Country, enabled: bool, actor: User | None) -> None:
    """Switch a country on or off for customers; commits with its audit row."""
    before = country.enabled
    country.enabled = enabled
    audit(
        actor,
        "country.enable" if enabled else "country.disable",
        f"country:{country.id}",
        {"enabled": before},
        {"enabled": enabled},
    )
    db.session.commit()


def refresh_prices(actor: User | None) -> worker.PassReport:
    """Fetch the catalog and prices from the upstream now; records the attempt."""
    report = worker.PassReport()
    worker.refresh_prices(report, force=True)
    audit(
        actor,
        "pricing.refresh",
        "upstream",
        None,
        {"refreshed": report.prices_refreshed, "errors": report.errors},
    )
    db.session.commit()
    return report


# --- settings -----------------------------------------------------------------------------


def update_settings(values: dict[str, str], actor: User | None) -> dict[str, str]:
    """Validate every given setting, then store the changed ones with an audit row each and
    commit. Returns {key: error} (nothing stored) when any value is invalid."""
    errors: dict[str, str] = {}
    changed: dict[str, str] = {}
    for key, raw in values.items():
        spec = settings.BY_KEY[key]
        text = "" if raw is None else str(raw).strip()
        try:
            settings.parse(spec, text)
        except settings.SettingError as exc:
            errors[key] = str(exc)
            continue
        if text != settings.raw_value(key):
            changed[key] = text
    if errors:
        return errors
    for key, text in changed.items():
        before = settings.raw_value(key)
        settings.store(key, text)
        audit(actor, "setting.update", f"setting:{key}", {key: before}, {key: text})
    db.session.commit()
    settings.forget()
    return {}


# --- lists --------------------------------------------------------------------------------


def services() -> list[Service]:
    """Every service the upstream sells, on sale or not, by name."""
    return list(db.session.execute(select(Service).order_by(Service.name)).scalars())


def countries() -> list[Country]:
    """Every country the upstream sells in, on sale or not, by name."""
    return list(db.session.execute(select(Country).order_by(Country.name)).scalars())


def phone_digits(text: str | None) -> str:
    """The digits of a phone number as typed (`+1 555-123`), for searching."""
    return "".join(ch for ch in (text or "") if ch.isascii() and ch.isdigit())


def customers_query(
    search: str | None = None, *, phone: str | None = None, key_ending: str | None = None
) -> Select:
    """Accounts, newest first: optionally those whose email contains `search`, who bought
    a number containing the digits of `phone`, and whose API key is or ends with
    `key_ending`. Raises AdminError for a key ending too short to search by."""
    stmt = select(User).order_by(User.id.desc())
    text = (search or "").strip().lower()
    if text:
        stmt = stmt.where(User.email.contains(text, autoescape=True))
    digits = phone_digits(phone)
    if digits:
        stmt = stmt.where(
            User.id.in_(
                select(Activation.user_id).where(Activation.phone.contains(digits, autoescape=True))
            )
        )
    if key_ending:
        try:
            stmt = stmt.where(User.id.in_(accounts.users_with_key_ending(key_ending)))
        except accounts.KeySearchTooShort as exc:
            raise AdminError(str(exc)) from None
    return stmt


def ledger_query(user_id: int) -> Select:
    """A customer's ledger rows, newest first."""
    return (
        select(LedgerEntry)
        .options(selectinload(LedgerEntry.actor))
        .where(LedgerEntry.user_id == user_id)
        .order_by(LedgerEntry.id.desc())
    )


def recent_activations(user_id: int, limit: int = 20) -> list[Activation]:
    return list(
        db.session.execute(
            select(Activation)
            .where(Activation.user_id == user_id)
            .order_by(Activation.id.desc())
            .limit(limit)
        ).scalars()
    )


def activation_ledger(activation_id: int) -> list[LedgerEntry]:
    """The charge and the refund (if any) of one activation."""
    return list(
        db.session.execute(
            select(LedgerEntry)
            .where(LedgerEntry.activation_id == activation_id)
            .order_by(LedgerEntry.id)
        ).scalars()
    )


@dataclass(frozen=True)
class ActivationFilter:
    status: str | None = None
    service: str | None = None
    country_id: int | None = None
    email: str | None = None
    created_from: dt.date | None = None
    created_to: dt.date | None = None  # inclusive
    user_id: int | None = None
    settlement: str | None = None
    provider: str | None = None  # the provider that sold it
    phone: str | None = None  # digits the number contains


def activations_query(f: ActivationFilter) -> Select:
    """Activations matching the filter, newest first."""
    stmt = select(Activation).options(selectinload(Activation.user)).order_by(Activation.id.desc())
    if f.status:
        stmt = stmt.where(Activation.status == f.status)
    if f.service:
        stmt = stmt.where(Activation.service == f.service)
    if f.country_id is not None:
        stmt = stmt.where(Activation.country_id == f.country_id)
    if f.user_id is not None:
        stmt = stmt.where(Activation.user_id == f.user_id)
    if f.settlement:
        stmt = stmt.where(Activation.settlement == f.settlement)
    if f.provider:
        stmt = stmt.where(Activation.upstream_name == f.provider.lower())
    if phone_digits(f.phone):
        stmt = stmt.where(Activation.phone.contains(phone_digits(f.phone), autoescape=True))
    if f.email:
        stmt = stmt.join(User, User.id == Activation.user_id).where(
            User.email.contains(accounts.normalise_email(f.email), autoescape=True)
        )
    if f.created_from is not None:
        stmt = stmt.where(Activation.created_at >= dt.datetime.combine(f.created_from, dt.time.min))
    if f.created_to is not None and f.created_to < dt.date.max:  # the last day has no next
        stmt = stmt.where(
            Activation.created_at
            < dt.datetime.combine(f.created_to + dt.timedelta(days=1), dt.time.min)
        )
    return stmt


@dataclass(frozen=True)
class SettlementRisks:
    """What the worker's settlement left for the operator to look at."""

    unconfirmed: int  # purchases refunded without upstream confirmation, last 30 days
    foreign: list[worker.ForeignActivation]  # upstream activations we did not buy
    listed_at: dt.datetime | None  # when the upstream's active list was last read


def settlement_risks(days: int = 30) -> SettlementRisks:
    since = utcnow() - dt.timedelta(days=days)
    unconfirmed = db.session.execute(
        select(func.count(Activation.id)).where(
            Activation.settlement == Settlement.UNCONFIRMED.value,
            Activation.created_at >= since,
        )
    ).scalar_one()
    foreign, listed_at = worker.foreign_activations()
    return SettlementRisks(unconfirmed, foreign, listed_at)


def audit_query(action: str | None = None, actor_id: int | None = None) -> Select:
    """Audit rows, newest first, optionally of one action and/or one actor (0: the CLI)."""
    stmt = select(AuditLog).options(selectinload(AuditLog.actor)).order_by(AuditLog.id.desc())
    if action:
        stmt = stmt.where(AuditLog.action == action)
    if actor_id == 0:
        stmt = stmt.where(AuditLog.actor_id.is_(None))
    elif actor_id is not None:
        stmt = stmt.where(AuditLog.actor_id == actor_id)
    return stmt


def audit_actions() -> list[str]:
    return list(
        db.session.execute(select(AuditLog.action).distinct().order_by(AuditLog.action)).scalars()
    )


def audit_actors() -> list[User]:
    """Everyone who appears in the audit log as the actor, and every admin."""
    ids = select(AuditLog.actor_id).where(AuditLog.actor_id.is_not(None)).distinct()
    return list(
        db.session.execute(
            select(User).where(User.id.in_(ids) | User.is_admin.is_(True)).order_by(User.email)
        ).scalars()
    )
