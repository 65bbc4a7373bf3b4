"""Operator actions on providers, each audited in the same transaction as the change.

`actor` is the admin who acts, or None for the command line. Keys are never written to the
audit log (only whether one was set or changed) nor shown back in full.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from urllib.parse import urlsplit

from sqlalchemy import delete, func, select

from ..extensions import db
from ..models import Activation, Provider, ProviderPrice, User, utcnow
from ..upstream.registry import PRESETS, PROTOCOLS
from . import catalog, routing, settings
from . import provider as provider_accounts
from .activations import ACTIVE_STATES
from .admin import AdminError, audit
from .provider import encrypt_key, ensure_default, masked_key

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,19}$")
CURRENCY_PATTERN = re.compile(r"^[A-Z]{3,10}$")


def _state(provider: Provider) -> dict:
    """What the audit log keeps of a provider: everything but the key itself."""
    return {
        "name": provider.name,
        "display_name": provider.display_name,
        "protocol": provider.protocol,
        "base_url": provider.base_url,
        "api_key": masked_key(provider),
        "enabled": provider.enabled,
        "priority": provider.priority,
        "currency": provider.currency,
        "rate": str(provider.rate),
        "notes": provider.notes,
    }


def parse_name(text: str | None) -> str:
    name = (text or "").strip().lower()
    if not NAME_PATTERN.match(name):
        raise AdminError(
            "Name: 1-20 lower-case letters, digits or dashes, starting with a letter or digit."
        )
    return name


def parse_protocol(text: str | None) -> str:
    protocol = (text or "").strip().lower()
    if protocol not in PROTOCOLS:
        raise AdminError(f"Protocol: one of {', '.join(PROTOCOLS)}.")
    return protocol


def parse_url(text: str | None, protocol: str) -> str:
    url = (text or "").strip()
    if not url and protocol in ("sandbox",):
        return ""
    if not url:
        preset = PRESETS.get(protocol)  # "5sim" has a preset of its own name
        if preset is not None:
            return preset[1]
        raise AdminError("Base URL is required.")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(url) > 300:
        raise AdminError("Base URL: an http(s) address of at most 300 characters.")
    return url


def parse_priority(text) -> int:
    try:
        value = int(str(text).strip())
    except (TypeError, ValueError):
        raise AdminError("Priority: a whole number (lower is tried first).") from None
    if not 0 <= value <= 1000:
        raise AdminError("Priority: between 0 and 1000.")
    return value


def parse_rate(text) -> Decimal:
    try:
        value = Decimal(str(text).strip())
    except (InvalidOperation, ValueError):
        raise AdminError("Rate: a positive number (our money per one unit of theirs).") from None
    if not value.is_finite() or value <= 0 or value > Decimal("1000000"):
        raise AdminError("Rate: a positive number (our money per one unit of theirs).")
    return value.quantize(Decimal("0.00000001"))


def parse_currency(text: str | None) -> str:
    currency = (text or "").strip().upper()
    if not CURRENCY_PATTERN.match(currency):
        raise AdminError("Currency: a code such as USD, RUB or EUR.")
    return currency


def get(name: str) -> Provider:
    provider = db.session.execute(
        select(Provider).where(Provider.name == (name or "").strip().lower())
    ).scalar_one_or_none()
    if provider is None:
        raise AdminError(f"No provider named {name!r}.")
    return provider


def add(
    name: str,
    protocol: str,
    url: str | None,
    api_key: str | None,
    *,
    priority=10,
    display_name: str | None = None,
    currency: str = "USD",
    rate="1",
    notes: str | None = None,
    actor: User | None = None,
) -> Provider:
    """Add a provider (enabled). Commits with its audit row. Raises AdminError."""
    ensure_default()  # the environment's provider first: the activations it sold need it
    name = parse_name(name)
    protocol = parse_protocol(protocol)
    if db.session.execute(select(Provider.id).where(Provider.name == name)).first():
        raise AdminError(f"A provider named {name!r} exists already.")
    provider = Provider(
        name=name,
        display_name=(display_name or "").strip()[:80] or name,
        protocol=protocol,
        base_url=parse_url(url, protocol),
        api_key_encrypted=encrypt_key((api_key or "").strip()),
        enabled=True,
        priority=parse_priority(priority),
        notes=(notes or "").strip() or None,
        currency=parse_currency(currency),
        rate=parse_rate(rate),
        rate_updated_at=utcnow(),
    )
    db.session.add(provider)
    db.session.flush()
    audit(actor, "provider.add", f"provider:{name}", None, _state(provider))
    db.session.commit()
    return provider


def update(
    provider: Provider,
    *,
    display_name: str | None = None,
    url: str | None = None,
    api_key: str | None = None,
    priority=None,
    currency: str | None = None,
    rate=None,
    notes: str | None = None,
    actor: User | None = None,
) -> None:
    """Change the given fields (None: keep; an empty api_key keeps the stored one).
    Commits with its audit row; the offers are rebuilt. Raises AdminError."""
    if (url or api_key) and provider.from_env:
        raise AdminError(
            "This provider comes from the environment: change GRIZZLY_API_URL / "
            "GRIZZLY_API_KEY, or add a provider of your own."
        )
    before = _state(provider)
    if display_name is not None:
        provider.display_name = display_name.strip()[:80] or provider.name
    if url is not None and not provider.from_env:
        provider.base_url = parse_url(url, provider.protocol)
    if api_key and not provider.from_env:
        provider.api_key_encrypted = encrypt_key(api_key.strip())
    if priority is not None:
        provider.priority = parse_priority(priority)
    if currency is not None:
        provider.currency = parse_currency(currency)
    if rate is not None:
        new_rate = parse_rate(rate)
        if Decimal(str(provider.rate)) != new_rate:
            provider.rate, provider.rate_updated_at = new_rate, utcnow()
            catalog.reprice(provider)  # the offers rebuilt below follow the new rate
    if notes is not None:
        provider.notes = notes.strip() or None
    after = _state(provider)
    if api_key:
        after["api_key"] = "changed, " + after["api_key"]
    if after != before:
        audit(actor, "provider.edit", f"provider:{provider.name}", before, after)
    db.session.commit()
    catalog.rebuild_offers()


def set_enabled(provider: Provider, enabled: bool, actor: User | None = None) -> None:
    """Enable or disable. A disabled provider sells nothing new but still finishes the
    activations it sold (polls, cancel, complete, settlement). Commits; rebuilds offers."""
    before = provider.enabled
    provider.enabled = enabled
    audit(
        actor,
        "provider.enable" if enabled else "provider.disable",
        f"provider:{provider.name}",
        {"enabled": before},
        {"enabled": enabled},
    )
    db.session.commit()
    catalog.rebuild_offers()


def set_priority(provider: Provider, priority, actor: User | None = None) -> None:
    update(provider, priority=priority, actor=actor)


def open_activations(provider: Provider) -> int:
    return db.session.execute(
        select(func.count(Activation.id)).where(
            Activation.upstream_name == provider.name,
            Activation.status.in_([s.value for s in ACTIVE_STATES]),
        )
    ).scalar_one()


def remove(provider: Provider, actor: User | None = None) -> None:
    """Remove a provider and its catalogue. Refused (AdminError) while it has open
    activations: disable it and let them finish. Commits; rebuilds offers."""
    still_open = open_activations(provider)
    if still_open:
        raise AdminError(
            f"{provider.name} has {still_open} open activation(s): disable it and remove it "
            "once they are finished."
        )
    before = _state(provider)
    db.session.execute(delete(ProviderPrice).where(ProviderPrice.provider_id == provider.id))
    db.session.delete(provider)
    audit(actor, "provider.remove", f"provider:{before['name']}", before, None)
    db.session.commit()
    catalog.rebuild_offers()


def set_policy(policy: str, actor: User | None = None) -> None:
    """Set the routing policy (priority | cheapest). Commits; rebuilds offers."""
    spec = settings.BY_KEY["routing_policy"]
    try:
        settings.parse(spec, policy)
    except settings.SettingError as exc:
        raise AdminError(str(exc)) from None
    before = settings.raw_value("routing_policy")
    settings.store("routing_policy", policy)
    audit(
        actor,
        "setting.update",
        "setting:routing_policy",
        {"routing_policy": before},
        {"routing_policy": policy.strip()},
    )
    db.session.commit()
    settings.forget()
    catalog.rebuild_offers()


# --- the console --------------------------------------------------------------------------


@dataclass(frozen=True)
class Health:
    """One provider's state as the console shows it, on its card and in the banner alike.

    `state`: "ok", "low" (balance under the warning threshold), "unreachable" (its
    balance could not be read), "failing" (calls failed lately), "open" (the circuit
    breaker skips it), "unchecked" (not read yet) or "disabled". `reason` is the last
    failure in words ("connection refused at 127.0.0.1:5999", "BAD_KEY").
    """

    state: str
    reason: str | None = None
    at: dt.datetime | None = None  # when the reason was seen
    until: dt.datetime | None = None  # "open": skipped until then

    @property
    def problem(self) -> bool:
        return self.state in ("low", "unreachable", "failing", "open")


def health(provider: Provider, reading, breaker_state: routing.BreakerState) -> Health:
    """The one state of a provider, from its balance reading (stats.BalanceReading or
    None) and its circuit breaker: the worst of them wins."""
    if not provider.enabled:
        return Health("disabled")
    if breaker_state.state == "open":
        return Health(
            "open", breaker_state.last_error, provider.last_failure_at, breaker_state.open_until
        )
    if reading is not None and reading.checked_at and not reading.reachable:
        return Health("unreachable", reading.error, reading.checked_at)
    if breaker_state.failures:
        return Health("failing", breaker_state.last_error, provider.last_failure_at)
    if reading is not None and reading.low:
        return Health("low", None, reading.checked_at)
    if reading is None or not reading.checked_at:
        return Health("unchecked")
    return Health("ok", None, reading.checked_at)


@dataclass(frozen=True)
class ConsoleRow:
    provider: Provider
    key: str  # masked
    breaker: routing.BreakerState
    balance: object  # stats.BalanceReading
    health: Health
    catalogue: int  # (service, country) rows in its catalogue
    in_stock: int
    reading: dict  # the last catalogue sync: counts, skipped names, error
    figures: dict  # period key → stats.ProviderFigures
    open_activations: int


def console_rows(balances: dict | None = None) -> list[ConsoleRow]:
    """Everything the Providers page shows, per provider. `balances`: the readings to show
    ({name: stats.BalanceReading}, as the view read them for its banner too); default:
    as last read, asking no provider."""
    from . import stats

    providers = provider_accounts.all_providers()
    if balances is None:
        balances = stats.stored_provider_balances()
    figures = stats.provider_figures()
    sizes = dict(
        db.session.execute(
            select(ProviderPrice.provider_id, func.count()).group_by(ProviderPrice.provider_id)
        ).all()
    )
    stocked = dict(
        db.session.execute(
            select(ProviderPrice.provider_id, func.count())
            .where(ProviderPrice.count > 0)
            .group_by(ProviderPrice.provider_id)
        ).all()
    )
    open_counts = dict(
        db.session.execute(
            select(Activation.upstream_name, func.count())
            .where(Activation.status.in_([s.value for s in ACTIVE_STATES]))
            .group_by(Activation.upstream_name)
        ).all()
    )
    empty = {key: stats.ProviderFigures() for key, _label, _days in stats.PERIODS}
    rows = []
    for p in providers:
        breaker_state = routing.breaker_state(p)
        balance = balances.get(p.name)
        rows.append(
            ConsoleRow(
                provider=p,
                key=masked_key(p),
                breaker=breaker_state,
                balance=balance,
                health=health(p, balance, breaker_state),
                catalogue=sizes.get(p.id, 0),
                in_stock=stocked.get(p.id, 0),
                reading=catalog.catalogue_reading(p.name),
                figures=figures.get(p.name, empty),
                open_activations=open_counts.get(p.name, 0),
            )
        )
    return rows


@dataclass(frozen=True)
class Standing:
    """A provider on the overview and in the banner: its row, balance reading and health."""

    provider: Provider
    balance: object  # stats.BalanceReading
    health: Health


def standings(balances: dict) -> list[Standing]:
    """Every provider with the given balance readings and its health (no figures): what
    the overview and the banner show."""
    return [
        Standing(p, balances.get(p.name), health(p, balances.get(p.name), routing.breaker_state(p)))
        for p in provider_accounts.all_providers()
    ]
