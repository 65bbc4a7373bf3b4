"""The data model. Money columns hold integer money units (see `reseller.money`)."""

from __future__ import annotations

import datetime as dt
import enum
from decimal import Decimal

from flask_login import UserMixin
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from . import clock, keyring
from .extensions import db


def utcnow() -> dt.datetime:
    """Naive UTC now from the one clock; every timestamp we store is naive UTC."""
    return clock.utcnow()


class User(UserMixin, db.Model):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint("balance >= 0", name="balance_not_negative"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Stored lower-cased and trimmed, so the unique constraint is case-insensitive.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    # HMAC-SHA256 of the key under a key derived from SECRET_KEY: lookups without storing it.
    api_key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The key itself, encrypted (Fernet) under another key derived from SECRET_KEY.
    api_key_encrypted: Mapped[str] = mapped_column(Text)
    # Its last characters in clear (what "…abcd" shows), so support can find the account a
    # customer names by the end of a key; NULL for keys issued before it was kept.
    api_key_tail: Mapped[str | None] = mapped_column(String(8), index=True)
    balance: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    last_activity_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # When the owner opened the link mailed to `email` (None: never; see
    # REQUIRE_EMAIL_VERIFICATION).
    email_verified_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # Raised by "log out other sessions": part of every session's identity (`get_id`).
    session_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Two-factor (TOTP): the secret, Fernet under a key derived from SECRET_KEY; it is a
    # set-up in progress until `totp_enabled_at` is set. `totp_last_step` is the time step of
    # the last code accepted: a code is never accepted twice.
    totp_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    totp_enabled_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)

    @property
    def two_factor_enabled(self) -> bool:
        return self.totp_enabled_at is not None

    @property
    def is_active(self) -> bool:  # Flask-Login: a disabled account cannot log in
        return bool(self.active)

    def get_id(self) -> str:
        """Flask-Login: what the session and remember-me cookies hold. The id and a keyed
        fingerprint of the password hash and the session generation, so that changing the
        password or "log out other sessions" ends every other session at once."""
        generation = self.session_generation or 0
        # Generation 0 fingerprints the hash alone, as before generations: sessions started
        # before the upgrade stay valid.
        state = f"{generation}|{self.password_hash}" if generation else self.password_hash
        return f"{self.id}.{keyring.fingerprint(b'session', state)}"

    def __repr__(self) -> str:
        return f"<User {self.id} {self.email}>"


class LedgerKind(enum.StrEnum):
    TOPUP = "topup"
    PURCHASE = "purchase"
    REFUND = "refund"
    ADJUSTMENT = "adjustment"
    PAYMENT = "payment"  # a customer's own top-up through a payment gateway
    PAYMENT_BONUS = "payment_bonus"  # the top-up bonus for that payment
    RENT = "rent"  # a rented number's first period
    RENT_EXTENSION = "rent_extension"  # a further period (continueRentNumber)
    RENT_REFUND = "rent_refund"  # a period given back (a cancel the upstream accepted)
    PAYMENT_REFUND = "payment_refund"  # a paid top-up given back at the gateway (and its bonus)


