"""Operator settings: stored in the database, defaults from the configuration.

Read once per application context (a request, a worker pass) and cached there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from flask import current_app, g
from sqlalchemy import select

from .. import countries, db_reads
from ..extensions import db
from ..models import Setting
from ..money import BadAmount, parse_amount


@dataclass(frozen=True)
class SettingSpec:
    key: str
    label: str
    config_key: str
    kind: str  # "text", "int", "money", "percent", "choice", "country"
    help: str = ""
    minimum: float | None = None
    maximum: float | None = None  # for a text: its most characters (default 2000)
    choices: tuple[str, ...] = ()


SPECS: tuple[SettingSpec, ...] = (
    SettingSpec("site_name", "Site name", "SITE_NAME", "text", "Shown on every page."),
    SettingSpec(
        "support_contact",
        "Support contact",
        "SUPPORT_CONTACT",
        "text",
        "An email address or link shown to customers.",
    ),
    SettingSpec(
        "topup_instructions",
        "Top-up instructions",
        "TOPUP_INSTRUCTIONS",
        "text",
        "Shown to customers when no payment gateway runs, or under its own heading beside "
        "one: how else to add funds.",
    ),
    SettingSpec(
        "terms_text",
        "Terms of service",
        "TERMS_TEXT",
        "text",
        "The text of the Terms page, linked from every page's footer.",
        maximum=20000,
    ),
    SettingSpec(
        "privacy_text",
        "Privacy policy",
        "PRIVACY_TEXT",
        "text",
        "The text of the Privacy page, linked from every page's footer.",
        maximum=20000,
    ),
    SettingSpec(
        "show_provider_names",
        "Name the providers on the API docs page",
        "SHOW_PROVIDER_NAMES",
        "choice",
        'yes: the docs page names the enabled providers ("GrizzlySMS remains the upstream '
        'provider while your customers interact with your branded API"); no: it says only '
        '"our upstream providers".',
        choices=("yes", "no"),
    ),
    SettingSpec(
        "markup_percent",
        "Global markup (%)",
        "PRICE_MARKUP_PERCENT",
        "percent",
        "Added to the upstream cost unless a pricing rule says otherwise.",
        0,
        10000,
    ),
    SettingSpec(
        "rent_markup_percent",
        "Rent markup (%)",
        "RENT_MARKUP_PERCENT",
        "percent",
        "Added to a rented number's cost unless a markup rule for its service or country "
        "says otherwise (fixed-price rules are for activations).",
        0,
        1000,
    ),
    SettingSpec(
        "minimum_price",
        "Minimum price",
        "PRICE_MINIMUM",
        "money",
        "No number sells for less.",
        0,
        1000,
    ),
    SettingSpec(
        "activation_lifetime",
        "Activation lifetime (s)",
        "ACTIVATION_LIFETIME",
        "int",
        "A number without a code is closed and refunded after this.",
        60,
        86400,
    ),
    SettingSpec(
        "early_cancel_window",
        "Early-cancel window (s)",
        "EARLY_CANCEL_WINDOW",
        "int",
        "Cancelling is refused this long after purchase.",
        0,
        3600,
    ),
    SettingSpec(
        "max_active_activations",
        "Active activations per customer",
        "MAX_ACTIVE_ACTIVATIONS",
        "int",
        "At most this many at once.",
        1,
        10000,
    ),
    SettingSpec(
        "poll_interval",
        "Upstream poll interval (s)",
        "UPSTREAM_POLL_INTERVAL",
        "int",
        "The upstream is asked about an activation at most this often.",
        1,
        600,
    ),
    SettingSpec(
        "default_country",
        "Default country",
        "DEFAULT_COUNTRY",
        "country",
        "getNumber without a country buys here (a numeric id or an alpha-2 code).",
    ),
    SettingSpec(
        "low_balance_threshold",
        "Low upstream balance warning",
        "LOW_BALANCE_THRESHOLD",
        "money",
        "The overview and the Providers page warn when a provider holds less.",
        0,
        1_000_000,
    ),
    # Top-ups through payment gateways (reseller.services.payments).
    SettingSpec(
        "payment_gateways",
        "Payment gateways offered",
        "PAYMENT_GATEWAYS",
        "text",
        "Comma-separated names (cryptopay, nowpayments, sandbox); empty: every configured one.",
    ),
    SettingSpec("topup_minimum", "Minimum top-up", "TOPUP_MINIMUM", "money", "", 0.01, 1e6),
    SettingSpec("topup_maximum", "Maximum top-up", "TOPUP_MAXIMUM", "money", "", 0.01, 1e6),
    SettingSpec(
        "topup_presets",
        "Top-up preset amounts",
        "TOPUP_PRESETS",
        "text",
        "Comma-separated amounts offered as buttons on the Top up page.",
    ),
    SettingSpec(
        "topup_bonus_percent",
        "Top-up bonus (%)",
        "TOPUP_BONUS_PERCENT",
        "percent",
        "Credited as its own ledger row on top-ups from the threshold up; 0: no bonus.",
        0,
        100,
    ),
    SettingSpec(
        "topup_bonus_threshold",
        "Top-up bonus threshold",
        "TOPUP_BONUS_THRESHOLD",
        "money",
        "The smallest top-up that earns the bonus.",
        0,
        1e6,
    ),
    SettingSpec(
        "routing_policy",
        "Routing policy",
        "ROUTING_POLICY",
        "choice",
        "priority: the provider with the lowest priority number first; cheapest: the "
        "lowest cost first (ties by priority). Either way only providers with stock.",
        choices=("priority", "cheapest"),
    ),
    SettingSpec(
        "serve_at_loss",
        "Serve at a loss on failover",
        "SERVE_AT_LOSS",
        "choice",
        "no: failover only to providers whose cost is within the customer's price; yes: "
        "also dearer ones, to keep the customer's order (the customer still pays the quote).",
        choices=("no", "yes"),
    ),
)
BY_KEY = {spec.key: spec for spec in SPECS}


class SettingError(ValueError):
    pass


def parse(spec: SettingSpec, raw: Any) -> Any:
    """The typed value of `raw` for this setting; raises SettingError with a readable text."""
    text = "" if raw is None else str(raw).strip()
    if spec.kind == "text":
        longest = int(spec.maximum or 2000)  # for a text, the most characters
        if len(text) > longest:
            raise SettingError(f"{spec.label}: at most {longest} characters")
        return text
    if spec.kind == "choice":
        if text not in spec.choices:
            raise SettingError(f"{spec.label}: one of {', '.join(spec.choices)}")
        return text
    if spec.kind == "country":
        try:
            return countries.parse_country(text)
        except countries.UnknownCountry:
            raise SettingError(
                f"{spec.label}: {text[:20]!r} is not a country id or alpha-2 code"
            ) from None
    try:
        if spec.kind == "int":
            value: Any = int(text)
            number = value
        elif spec.kind == "percent":
            value = round(float(text), 2)
            number = value
        else:  # money
            value = parse_amount(text)
            number = value / 10_000
    except (ValueError, OverflowError, BadAmount):
        raise SettingError(f"{spec.label}: {text[:20]!r} is not a valid value") from None
    # float('nan') and float('inf') parse, and pass any bound (ints are always finite)
    if isinstance(number, float) and not math.isfinite(number):
        raise SettingError(f"{spec.label}: {text[:20]!r} is not a finite number")
    if spec.minimum is not None and number < spec.minimum:
        raise SettingError(f"{spec.label}: at least {spec.minimum:g}")
    if spec.maximum is not None and number > spec.maximum:
        raise SettingError(f"{spec.label}: at most {spec.maximum:g}")
    return value


def check_defaults(config) -> None:
    """Raise SettingError (naming the environment variable) when a default from the
    configuration is not a valid value: a bad variable stops start-up, not every request."""
    for spec in SPECS:
        try:
            parse(spec, getattr(config, spec.config_key, None))
        except SettingError as exc:
            raise SettingError(f"{spec.config_key}: {exc}") from None


# Every stored text in one row, a column per setting (NULL: not stored), built once at
# import: the Core twin of reading the Setting rows (tests/test_settings_validation.py
# checks both agree). One row, so that a request outside any transaction reads it with
# db_reads.HotRead and opens none (on SQLite, none that takes the write lock to read).
# `STORED_TEXTS` are its columns, for a hot read that takes the settings along with what
# it reads (a purchase's offer, setStatus's activation): `adopt` takes them from its row.
_settings = Setting.__table__
_PREFIX = "setting_"
STORED_TEXTS = tuple(
    select(_settings.c.value)
    .where(_settings.c.key == spec.key)
    .scalar_subquery()
    .label(_PREFIX + spec.key)
    for spec in SPECS
)
_STORED = select(*STORED_TEXTS)
_STORED_OUTSIDE = db_reads.HotRead(_STORED)
_PARSED_KEY = "reseller.settings.parsed"
_DEFAULTS_KEY = "reseller.settings.defaults"


def _parsed(spec: SettingSpec, raw: Any) -> Any:
    """`parse(spec, raw)`, remembered per process for texts already parsed: a pure
    function of its arguments (the cache decides nothing), and settings are read on every
    request while their texts rarely change. Raises SettingError as `parse` does."""
    memo = current_app.extensions.setdefault(_PARSED_KEY, {})
    key = (spec.key, raw)
    try:
        value = memo.get(key)
    except TypeError:  # an unhashable value from the configuration
        return parse(spec, raw)
    if value is None:
        if len(memo) > 4096:  # texts that keep changing: start afresh rather than grow
            memo.clear()
        value = memo[key] = (parse(spec, raw),)
    return value[0]


def _defaults() -> dict[str, Any]:
    """The values the configuration gives, parsed once per process for the same texts."""
    config = current_app.config
    texts = tuple(config.get(spec.config_key) for spec in SPECS)
    memo = current_app.extensions.setdefault(_DEFAULTS_KEY, {})
    try:
        values = memo.get(texts)
    except TypeError:  # an unhashable value from the configuration
        values = None
    if values is None:
        values = {spec.key: parse(spec, text) for spec, text in zip(SPECS, texts, strict=True)}
        try:
            memo.clear()  # one configuration per process; a test may change it
            memo[texts] = values
        except TypeError:
            pass
    return dict(values)


def _in_transaction(session) -> bool:
    return session.in_transaction() or bool(session.new) or bool(session.dirty)


def _stored_texts() -> dict[str, str | None]:
    """The stored text of each setting (None: not stored). Read in the session's
    transaction when one is open (it sees its own changes), else outside any."""
    session = db.session()
    if _in_transaction(session):
        session.flush()  # a setting stored but not yet flushed counts
        row = session.execute(_STORED).one()
    else:
        row = _STORED_OUTSIDE.first()
    return {spec.key: getattr(row, _PREFIX + spec.key) for spec in SPECS}


def _values(texts: dict[str, str | None]) -> dict[str, Any]:
    values = _defaults()
    for key, raw in texts.items():
        if raw is None:
            continue
        try:
            values[key] = _parsed(BY_KEY[key], raw)
        except SettingError:
            current_app.logger.warning("ignoring invalid stored setting %s", key)
    return values


def _load() -> dict[str, Any]:
    return _values(_stored_texts())


def adopt(row) -> None:
    """Take this context's settings from `row`, read outside any transaction by a statement
    carrying `STORED_TEXTS`, so that they are not read again. Does nothing when they are
    read already, or when the session's transaction is open (the row could not see its
    changes: the settings are then read in it, as always)."""
    if "reseller_settings" in g or _in_transaction(db.session()):
        return
    g.reseller_settings = _values({spec.key: getattr(row, _PREFIX + spec.key) for spec in SPECS})


def all_settings() -> dict[str, Any]:
    if "reseller_settings" not in g:
        g.reseller_settings = _load()
    return g.reseller_settings


def get(key: str) -> Any:
    return all_settings()[key]


def forget() -> None:
    """Drop the per-context cache (after a change)."""
    g.pop("reseller_settings", None)


def raw_value(key: str) -> str:
    """The stored text, or the default, for editing forms."""
    spec = BY_KEY[key]
    row = db.session.get(Setting, key)
    if row is not None:
        return row.value
    value = current_app.config.get(spec.config_key)
    return "" if value is None else str(value)


def store(key: str, raw: str) -> tuple[str | None, str]:
    """Validate and store one setting (no commit). Returns (before, after) texts."""
    spec = BY_KEY[key]
    parse(spec, raw)
    row = db.session.get(Setting, key)
    before = row.value if row else None
    if row is None:
        row = Setting(key=key, value=str(raw).strip())
        db.session.add(row)
    else:
        row.value = str(raw).strip()
    forget()
    return before, row.value
