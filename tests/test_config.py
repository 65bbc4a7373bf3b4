import pytest

from config import (
    ConfigError,
    DevelopmentConfig,
    ProductionConfig,
    TestConfig,
    config_from_env,
    normalise_database_url,
)
from reseller import create_app

PROD_ENV = {
    "SECRET_KEY": "a-production-secret-of-forty-characters!",
    "DATABASE_URL": "postgres://u:p@db.example/reseller",
    "GRIZZLY_API_KEY": "gk",
}


@pytest.fixture
def clean_env(monkeypatch):
    for name in (
        "RESELLER_ENV",
        "SECRET_KEY",
        "DATABASE_URL",
        "UPSTREAM",
        "GRIZZLY_API_KEY",
        "GRIZZLY_API_URL",
        "SITE_NAME",
        "CURRENCY",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_production_is_the_default(clean_env):
    assert isinstance(config_from_env(), ProductionConfig)
    clean_env.setenv("RESELLER_ENV", "development")
    assert isinstance(config_from_env(), DevelopmentConfig)
    clean_env.setenv("RESELLER_ENV", "testing")
    assert isinstance(config_from_env(), TestConfig)
    clean_env.setenv("RESELLER_ENV", "staging")
    with pytest.raises(ConfigError, match="RESELLER_ENV"):
        config_from_env()


def test_postgres_url_is_normalised():
    assert normalise_database_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_database_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_database_url("sqlite:///x.db") == "sqlite:///x.db"


@pytest.mark.parametrize("missing", ["SECRET_KEY", "DATABASE_URL", "GRIZZLY_API_KEY"])
def test_production_refuses_to_start_without(clean_env, missing):
    for name, value in PROD_ENV.items():
        if name != missing:
            clean_env.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        create_app(ProductionConfig())
    message = str(info.value)
    assert missing in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "secret",
    [
        "x",
        "s3cret",
        "a" * 31,
        "dev-secret-key-not-for-production",  # development's default (33 characters)
        "test-secret-key",
        "change-me",  # deploy/reseller.env.example's placeholder
    ],
)
def test_production_refuses_a_short_or_published_secret_key(clean_env, secret):
    for name, value in PROD_ENV.items():
        clean_env.setenv(name, value)
    clean_env.setenv("SECRET_KEY", secret)
    with pytest.raises(ConfigError) as info:
        create_app(ProductionConfig())
    message = str(info.value)
    assert message.startswith("SECRET_KEY ")
    assert "\n" not in message
    assert len(secret) < 3 or secret not in message  # the key is not echoed to the log


def test_production_accepts_a_secret_key_of_32_characters(clean_env):
    for name, value in PROD_ENV.items():
        clean_env.setenv(name, value)
    clean_env.setenv("SECRET_KEY", "k" * 32)
    assert create_app(ProductionConfig()).config["SECRET_KEY"] == "k" * 32


def test_production_sandbox_only_when_named(clean_env):
    clean_env.setenv("SECRET_KEY", PROD_ENV["SECRET_KEY"])
    clean_env.setenv("DATABASE_URL", "sqlite://")
    clean_env.setenv("UPSTREAM", "sandbox")
    app = create_app(ProductionConfig())
    assert app.config["UPSTREAM"] == "sandbox"
    clean_env.setenv("UPSTREAM", "grizzly")
    with pytest.raises(ConfigError, match="GRIZZLY_API_KEY"):
        create_app(ProductionConfig())
    clean_env.setenv("UPSTREAM", "other")
    with pytest.raises(ConfigError, match="UPSTREAM"):
        create_app(ProductionConfig())


def test_production_cookies_are_secure(clean_env):
    for name, value in PROD_ENV.items():
        clean_env.setenv(name, value)
    app = create_app(ProductionConfig())
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql+psycopg://")
    assert app.config["UPSTREAM"] == "grizzly"
    assert app.config["GRIZZLY_API_URL"] == "https://api.grizzlysms.com/stubs/handler_api.php"
    assert app.config["CURRENCY"] == "USD"


def test_development_has_working_defaults(clean_env):
    config = DevelopmentConfig()
    assert config.SECRET_KEY
    assert config.SQLALCHEMY_DATABASE_URI.startswith("sqlite:///")
    assert "instance" in config.SQLALCHEMY_DATABASE_URI
    assert config.UPSTREAM == "sandbox"
    assert create_app(config).config["DEBUG"] is True


def test_site_name_is_shown_on_every_page(tmp_path, clean_env):
    from tests.conftest import make_config, reset_database

    app = create_app(make_config(tmp_path, SITE_NAME="Acme Numbers"))
    with app.app_context():
        from reseller.extensions import db

        reset_database()
        client = app.test_client()
        for path in ("/", "/docs", "/login", "/signup"):
            assert b"Acme Numbers" in client.get(path).data, path
        db.engine.dispose()


def test_production_pool_hands_out_the_connection_returned_last(clean_env, tmp_path):
    """A quiet spell after a busy one reuses one warm connection (on PostgreSQL its server
    process and its prepared statements) instead of rotating through every connection the
    busy spell opened, each cold."""
    from reseller.extensions import db

    clean_env.setenv("SECRET_KEY", PROD_ENV["SECRET_KEY"])
    clean_env.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'pool.sqlite'}")
    clean_env.setenv("UPSTREAM", "sandbox")
    app = create_app(ProductionConfig())
    with app.app_context():
        first, second = db.engine.raw_connection(), db.engine.raw_connection()
        first_driver, second_driver = first.driver_connection, second.driver_connection
        assert first_driver is not second_driver
        first.close()
        second.close()  # returned last
        again = db.engine.raw_connection()
        try:
            assert again.driver_connection is second_driver
        finally:
            again.close()
        db.engine.dispose()
