"""Configuration: one class per environment, values from environment variables.

`RESELLER_ENV` picks the class (`production` when unset, `development`, `testing`).
A `.env` file beside this one is read when python-dotenv is installed (it is a dependency).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent

try:  # optional .env support; real environment variables win
    from dotenv import load_dotenv

    load_dotenv(BASE_DIR / ".env", override=False)
except ImportError:  # pragma: no cover
    pass


# Paragraphs of the Terms and Privacy pages until the operator writes their own.
DEFAULT_TERMS = "\n\n".join(
    (
        "Numbers are sold for receiving SMS verification codes. Each number is yours for a "
        "limited time.",
        "The price is taken from your balance when a number is handed to you. If no SMS "
        "arrives before the number expires, or you cancel it before any SMS, the full price "
        "goes back to your balance.",
        "Do not use the numbers for anything unlawful, for spam or to deceive anyone. "
        "Accounts that do are closed.",
        "Money on your balance is spent on numbers; ask support about anything else.",
    )
)
DEFAULT_PRIVACY = "\n\n".join(
    (
        "We keep your email address, a hash of your password, your balance and its history, "
        "the numbers you bought and the SMS they received, so that you can see them and we "
        "can settle any dispute.",
        "We do not sell or share this data, except with the payment provider you choose when "
        "you top up, and when the law requires it.",
        "Ask support to close your account; your data is then deleted, except the records of "
        "payments the law asks us to keep.",
    )
)


class ConfigError(RuntimeError):
    """The configuration cannot run; the message names the variable."""


# SECRET_KEY signs sessions and keys the stored API keys: production refuses a short one and
# the ones published here (development's default, the tests', deploy/reseller.env.example's).
MIN_SECRET_KEY_LENGTH = 32
DEVELOPMENT_SECRET_KEY = "dev-secret-key-not-for-production"
TEST_SECRET_KEY = "test-secret-key"
PUBLISHED_SECRET_KEYS = frozenset({DEVELOPMENT_SECRET_KEY, TEST_SECRET_KEY, "change-me"})
GENERATE_SECRET_KEY = "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"


def normalise_database_url(url: str | None) -> str | None:
    """Accept Heroku-style `postgres://` and pick the psycopg 3 driver for PostgreSQL."""
    if not url:
        return url
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _env_int(name: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
    raw = _env(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    return _in_range(name, value, raw, minimum, maximum)


def _env_float(
    name: str, default: float, minimum: float = 0, maximum: float | None = None
) -> float:
    raw = _env(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value):  # 'nan' and 'inf' parse, and pass any bound
        raise ConfigError(f"{name} must be a finite number, got {raw!r}")
    return _in_range(name, value, raw, minimum, maximum)


def _in_range(name: str, value, raw: str, minimum, maximum):
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"at least {minimum:g}" if maximum is None else f"{minimum:g} to {maximum:g}"
        raise ConfigError(f"{name} must be {bounds}, got {raw!r}")
    return value


def _env_bool(name: str, default: bool) -> bool:
    raw = _env(name)
    if raw is None:
        return default
    if raw.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if raw.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


class Config:
    """Base settings. Instances read the environment when created, so a test can set
    variables and build a fresh config."""

    ENV_NAME = "base"

    def __init__(self) -> None:
        self.SECRET_KEY = _env("SECRET_KEY")
        self.SQLALCHEMY_DATABASE_URI = normalise_database_url(_env("DATABASE_URL"))
        # No pool_pre_ping: its SELECT 1 per checkout doubled a hot read's round trips.
        # reseller.pool drops connections the database closed (restart, failover) at
        # checkout by looking at their sockets, which costs no round trip.
        self.SQLALCHEMY_ENGINE_OPTIONS: dict = {}
        self.SQLALCHEMY_TRACK_MODIFICATIONS = False

        self.SITE_NAME = _env("SITE_NAME", "SMS Reseller")
        # yes: the API docs page names the enabled providers (console setting).
        self.SHOW_PROVIDER_NAMES = _env("SHOW_PROVIDER_NAMES", "yes")
        self.CURRENCY = _env("CURRENCY", "USD")
        self.SUPPORT_CONTACT = _env("SUPPORT_CONTACT", "")
        self.TOPUP_INSTRUCTIONS = _env(
            "TOPUP_INSTRUCTIONS",
            "To top up your balance, contact the operator with your account email.",
        )
        # The Terms and Privacy pages; the console's Settings change them.
        self.TERMS_TEXT = _env("TERMS_TEXT", DEFAULT_TERMS)
        self.PRIVACY_TEXT = _env("PRIVACY_TEXT", DEFAULT_PRIVACY)

        # The provider the environment describes: "grizzly", "sandbox" (only when named) or
        # "none" (providers are added with `flask providers add` or the console only).
        self.UPSTREAM = _env("UPSTREAM", "grizzly")
        self.GRIZZLY_API_KEY = _env("GRIZZLY_API_KEY")
        self.GRIZZLY_API_URL = _env(
            "GRIZZLY_API_URL", "https://api.grizzlysms.com/stubs/handler_api.php"
        )
        self.UPSTREAM_CONNECT_TIMEOUT = _env_float("UPSTREAM_CONNECT_TIMEOUT", 5.0, 0.1, 300)
        self.UPSTREAM_READ_TIMEOUT = _env_float("UPSTREAM_READ_TIMEOUT", 15.0, 0.1, 600)
        self.SANDBOX_CODE_DELAY = _env_int("SANDBOX_CODE_DELAY", 10, 0, 86400)
        # Circuit breaker: after this many failures in a row a provider is skipped for
        # BREAKER_COOLDOWN seconds, then tried again.
        self.BREAKER_FAILURES = _env_int("BREAKER_FAILURES", 3, 1, 1000)
        self.BREAKER_COOLDOWN = _env_int("BREAKER_COOLDOWN", 60, 1, 86400)
        self.ROUTING_POLICY = _env("ROUTING_POLICY", "priority")
        self.SERVE_AT_LOSS = _env("SERVE_AT_LOSS", "no")
        # Seconds after which an unanswered purchase is settled (0: timeouts + 30 s).
        self.SETTLE_AFTER = _env_int("SETTLE_AFTER", 0, 0, 86400)

        # Pricing and the activation lifecycle (defaults; admin settings override).
        # Their ranges are the operator settings' (services/settings.py), checked at start-up.
        self.PRICE_MARKUP_PERCENT = _env_float("PRICE_MARKUP_PERCENT", 30.0)
        self.RENT_MARKUP_PERCENT = _env_float("RENT_MARKUP_PERCENT", 30.0)
        self.PRICE_MINIMUM = _env("PRICE_MINIMUM", "0.10")
        self.PRICE_REFRESH_INTERVAL = _env_int("PRICE_REFRESH_INTERVAL", 600, 10, 86400)
        self.ACTIVATION_LIFETIME = _env_int("ACTIVATION_LIFETIME", 20 * 60)
        self.EARLY_CANCEL_WINDOW = _env_int("EARLY_CANCEL_WINDOW", 120)
        self.UPSTREAM_POLL_INTERVAL = _env_int("UPSTREAM_POLL_INTERVAL", 3)
        # Seconds a web request (dashboard, its feed, getStatus) may wait on the upstream for
        # status polls in all, and a worker pass for its polls: past them, the database
        # answers and the next pass polls on.
        self.WEB_POLL_BUDGET = _env_float("WEB_POLL_BUDGET", 2.0, 0, 60)
        self.WORKER_POLL_BUDGET = _env_float("WORKER_POLL_BUDGET", 20.0, 1, 3600)
        self.MAX_ACTIVE_ACTIVATIONS = _env_int("MAX_ACTIVE_ACTIVATIONS", 20)
        self.LOW_BALANCE_THRESHOLD = _env("LOW_BALANCE_THRESHOLD", "10.00")
        # getNumber without `country` buys here (SMS-Activate's default is 0).
        self.DEFAULT_COUNTRY = _env("DEFAULT_COUNTRY", "0")

        # Payment gateways (see README, "Top-ups"). A gateway is offered when its settings
        # are present; PAYMENT_GATEWAYS (comma-separated) names exactly the ones to run.
        self.PAYMENT_GATEWAYS = _env("PAYMENT_GATEWAYS")
        self.PUBLIC_URL = _env("PUBLIC_URL")  # e.g. https://sms.example.com (webhook URLs)
        self.PAYMENT_CONNECT_TIMEOUT = _env_float("PAYMENT_CONNECT_TIMEOUT", 5.0)
        self.PAYMENT_READ_TIMEOUT = _env_float("PAYMENT_READ_TIMEOUT", 15.0)
        self.CRYPTOPAY_API_TOKEN = _env("CRYPTOPAY_API_TOKEN")
        self.CRYPTOPAY_API_URL = _env("CRYPTOPAY_API_URL", "https://pay.crypt.bot/api")
        self.CRYPTOPAY_ACCEPTED_ASSETS = _env("CRYPTOPAY_ACCEPTED_ASSETS", "")
        self.CRYPTOPAY_INVOICE_LIFETIME = _env_int("CRYPTOPAY_INVOICE_LIFETIME", 3600)
        self.NOWPAYMENTS_API_KEY = _env("NOWPAYMENTS_API_KEY")
        self.NOWPAYMENTS_IPN_SECRET = _env("NOWPAYMENTS_IPN_SECRET")
        # Optional: lets the worker list an invoice's payments (a login, not only the key).
        self.NOWPAYMENTS_EMAIL = _env("NOWPAYMENTS_EMAIL")
        self.NOWPAYMENTS_PASSWORD = _env("NOWPAYMENTS_PASSWORD")
        self.NOWPAYMENTS_API_URL = _env("NOWPAYMENTS_API_URL", "https://api.nowpayments.io/v1")
        self.NOWPAYMENTS_INVOICE_LIFETIME = _env_int("NOWPAYMENTS_INVOICE_LIFETIME", 7 * 86400)
        self.SANDBOX_INVOICE_LIFETIME = _env_int("SANDBOX_INVOICE_LIFETIME", 3600)
        self.TOPUP_MINIMUM = _env("TOPUP_MINIMUM", "5.00")
        self.TOPUP_MAXIMUM = _env("TOPUP_MAXIMUM", "1000.00")
        self.TOPUP_PRESETS = _env("TOPUP_PRESETS", "10, 25, 50, 100")
        self.TOPUP_BONUS_PERCENT = _env_float("TOPUP_BONUS_PERCENT", 0.0)
        self.TOPUP_BONUS_THRESHOLD = _env("TOPUP_BONUS_THRESHOLD", "100.00")
        # Customer webhooks: receivers must be public addresses unless this is on
        # (development and tests, where receivers listen on 127.0.0.1).
        self.WEBHOOK_ALLOW_PRIVATE_TARGETS = _env_bool("WEBHOOK_ALLOW_PRIVATE_TARGETS", False)
        self.WEBHOOK_CONNECT_TIMEOUT = _env_float("WEBHOOK_CONNECT_TIMEOUT", 3.0)
        self.WEBHOOK_READ_TIMEOUT = _env_float("WEBHOOK_READ_TIMEOUT", 5.0)
        # One delivery's whole time (look-up, connect, TLS, send, the answer), and how many
        # receivers the worker calls at once (each slow one holds one of these threads).
        self.WEBHOOK_DELIVERY_DEADLINE = _env_float("WEBHOOK_DELIVERY_DEADLINE", 10.0, 1, 60)
        self.WEBHOOK_THREADS = _env_int("WEBHOOK_THREADS", 4, 1, 64)

        # The Telegram bot (README, "Telegram bot"): on when the token is set.
        self.TELEGRAM_BOT_TOKEN = _env("TELEGRAM_BOT_TOKEN")
        # The Bot API server's root: Telegram's, or an operator's local telegram-bot-api.
        self.TELEGRAM_API_URL = _env("TELEGRAM_API_URL", "https://api.telegram.org")
        # Sent back by Telegram with every webhook update (`flask telegram set-webhook`).
        self.TELEGRAM_WEBHOOK_SECRET = _env("TELEGRAM_WEBHOOK_SECRET")
        # The wallet money one Telegram Star buys (e.g. 0.013); Stars are off when unset.
        self.TELEGRAM_STARS_RATE = _env("TELEGRAM_STARS_RATE")
        # Updates one Telegram user may send (like API_RATE_LIMIT for a key).
        self.TELEGRAM_RATE_LIMIT = _env("TELEGRAM_RATE_LIMIT", "30 per minute")
        # Updates handled at once by `flask telegram poll` (each a thread for the services).
        self.TELEGRAM_WORKERS = _env_int("TELEGRAM_WORKERS", 16, 1, 256)

        # Rate limits (reseller.rate_limits, on the `limits` package). Use redis://… when
        # several processes or hosts serve. Answers carry no X-RateLimit-* headers (each
        # would cost storage reads); a 429 says when to come back with `Retry-After`.
        self.RATELIMIT_STORAGE_URI = _env("RATELIMIT_STORAGE_URI", "memory://")
        # A Redis outage must not take the API down: limits lapse (logged) until it is back.
        self.RATELIMIT_SWALLOW_ERRORS = True
        self.RATELIMIT_ENABLED = True
        self.LOGIN_RATE_LIMIT = _env("LOGIN_RATE_LIMIT", "10 per minute")
        self.API_RATE_LIMIT = _env("API_RATE_LIMIT", "60 per second")

        # Mail (Flask-Mail's settings): password resets, e-mail verification and changes.
        # Sent by the worker from an outbox. Without MAIL_SERVER, development writes mails to
        # the log and production's pages say to contact SUPPORT_CONTACT instead.
        self.MAIL_SERVER = _env("MAIL_SERVER")
        self.MAIL_PORT = _env_int("MAIL_PORT", 25, 1, 65535)
        self.MAIL_USE_TLS = _env_bool("MAIL_USE_TLS", False)
        self.MAIL_USE_SSL = _env_bool("MAIL_USE_SSL", False)
        self.MAIL_USERNAME = _env("MAIL_USERNAME")
        self.MAIL_PASSWORD = _env("MAIL_PASSWORD")
        self.MAIL_DEFAULT_SENDER = _env("MAIL_DEFAULT_SENDER")
        # Seconds any one step of an SMTP exchange may take (connect, each command).
        self.MAIL_TIMEOUT = _env_float("MAIL_TIMEOUT", 10.0, 1, 120)
        self.MAIL_DEBUG = False  # smtplib's debug output would print the mails, links included
        self.MAIL_SUPPRESS_SEND = False
        # Sign-up mails a link; until it is opened, the account's API key answers BAD_KEY.
        self.REQUIRE_EMAIL_VERIFICATION = _env_bool("REQUIRE_EMAIL_VERIFICATION", False)
        # Admins must set up two-factor sign-in before any console page (production: on).
        self.ADMIN_REQUIRE_2FA = _env_bool("ADMIN_REQUIRE_2FA", False)
        # Two-factor codes tried per account (right or wrong), and mails asked for per account.
        self.TWO_FACTOR_RATE_LIMIT = _env("TWO_FACTOR_RATE_LIMIT", "5 per minute;30 per hour")
        self.MAIL_RATE_LIMIT = _env("MAIL_RATE_LIMIT", "3 per 10 minutes;10 per day")

        # `Authorization: Bearer <HEALTHZ_TOKEN>` shows /healthz's private figures (the
        # upstream balance) to monitoring; unset, only logged-in admins see them.
        self.HEALTHZ_TOKEN = _env("HEALTHZ_TOKEN")
        # `Authorization: Bearer <METRICS_TOKEN>` reads /metrics (docs/metrics.md); unset,
        # /metrics answers 404 and nothing is counted per request.
        self.METRICS_TOKEN = _env("METRICS_TOKEN")

        # Reverse proxies in front of the app (nginx, a load balancer): how many hops of
        # X-Forwarded-For/-Proto to believe, so rate limits see the client's address.
        self.TRUSTED_PROXIES = _env_int("TRUSTED_PROXIES", 0, 0, 10)

        self.SESSION_COOKIE_HTTPONLY = True
        self.SESSION_COOKIE_SAMESITE = "Lax"
        self.REMEMBER_COOKIE_HTTPONLY = True
        self.REMEMBER_COOKIE_SAMESITE = "Lax"
        self.WTF_CSRF_TIME_LIMIT = None

    def validate(self) -> None:
        """Raise ConfigError when this configuration cannot run."""
        if self.UPSTREAM not in ("grizzly", "sandbox", "none"):
            raise ConfigError(
                f"UPSTREAM must be 'grizzly', 'sandbox' or 'none', got {self.UPSTREAM!r}"
            )
        if self.ROUTING_POLICY not in ("priority", "cheapest"):
            raise ConfigError(
                f"ROUTING_POLICY must be 'priority' or 'cheapest', got {self.ROUTING_POLICY!r}"
            )
        if self.MAIL_USE_TLS and self.MAIL_USE_SSL:
            raise ConfigError("MAIL_USE_TLS and MAIL_USE_SSL exclude each other: set one")
        if self.MAIL_SERVER and not self.MAIL_DEFAULT_SENDER:
            raise ConfigError("MAIL_DEFAULT_SENDER is required with MAIL_SERVER")
        if self.HEALTHZ_TOKEN is not None and len(self.HEALTHZ_TOKEN) < 16:
            raise ConfigError("HEALTHZ_TOKEN must be at least 16 characters (or unset)")
        if self.METRICS_TOKEN is not None and len(self.METRICS_TOKEN) < 16:
            raise ConfigError("METRICS_TOKEN must be at least 16 characters (or unset)")
        self.validate_telegram()
        from reseller.gateways import config_problem

        problem = config_problem(vars(self))
        if problem:
            raise ConfigError(problem)

    def validate_telegram(self) -> None:
        import re

        from reseller.gateways.stars import parse_rate

        secret = self.TELEGRAM_WEBHOOK_SECRET
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{16,256}", secret):
            raise ConfigError(
                "TELEGRAM_WEBHOOK_SECRET must be 16 to 256 characters of A-Z, a-z, 0-9, _ and -"
            )
        rate = self.TELEGRAM_STARS_RATE
        if rate is not None and parse_rate(rate) is None:
            raise ConfigError(f"TELEGRAM_STARS_RATE must be a positive number, got {rate!r}")
        token = self.TELEGRAM_BOT_TOKEN
        if token is not None and not re.fullmatch(r"\d+:[A-Za-z0-9_-]+", token):
            raise ConfigError("TELEGRAM_BOT_TOKEN must look like 123456:ABC-DEF… (from @BotFather)")


class DevelopmentConfig(Config):
    ENV_NAME = "development"

    def __init__(self) -> None:
        super().__init__()
        self.DEBUG = True
        self.SECRET_KEY = self.SECRET_KEY or DEVELOPMENT_SECRET_KEY
        self.SQLALCHEMY_DATABASE_URI = self.SQLALCHEMY_DATABASE_URI or (
            "sqlite:///" + str(BASE_DIR / "instance" / "reseller.sqlite")
        )
        self.UPSTREAM = _env("UPSTREAM", "sandbox")
        self.WEBHOOK_ALLOW_PRIVATE_TARGETS = _env_bool("WEBHOOK_ALLOW_PRIVATE_TARGETS", True)


class TestConfig(Config):
    ENV_NAME = "testing"
    __test__ = False  # not a pytest test class

    def __init__(self) -> None:
        super().__init__()
        self.TESTING = True
        self.SECRET_KEY = TEST_SECRET_KEY
        self.SQLALCHEMY_DATABASE_URI = (
            normalise_database_url(_env("TEST_DATABASE_URL")) or "sqlite://"
        )
        self.UPSTREAM = "sandbox"
        self.SANDBOX_CODE_DELAY = 5
        self.WEBHOOK_ALLOW_PRIVATE_TARGETS = True  # receivers in tests listen on 127.0.0.1
        self.RATELIMIT_ENABLED = False
        self.RATELIMIT_STORAGE_URI = "memory://"
        self.WTF_CSRF_ENABLED = False
        self.SERVER_NAME = None


class ProductionConfig(Config):
    ENV_NAME = "production"

    def __init__(self) -> None:
        super().__init__()
        self.SESSION_COOKIE_SECURE = True
        self.REMEMBER_COOKIE_SECURE = True
        self.PREFERRED_URL_SCHEME = "https"
        self.ADMIN_REQUIRE_2FA = _env_bool("ADMIN_REQUIRE_2FA", True)
        # A pooled connection for every gunicorn thread (8 by default): past the pool, each
        # request would open and close its own database connection.
        uri = self.SQLALCHEMY_DATABASE_URI or ""
        if uri != "sqlite://" and ":memory:" not in uri:  # in-memory SQLite has no pool
            self.SQLALCHEMY_ENGINE_OPTIONS["pool_size"] = _env_int(
                "DATABASE_POOL_SIZE", 10, 1, 1000
            )
            # The connection returned last is handed out next (SQLAlchemy's LIFO pool): a
            # quiet spell's few requests reuse one warm connection (its server process, its
            # prepared statements) instead of rotating through every one a busy spell opened.
            self.SQLALCHEMY_ENGINE_OPTIONS["pool_use_lifo"] = True

    def validate(self) -> None:
        super().validate()
        if not self.SECRET_KEY:
            raise ConfigError("SECRET_KEY is not set: production refuses to start without it")
        if self.SECRET_KEY in PUBLISHED_SECRET_KEYS:
            raise ConfigError(
                "SECRET_KEY is a published default: production refuses to start with it "
                f"(generate one: {GENERATE_SECRET_KEY})"
            )
        if len(self.SECRET_KEY) < MIN_SECRET_KEY_LENGTH:
            raise ConfigError(
                f"SECRET_KEY must be at least {MIN_SECRET_KEY_LENGTH} characters: production "
                f"refuses to start with a shorter one (generate one: {GENERATE_SECRET_KEY})"
            )
        if not self.SQLALCHEMY_DATABASE_URI:
            raise ConfigError("DATABASE_URL is not set: production refuses to start without it")
        if self.UPSTREAM == "grizzly" and not self.GRIZZLY_API_KEY:
            raise ConfigError(
                "GRIZZLY_API_KEY is not set: production refuses to start without it "
                "(set UPSTREAM=sandbox to run the sandbox on purpose, or UPSTREAM=none to "
                "add providers with `flask providers add` only)"
            )


CONFIGS = {
    "production": ProductionConfig,
    "development": DevelopmentConfig,
    "testing": TestConfig,
}


def config_from_env() -> Config:
    """A configuration for the environment named by RESELLER_ENV (production when unset)."""
    name = _env("RESELLER_ENV", "production")
    try:
        return CONFIGS[name]()
    except KeyError:
        raise ConfigError(
            f"RESELLER_ENV must be one of {', '.join(CONFIGS)}, got {name!r}"
        ) from None
