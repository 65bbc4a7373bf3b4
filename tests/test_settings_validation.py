"""Numeric settings are finite numbers in range, from the console and from the environment
(a bad variable stops start-up with one line naming it); the default country for getNumber."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from config import ConfigError, TestConfig
from reseller import create_app
from reseller.extensions import db
from reseller.models import Activation, Setting
from reseller.services import settings
from tests.conftest import Api, api_key_of


def _form(**changes) -> dict:
    data = {spec.key: settings.raw_value(spec.key) for spec in settings.SPECS}
    return data | changes


@pytest.mark.parametrize(
    "key, value",
    [
        ("markup_percent", "nan"),
        ("markup_percent", "NaN"),
        ("markup_percent", "inf"),
        ("markup_percent", "-inf"),
        ("markup_percent", "1e400"),
        ("markup_percent", "-5"),
        ("minimum_price", "nan"),
        ("minimum_price", "-0.10"),
        ("low_balance_threshold", "Infinity"),
        ("activation_lifetime", "nan"),
        ("poll_interval", "0"),
        ("activation_lifetime", "9" * 400),  # past any float
        ("default_country", "atlantis"),
        ("default_country", ""),
    ],
)
def test_console_refuses_non_finite_and_out_of_range_numbers(client, boss, stocked, key, value):
    if key in ("markup_percent", "minimum_price"):  # the Pricing page's
        data = {k: settings.raw_value(k) for k in ("markup_percent", "minimum_price")}
        response = client.post("/admin/pricing/global", data=data | {key: value})
    else:
        response = client.post("/admin/settings", data=_form(**{key: value}))
    assert response.status_code == 400
    assert db.session.execute(select(Setting)).first() is None  # nothing stored
    settings.forget()
    # Quotes still work: the global markup was never replaced by nan.
    assert Api(client, api_key_of(boss)).text("getPrices", service="tg").startswith("{")


def test_a_stored_nan_from_an_older_version_is_ignored(app, stocked, make_user, client):
    db.session.add(Setting(key="markup_percent", value="nan"))
    db.session.commit()
    settings.forget()
    assert settings.get("markup_percent") == 30.0
    user = make_user(balance="5.00")
    assert (
        Api(client, api_key_of(user))
        .text("getNumber", service="tg", country="us")
        .startswith("ACCESS_NUMBER:")
    )


@pytest.mark.parametrize(
    "name, value, words",
    [
        ("PRICE_MARKUP_PERCENT", "nan", "finite"),
        ("PRICE_MARKUP_PERCENT", "inf", "finite"),
        ("PRICE_MARKUP_PERCENT", "-1", "at least 0"),
        ("PRICE_MARKUP_PERCENT", "20000", "at most 10000"),
        ("PRICE_MINIMUM", "NaN", "not a valid value"),
        ("PRICE_MINIMUM", "-1", "not a valid value"),
        ("LOW_BALANCE_THRESHOLD", "inf", "not a valid value"),
        ("ACTIVATION_LIFETIME", "5", "at least 60"),
        ("UPSTREAM_POLL_INTERVAL", "0", "at least 1"),
        ("MAX_ACTIVE_ACTIVATIONS", "-3", "at least 0"),
        ("UPSTREAM_READ_TIMEOUT", "nan", "finite"),
        ("UPSTREAM_CONNECT_TIMEOUT", "0", "0.1 to 300"),
        ("UPSTREAM_READ_TIMEOUT", "-inf", "finite"),
        ("SETTLE_AFTER", "-1", "0 to 86400"),
        ("PRICE_REFRESH_INTERVAL", "0", "10 to 86400"),
        ("TRUSTED_PROXIES", "-1", "0 to 10"),
        ("DEFAULT_COUNTRY", "atlantis", "not a country id"),
    ],
)
def test_a_bad_environment_value_stops_start_up_with_one_line(monkeypatch, name, value, words):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        create_app(TestConfig())
    message = str(info.value)
    assert name in message and words in message
    assert "\n" not in message


def test_good_environment_values_are_used(monkeypatch, tmp_path):
    monkeypatch.setenv("PRICE_MARKUP_PERCENT", "12.5")
    monkeypatch.setenv("DEFAULT_COUNTRY", "gb")
    config = TestConfig()
    config.SQLALCHEMY_DATABASE_URI = f"sqlite:///{tmp_path / 'env.sqlite'}"
    app = create_app(config)
    with app.app_context():
        db.create_all()
        assert settings.get("markup_percent") == 12.5
        assert settings.get("default_country") == 16


# --- getNumber without a country ------------------------------------------------------------


@pytest.mark.parametrize("country", [None, "", "  "])
def test_get_number_without_country_buys_in_the_default_country(api, country):
    params = {"service": "tg"} if country is None else {"service": "tg", "country": country}
    answer = api.text("getNumber", **params)
    assert answer.startswith("ACCESS_NUMBER:"), answer
    activation = db.session.execute(select(Activation)).scalar_one()
    assert activation.country_id == 0  # SMS-Activate's default: Russia


def test_default_country_follows_the_console_setting(client, boss, api):
    response = client.post("/admin/settings", data=_form(default_country="gb"))
    assert response.status_code == 302
    answer = api.json("getNumber", service="tg")
    assert answer["status"] == "ACCESS_NUMBER", answer
    assert db.session.get(Activation, answer["activationId"]).country_id == 16
    v2 = api("getNumberV2", service="tg").get_json()
    assert v2["countryCode"] == "16"


def test_a_default_country_not_on_sale_answers_bad_country(client, boss, api):
    client.post("/admin/settings", data=_form(default_country="999"))
    assert api.text("getNumber", service="tg") == "BAD_COUNTRY"
    assert db.session.execute(select(Activation)).first() is None


def test_docs_page_names_the_default_country(client, boss, stocked):
    client.post("/admin/settings", data=_form(default_country="16"))
    page = client.get("/docs").get_data(as_text=True)
    assert "when left out or empty: United Kingdom (id 16)" in page


# --- the settings' one-row read agrees with the rows ---------------------------------------


def test_the_one_row_settings_read_agrees_with_the_setting_rows(app):
    """settings reads every stored text as one row (a column per setting): outside any
    transaction through db_reads.HotRead, inside one through the session, which then sees
    its own unflushed change. Both say what the Setting rows (the ORM) say."""

    def orm_texts():
        db.session.flush()
        rows = dict(db.session.execute(select(Setting.key, Setting.value)).all())
        return {spec.key: rows.get(spec.key) for spec in settings.SPECS}

    db.session.commit()
    empty = settings._stored_texts()
    assert empty == {spec.key: None for spec in settings.SPECS} == orm_texts()
    db.session.commit()
    settings.store("markup_percent", "12.5")
    settings.store("site_name", "Numbers & Co")
    db.session.add(Setting(key="no_longer_a_setting", value="x"))  # ignored, as before
    inside = settings._stored_texts()  # in the transaction, before any flush or commit
    assert inside["markup_percent"] == "12.5" and inside["site_name"] == "Numbers & Co"
    assert inside == orm_texts()
    db.session.commit()
    settings.forget()
    assert not db.session().in_transaction()
    outside = settings._stored_texts()
    assert not db.session().in_transaction()  # the read opened none
    assert outside == inside == orm_texts()
    assert settings.get("markup_percent") == 12.5 and settings.get("site_name") == "Numbers & Co"