class LedgerEntry(db.Model):
    """One balance change. Append-only: rows are never updated or deleted."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        # An activation is charged at most once and refunded at most once.
        UniqueConstraint("activation_id", "kind", name="uq_ledger_entries_activation_kind"),
        # A payment is credited at most once (and its bonus at most once).
        UniqueConstraint("payment_id", "kind", name="uq_ledger_entries_payment_kind"),
        # A rent period is charged at most once and refunded at most once.
        UniqueConstraint("rent_period_id", "kind", name="uq_ledger_entries_rent_period_kind"),
        CheckConstraint("balance_after >= 0", name="balance_after_not_negative"),
        CheckConstraint("amount <> 0", name="amount_not_zero"),
        Index("ix_ledger_entries_user_created", "user_id", "id"),
        Index("ix_ledger_entries_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=False)
    amount: Mapped[int] = mapped_column(BigInteger)  # signed: + credit, - debit
    kind: Mapped[str] = mapped_column(String(20))
    reference: Mapped[str | None] = mapped_column(String(100))
    activation_id: Mapped[int | None] = mapped_column(ForeignKey("activations.id"))
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id"))
    rent_period_id: Mapped[int | None] = mapped_column(ForeignKey("rent_periods.id"))
    balance_after: Mapped[int] = mapped_column(BigInteger)
    note: Mapped[str | None] = mapped_column(String(500))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    user: Mapped[User] = relationship(foreign_keys=[user_id])
    actor: Mapped[User | None] = relationship(foreign_keys=[actor_id])


@event.listens_for(LedgerEntry, "before_update")
def _ledger_is_append_only(mapper, connection, target):  # noqa: ARG001
    raise RuntimeError("ledger entries are append-only")


@event.listens_for(LedgerEntry, "before_delete")
def _ledger_rows_stay(mapper, connection, target):  # noqa: ARG001
    raise RuntimeError("ledger entries are append-only")


class ActivationStatus(enum.StrEnum):
    PENDING = "pending"  # money held, upstream purchase in flight
    UNKNOWN = "unknown"  # purchase answer lost: reconciliation settles it
    ALLOCATED = "allocated"  # number handed out, waiting for a code
    CODE_RECEIVED = "code_received"  # a code arrived
    RETRY_WAIT = "retry_wait"  # customer asked for another SMS
    COMPLETED = "completed"  # finished (status 6)
    CANCELLED = "cancelled"  # cancelled before a code, refunded
    EXPIRED = "expired"  # lifetime over without a code, refunded
    FAILED = "failed"  # upstream refused the purchase, refunded


class Settlement(enum.StrEnum):
    """How the worker refunded a purchase whose answer never came (`Activation.settlement`)."""

    LISTED = "listed"  # the upstream's active list was read: a number it sold is released
    UNCONFIRMED = "unconfirmed"  # the list could not be read: refunded after a longer grace


class Activation(db.Model):
    __tablename__ = "activations"
    __table_args__ = (
        UniqueConstraint("user_id", "order_id", name="uq_activations_user_order"),
        Index("ix_activations_user_status", "user_id", "status"),
        Index("ix_activations_status_poll", "status", "next_poll_at"),
        Index("ix_activations_created", "created_at"),
        CheckConstraint("price >= 0", name="price_not_negative"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    service: Mapped[str] = mapped_column(String(40))
    country_id: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default=ActivationStatus.PENDING.value)
    price: Mapped[int] = mapped_column(BigInteger)  # what the customer paid
    upstream_cost: Mapped[int | None] = mapped_column(BigInteger)  # what we paid, when known
    upstream_name: Mapped[str] = mapped_column(String(20))
    upstream_id: Mapped[str | None] = mapped_column(String(40), index=True)
    phone: Mapped[str | None] = mapped_column(String(32))
    order_id: Mapped[str | None] = mapped_column(String(100))
    code: Mapped[str | None] = mapped_column(String(100))  # the latest code
    sms_text: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    allocated_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    code_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # The upstream is asked about this activation no earlier than this (poll cap).
    next_poll_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # A worker or request that owns a slow operation on this row until then.
    claimed_until: Mapped[dt.datetime | None] = mapped_column(DateTime)
    error: Mapped[str | None] = mapped_column(String(200))
    # Set when the worker settled this purchase (see `Settlement`); None otherwise.
    settlement: Mapped[str | None] = mapped_column(String(20))

    user: Mapped[User] = relationship()
    events: Mapped[list[ActivationEvent]] = relationship(
        back_populates="activation", order_by="ActivationEvent.id"
    )
    messages: Mapped[list[SmsMessage]] = relationship(
        back_populates="activation", order_by="SmsMessage.id"
    )


class ActivationEvent(db.Model):
    """A state change of an activation: the timeline and the statistics read these."""

    __tablename__ = "activation_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    activation_id: Mapped[int] = mapped_column(ForeignKey("activations.id"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str] = mapped_column(String(20))
    note: Mapped[str | None] = mapped_column(String(300))
    actor: Mapped[str | None] = mapped_column(String(60))  # "customer", "worker", "admin:3"
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)

    activation: Mapped[Activation] = relationship(back_populates="events")


class SmsMessage(db.Model):
    __tablename__ = "sms_messages"
    __table_args__ = (UniqueConstraint("activation_id", "seq", name="uq_sms_messages_seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    activation_id: Mapped[int] = mapped_column(ForeignKey("activations.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    code: Mapped[str] = mapped_column(String(100))
    text: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    activation: Mapped[Activation] = relationship(back_populates="messages")


class Favourite(db.Model):
    """A (service, country) a customer keeps at the top of the dashboard's picker."""

    __tablename__ = "favourites"
    __table_args__ = (
        UniqueConstraint("user_id", "service", "country_id", name="uq_favourites_pair"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    service: Mapped[str] = mapped_column(String(40))
    country_id: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Service(db.Model):
    """A service the upstream sells (tg, wa, …); the operator may switch one off."""

    __tablename__ = "services"

    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")


class Country(db.Model):
    """A country by the upstream's numeric id; `iso` is our alpha-2 mapping."""

    __tablename__ = "countries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(120))
    iso: Mapped[str | None] = mapped_column(String(2), index=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")


class UpstreamPrice(db.Model):
    """What we sell per (service, country): the cost of the provider routing would choose
    now and the stock of every eligible provider together. Rebuilt from `ProviderPrice`
    (services.catalog.rebuild_offers); read per request by pricing."""

    __tablename__ = "upstream_prices"

    service: Mapped[str] = mapped_column(String(40), primary_key=True)
    country_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    cost: Mapped[int] = mapped_column(BigInteger)
    count: Mapped[int] = mapped_column(Integer)
    provider: Mapped[str | None] = mapped_column(String(20))  # whose cost `cost` is
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Provider(db.Model):
    """An upstream account the operator buys numbers from, speaking one protocol.

    `api_key_encrypted` is Fernet under a key derived from SECRET_KEY; a provider created
    from the environment (`from_env`) reads its URL and key from the configuration instead.
    The circuit breaker lives here so that every process and host shares it.
    """

    __tablename__ = "providers"
    __table_args__ = (
        CheckConstraint("rate > 0", name="rate_positive"),
        CheckConstraint("failures >= 0", name="failures_not_negative"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(20), unique=True)  # slug; activations keep it
    display_name: Mapped[str] = mapped_column(String(80))
    protocol: Mapped[str] = mapped_column(String(20))  # a key of upstream.PROTOCOLS
    base_url: Mapped[str] = mapped_column(String(300), default="", server_default="")
    api_key_encrypted: Mapped[str] = mapped_column(Text, default="", server_default="")
    from_env: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    priority: Mapped[int] = mapped_column(Integer, default=10, server_default="10")
    notes: Mapped[str | None] = mapped_column(Text)
    # What the provider bills in, and how many of our money units one of its units buys.
    currency: Mapped[str] = mapped_column(String(10), default="USD", server_default="USD")
    rate: Mapped[Decimal] = mapped_column(db.Numeric(18, 8), default=1, server_default="1")
    rate_updated_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # Circuit breaker: consecutive transport failures, and skipped until this time.
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    open_until: Mapped[dt.datetime | None] = mapped_column(DateTime)
    last_error: Mapped[str | None] = mapped_column(String(200))
    last_failure_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    def __repr__(self) -> str:
        return f"<Provider {self.name} {self.protocol}>"


class ProviderPrice(db.Model):
    """One provider's cost and stock for a (service, country): the cost as it lists it (its
    currency) and converted to our money units at its rate (converted again when the
    operator changes the rate)."""

    __tablename__ = "provider_prices"

    provider_id: Mapped[int] = mapped_column(
        ForeignKey("providers.id", ondelete="CASCADE"), primary_key=True
    )
    service: Mapped[str] = mapped_column(String(40), primary_key=True)
    country_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    cost: Mapped[int] = mapped_column(BigInteger)
    native_cost: Mapped[Decimal] = mapped_column(db.Numeric(18, 6), nullable=False)
    count: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class PricingRule(db.Model):
    """An override: per service, per country, or per (service, country).

    Exactly one of `fixed_price` (money units) or `markup_percent` is set.
    """

    __tablename__ = "pricing_rules"
    __table_args__ = (
        UniqueConstraint("service", "country_id", name="uq_pricing_rules_scope"),
        CheckConstraint(
            "(fixed_price IS NULL) <> (markup_percent IS NULL)", name="one_kind_of_rule"
        ),
        CheckConstraint("service IS NOT NULL OR country_id IS NOT NULL", name="has_scope"),
        # NULLs never collide in a unique constraint: one rule per service, per country.
        Index(
            "uq_pricing_rules_service_only",
            "service",
            unique=True,
            sqlite_where=text("country_id IS NULL"),
            postgresql_where=text("country_id IS NULL"),
        ),
        Index(
            "uq_pricing_rules_country_only",
            "country_id",
            unique=True,
            sqlite_where=text("service IS NULL"),
            postgresql_where=text("service IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    service: Mapped[str | None] = mapped_column(String(40))
    country_id: Mapped[int | None] = mapped_column(Integer)
    fixed_price: Mapped[int | None] = mapped_column(BigInteger)
    markup_percent: Mapped[float | None] = mapped_column(db.Numeric(8, 2))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class Setting(db.Model):
    """Operator settings edited in the console; environment variables give defaults."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(60), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class AuditLog(db.Model):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    action: Mapped[str] = mapped_column(String(60), index=True)
    target: Mapped[str | None] = mapped_column(String(120))
    before: Mapped[str | None] = mapped_column(Text)
    after: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)

    actor: Mapped[User | None] = relationship()


class SandboxActivation(db.Model):
    """State of the sandbox upstream, shared by every worker process through the database."""

    __tablename__ = "sandbox_activations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    service: Mapped[str] = mapped_column(String(40))
    country_id: Mapped[int] = mapped_column(Integer)
    phone: Mapped[str] = mapped_column(String(32))
    cost: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(
        String(20), default="waiting"
    )  # waiting/retry/done/cancelled
    sms_count: Mapped[int] = mapped_column(Integer, default=0)
    # The next code arrives at this time (None: no SMS expected).
    code_due_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class JobState(db.Model):
    """A named periodic job or cached value shared by every process (price refresh, the
    upstream balance): who may run it until when, when it last ran, what it found."""

    __tablename__ = "job_states"

    name: Mapped[str] = mapped_column(String(60), primary_key=True)
    locked_until: Mapped[dt.datetime | None] = mapped_column(DateTime)
    last_run_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    value: Mapped[str | None] = mapped_column(Text)


class PaymentStatus(enum.StrEnum):
    PENDING = "pending"  # our row exists; the invoice is created or being created, unpaid
    PAID = "paid"  # the gateway confirmed it and the wallet is credited
    EXPIRED = "expired"  # the invoice's lifetime ran out unpaid
    FAILED = "failed"  # the invoice could not be created, or the gateway says it failed
    FLAGGED = "flagged"  # the gateway's word disagrees with ours: the operator decides
    # The customer gave the unpaid invoice up; a payment that arrives anyway still credits.
    CANCELLED = "cancelled"
    REFUNDED = "refunded"  # paid, then given back at the gateway; the wallet was debited


class Payment(db.Model):
    """A customer's top-up through a payment gateway (see reseller.services.payments)."""

    __tablename__ = "payments"
    __table_args__ = (
        UniqueConstraint("gateway", "invoice_id", name="uq_payments_gateway_invoice"),
        Index("ix_payments_user_created", "user_id", "id"),
        Index("ix_payments_status_check", "status", "next_check_at"),
        Index("ix_payments_created_at", "created_at"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("bonus >= 0", name="bonus_not_negative"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    gateway: Mapped[str] = mapped_column(String(20))
    amount: Mapped[int] = mapped_column(BigInteger)  # money units, what the wallet gets
    currency: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(20), default=PaymentStatus.PENDING.value)
    # The gateway's own last word ("active", "confirming", "partially_paid", ...).
    gateway_status: Mapped[str | None] = mapped_column(String(40))
    invoice_id: Mapped[str | None] = mapped_column(String(100))
    pay_url: Mapped[str | None] = mapped_column(String(500))
    # The gateway-side payment that was credited (NOWPayments' payment_id); every payment
    # made on the invoice is a PaymentAttempt.
    gateway_reference: Mapped[str | None] = mapped_column(String(100))
    bonus: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    flag_reason: Mapped[str | None] = mapped_column(String(300))
    error: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    paid_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # The worker asks the gateway about this payment no earlier than this.
    next_check_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    checks: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    claimed_until: Mapped[dt.datetime | None] = mapped_column(DateTime)

    user: Mapped[User] = relationship()
    changes: Mapped[list[PaymentChange]] = relationship(
        back_populates="payment", order_by="PaymentChange.id"
    )
    attempts: Mapped[list[PaymentAttempt]] = relationship(order_by="PaymentAttempt.id")


class PaymentAttempt(db.Model):
    """One payment made on a top-up's invoice at the gateway (a NOWPayments invoice can
    carry several): its id there and its last word, so that every one is reconciled, not
    only the last notified."""

    __tablename__ = "payment_attempts"
    __table_args__ = (
        UniqueConstraint("payment_id", "reference", name="uq_payment_attempts_payment_reference"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), index=True)
    reference: Mapped[str] = mapped_column(String(100))  # the gateway's id of this payment
    # What the gateway's word means (reseller.gateways.base.InvoiceState's values).
    state: Mapped[str] = mapped_column(String(20))
    gateway_status: Mapped[str] = mapped_column(String(40))
    # What arrived at the gateway for it, in the gateway's words, once anything did.
    received: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class PaymentChange(db.Model):
    """The timeline of a payment: state changes, and each verified notification as received."""

    __tablename__ = "payment_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str | None] = mapped_column(String(20))
    gateway_status: Mapped[str | None] = mapped_column(String(40))
    source: Mapped[str] = mapped_column(String(40))  # "notification", "check", "customer", ...
    note: Mapped[str | None] = mapped_column(String(300))
    body: Mapped[str | None] = mapped_column(Text)  # the verified notification, as received
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    payment: Mapped[Payment] = relationship(back_populates="changes")


class WebhookEndpoint(db.Model):
    """A customer's webhook: where their events go, the signing secret (encrypted like the
    API key), and whether delivery is paused after repeated failure."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), unique=True)
    # None once the customer removed it: the row stays, so an event being written for it
    # at that moment still finds its endpoint (and is dropped at delivery).
    url: Mapped[str | None] = mapped_column(String(500))
    secret_encrypted: Mapped[str] = mapped_column(Text)
    # Failed attempts in a row (any event); a success resets it, a threshold pauses.
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    paused_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    pause_reason: Mapped[str | None] = mapped_column(String(200))
    last_success_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    last_failure_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    user: Mapped[User] = relationship()


class WebhookEventStatus(enum.StrEnum):
    QUEUED = "queued"  # waiting for its (next) attempt
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # attempts exhausted, or dropped (queue limit, endpoint removed)


class WebhookEvent(db.Model):
    """The outbox: one event for one endpoint, written in the transaction of the change that
    causes it and delivered by the worker (claimed like any background row)."""

    __tablename__ = "webhook_events"
    __table_args__ = (
        Index("ix_webhook_events_due", "status", "next_attempt_at"),
        Index("ix_webhook_events_endpoint_status", "endpoint_id", "status"),
        Index("ix_webhook_events_finished", "finished_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The id receivers deduplicate by (X-Webhook-Id); never reused.
    uid: Mapped[str] = mapped_column(String(32), unique=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id"))
    activation_id: Mapped[int | None] = mapped_column(ForeignKey("activations.id"))
    rental_id: Mapped[int | None] = mapped_column(ForeignKey("rentals.id"))
    kind: Mapped[str] = mapped_column(String(20))  # sms, cancelled, expired, test, rent_sms
    code: Mapped[str | None] = mapped_column(String(100))
    text: Mapped[str | None] = mapped_column(Text)
    occurred_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    status: Mapped[str] = mapped_column(String(20), default=WebhookEventStatus.QUEUED.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    claimed_until: Mapped[dt.datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)  # delivered or failed
    last_error: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class WebhookAttempt(db.Model):
    """One delivery attempt, for the customer's Account page (the latest 50 are kept)."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_endpoint", "endpoint_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id"))
    event_uid: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(20))
    attempted_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(200))
    duration_ms: Mapped[int] = mapped_column(Integer)
    next_retry_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class RentalStatus(enum.StrEnum):
    PENDING = "pending"  # money held, upstream rent in flight
    UNKNOWN = "unknown"  # the rent's answer was lost: the worker settles it
    ACTIVE = "active"  # the number is ours until `ends_at`; every SMS is kept
    FINISHED = "finished"  # the customer finished it (status 1): no refund
    CANCELLED = "cancelled"  # cancelled within the window before any SMS: refunded
    EXPIRED = "expired"  # its time ran out: no refund
    FAILED = "failed"  # no provider rented it (or its lost answer was settled): refunded


class Rental(db.Model):
    """A number rented for hours or days (SMS-Activate's rent, 5sim's hosting): every SMS
    sent to it is kept (`RentMessage`). Its money is one `RentPeriod` per charge."""

    __tablename__ = "rentals"
    __table_args__ = (
        Index("ix_rentals_user", "user_id", "id"),
        Index("ix_rentals_status_poll", "status", "next_poll_at"),
        Index("ix_rentals_created", "created_at"),
        CheckConstraint("price >= 0", name="price_not_negative"),
        CheckConstraint("hours > 0", name="hours_positive"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    service: Mapped[str] = mapped_column(String(40))
    country_id: Mapped[int] = mapped_column(Integer)
    operator: Mapped[str] = mapped_column(String(40), default="any", server_default="any")
    status: Mapped[str] = mapped_column(String(20), default=RentalStatus.PENDING.value)
    hours: Mapped[int] = mapped_column(Integer)  # every period together
    price: Mapped[int] = mapped_column(BigInteger)  # what the customer paid, every period
    upstream_cost: Mapped[int | None] = mapped_column(BigInteger)  # what we paid, when known
    upstream_name: Mapped[str] = mapped_column(String(20))
    upstream_id: Mapped[str | None] = mapped_column(String(40), index=True)
    phone: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    ends_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    sms_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The upstream is asked for this rental's SMS no earlier than this.
    next_poll_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    claimed_until: Mapped[dt.datetime | None] = mapped_column(DateTime)
    error: Mapped[str | None] = mapped_column(String(200))
    settlement: Mapped[str | None] = mapped_column(String(20))  # see `Settlement`

    user: Mapped[User] = relationship()
    periods: Mapped[list[RentPeriod]] = relationship(
        back_populates="rental", order_by="RentPeriod.seq"
    )
    messages: Mapped[list[RentMessage]] = relationship(
        back_populates="rental", order_by="RentMessage.id"
    )


class RentPeriod(db.Model):
    """One charge of a rental: the first period (seq 1) or a continue. The ledger names it,
    so each is charged once and refunded at most once."""

    __tablename__ = "rent_periods"
    __table_args__ = (
        UniqueConstraint("rental_id", "seq", name="uq_rent_periods_seq"),
        CheckConstraint("price >= 0", name="price_not_negative"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rental_id: Mapped[int] = mapped_column(ForeignKey("rentals.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    hours: Mapped[int] = mapped_column(Integer)
    price: Mapped[int] = mapped_column(BigInteger)
    upstream_cost: Mapped[int | None] = mapped_column(BigInteger)
    # pending (charged, upstream call in flight), confirmed, refused (refunded), unknown
    # (the continue's answer was lost: the charge stands until the operator looks)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    rental: Mapped[Rental] = relationship(back_populates="periods")


class RentMessage(db.Model):
    """An SMS a rented number received; `key` tells a new one from one already kept."""

    __tablename__ = "rent_messages"
    __table_args__ = (UniqueConstraint("rental_id", "key", name="uq_rent_messages_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rental_id: Mapped[int] = mapped_column(ForeignKey("rentals.id"), index=True)
    key: Mapped[str] = mapped_column(String(64))
    sender: Mapped[str | None] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    service: Mapped[str | None] = mapped_column(String(40))
    received_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    rental: Mapped[Rental] = relationship(back_populates="messages")


class SandboxRental(db.Model):
    """A rent of the sandbox upstream (its SMS are derived from the clock on read)."""

    __tablename__ = "sandbox_rentals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    service: Mapped[str] = mapped_column(String(40))
    country_id: Mapped[int] = mapped_column(Integer)
    phone: Mapped[str] = mapped_column(String(32))
    cost: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(20), default="active")  # active/finished/cancelled
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    ends_at: Mapped[dt.datetime] = mapped_column(DateTime)


# --- the Telegram bot (reseller.telegram; rules in reseller.services.telegram) -------------


class TelegramAccount(db.Model):
    """A Telegram user of the bot and the account (wallet, API key) they use."""

    __tablename__ = "telegram_accounts"

    # Telegram's user id (also the private chat's id).
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), unique=True)
    username: Mapped[str | None] = mapped_column(String(64))
    first_name: Mapped[str | None] = mapped_column(String(128))
    # The user's choice (/lang), else Telegram's language_code as it last came.
    language: Mapped[str | None] = mapped_column(String(8))
    language_code: Mapped[str | None] = mapped_column(String(16))
    # The account was made by the bot (no e-mail login): it may be replaced by a link.
    made_by_bot: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # Sends fail with 403 (the user blocked the bot): no pushes until they write again.
    blocked_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)

    user: Mapped[User] = relationship()


class TelegramLinkToken(db.Model):
    """A one-time `/start` payload that links a Telegram user to a web account."""

    __tablename__ = "telegram_link_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # A keyed hash of the payload: a database dump reveals no usable link.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class TelegramUpdate(db.Model):
    """An update taken for processing: a second delivery of the same id (a webhook retry,
    a poller restarted before confirming) finds its row and is dropped."""

    __tablename__ = "telegram_updates"

    update_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)


class TelegramMessageStatus(enum.StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"  # attempts exhausted, or the user blocked the bot


class TelegramMessage(db.Model):
    """The bot's outbox: a message to push to a chat (a code that arrived, a broadcast),
    written in the transaction that causes it and sent by the worker."""

    __tablename__ = "telegram_messages"
    __table_args__ = (
        Index("ix_telegram_messages_due", "status", "next_attempt_at"),
        Index("ix_telegram_messages_broadcast", "broadcast_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(20))  # sms, cancelled, expired, broadcast
    activation_id: Mapped[int | None] = mapped_column(ForeignKey("activations.id"))
    broadcast_id: Mapped[int | None] = mapped_column(ForeignKey("telegram_broadcasts.id"))
    status: Mapped[str] = mapped_column(String(20), default=TelegramMessageStatus.QUEUED.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    claimed_until: Mapped[dt.datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    last_error: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class TelegramNumberMessage(db.Model):
    """The chat message that shows a number: edited when its code arrives or it closes."""

    __tablename__ = "telegram_number_messages"

    activation_id: Mapped[int] = mapped_column(ForeignKey("activations.id"), primary_key=True)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    message_id: Mapped[int] = mapped_column(BigInteger)


class TelegramBroadcast(db.Model):
    """An operator's message to every bot user (or those active lately)."""

    __tablename__ = "telegram_broadcasts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    active_days: Mapped[int | None] = mapped_column(Integer)
    recipients: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class TelegramStarCharge(db.Model):
    """A Telegram Stars payment as Telegram names it: the charge id is unique, and a refund
    (`refundStarPayment`) needs it with the payer's Telegram id."""

    __tablename__ = "telegram_star_charges"

    charge_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), unique=True)
    telegram_user_id: Mapped[int] = mapped_column(BigInteger)
    stars: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class AccountTokenPurpose(enum.StrEnum):
    VERIFY_EMAIL = "verify_email"  # the address of the account is its owner's
    RESET_PASSWORD = "reset_password"  # forgot password
    CHANGE_EMAIL = "change_email"  # the new address (`email`) is the owner's: switch to it


class AccountToken(db.Model):
    """A link mailed to a customer. Only a keyed hash of the token is stored; the token is
    used once (`used_at`), runs out at `expires_at`, and is void once a newer one of the same
    purpose is issued (or, for a reset, once the password changes)."""

    __tablename__ = "account_tokens"
    __table_args__ = (Index("ix_account_tokens_user_purpose", "user_id", "purpose"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    purpose: Mapped[str] = mapped_column(String(20))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The address the link was mailed to (for an e-mail change: the new address).
    email: Mapped[str] = mapped_column(String(254))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class RecoveryCode(db.Model):
    """A one-use two-factor recovery code, stored as a keyed hash only."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    used_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class MailStatus(enum.StrEnum):
    QUEUED = "queued"  # waiting for its (next) attempt
    SENT = "sent"  # the mail server accepted it
    FAILED = "failed"  # attempts exhausted


class MailMessage(db.Model):
    """The mail outbox: written in the transaction of the change that causes the mail, sent
    by the worker (claimed like any background row). The message (it carries links) is
    sealed under a key derived from SECRET_KEY and dropped once sent or failed."""

    __tablename__ = "mail_messages"
    __table_args__ = (
        Index("ix_mail_messages_due", "status", "next_attempt_at"),
        Index("ix_mail_messages_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[str] = mapped_column(String(30))  # the template: password_reset, ...
    recipient: Mapped[str] = mapped_column(String(254))
    # The recipient's language when known (a BCP 47 tag), for the mail's catalogue.
    language: Mapped[str | None] = mapped_column(String(16))
    sealed: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default=MailStatus.QUEUED.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    claimed_until: Mapped[dt.datetime | None] = mapped_column(DateTime)
    last_error: Mapped[str | None] = mapped_column(String(200))
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
