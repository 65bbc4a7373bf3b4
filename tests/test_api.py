"""The customer API: every action in both dialects and on both paths, every error token."""

import contextlib
import re

import pytest
from sqlalchemy import func, select

from reseller.extensions import db
from reseller.models import Activation, LedgerEntry, Service, User
from reseller.services import settings
from reseller.services.ledger import verify_ledger
from tests.conftest import Api, api_key_of, driver_statements

PATHS = ["/stubs/handler_api.php", "/api/customer"]
METHODS = ["GET", "POST-QUERY", "POST-FORM"]


def balance(user_id):
    db.session.expire_all()
    return db.session.get(User, user_id).balance


def ledger_rows():
    return db.session.execute(select(func.count(LedgerEntry.id))).scalar_one()


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("method", METHODS)
def test_get_balance_every_path_and_method(client, customer, path, method):
    api = Api(client, api_key_of(customer), path)
    response = api("getBalance", method=method)
    assert response.mimetype == "text/plain"
    assert response.get_data(as_text=True) == "ACCESS_BALANCE:10.00"
    response = api("getBalance", method=method, fmt="json")
    assert response.mimetype == "application/json"
    assert response.get_json() == {"balance": 10.0}


def test_unknown_parameters_are_ignored(api):
    body = api.text(
        "getBalance",
        ref="abc",
        ref_id="1",
        json="1",
        lang="en",
        start="0",
        limit="10",
        operator="any",
        forward="0",
        phoneException="7999",
        activationType="0",
    )
    assert body == "ACCESS_BALANCE:10.00"


def test_balance_always_has_a_decimal_point(client, make_user, stocked):
    user = make_user(email="round@example.com", balance="100")
    api = Api(client, api_key_of(user))
    assert api.text("getBalance") == "ACCESS_BALANCE:100.00"


@pytest.mark.parametrize("fmt", [None, "json"])
def test_bad_key(client, stocked, fmt):
    for key in (None, "", "wrong-key", "x" * 5000):
        params = {"action": "getBalance"}
        if key is not None:
            params["api_key"] = key
        if fmt:
            params["format"] = fmt
        response = client.get("/stubs/handler_api.php", query_string=params)
        assert response.status_code == 200
        if fmt:
            assert response.get_json() == {"error": "BAD_KEY"}
        else:
            assert response.get_data(as_text=True) == "BAD_KEY"


def test_disabled_account_answers_account_inactive(api, customer):
    customer.active = False
    db.session.commit()
    assert api.text("getBalance") == "ACCOUNT_INACTIVE"
    assert api.json("getBalance") == {"error": "ACCOUNT_INACTIVE"}
    assert api.text("getNumber", service="tg", country="us") == "ACCOUNT_INACTIVE"
    assert balance(customer.id) == 100_000


def test_api_use_is_recorded_at_most_once_a_minute(api, customer, clock):
    def last_activity():
        db.session.expire_all()
        return db.session.get(User, customer.id).last_activity_at

    assert last_activity() is None
    assert api.text("getBalance").startswith("ACCESS_BALANCE:")
    first = last_activity()
    assert first is not None
    clock.travel(30)
    api.text("getBalance")
    assert last_activity() == first  # within the minute: no write
    clock.travel(31)
    api.text("getBalance")
    second = last_activity()
    assert second > first
    clock.travel(61)
    assert api.text("getEverything") == "BAD_ACTION"
    assert last_activity() == second  # a refused call is not activity


@pytest.fixture
def activity_stamp_fails(monkeypatch):
    """The activity stamp writes, then its commit fails as on a locked SQLite database."""
    import sqlite3

    from sqlalchemy import update
    from sqlalchemy.exc import OperationalError

    from reseller.services import accounts

    calls = []

    def locked(caller, now):
        calls.append(caller.id)
        db.session.execute(update(User).where(User.id == caller.id).values(last_activity_at=now))
        raise OperationalError("COMMIT", {}, sqlite3.OperationalError("database is locked"))

    monkeypatch.setattr(accounts, "record_api_activity", locked)
    return calls


def test_a_failing_activity_stamp_never_changes_the_answer(
    api, customer, clock, runner, activity_stamp_fails
):
    """A committed purchase answers ACCESS_NUMBER, a committed refund ACCESS_CANCEL, even when
    the bookkeeping after them fails; the stamp is rolled back, the money stays right."""
    body = api.text("getNumber", service="ot", country="12")
    assert re.fullmatch(r"ACCESS_NUMBER:\d+:\d+", body), body
    activation_id = int(body.split(":")[1])
    activation = db.session.get(Activation, activation_id)
    assert activation.status == "allocated"
    assert balance(customer.id) == 100_000 - activation.price
    data = api.json("getNumber", service="ot", country="12")
    assert data["status"] == "ACCESS_NUMBER"
    clock.travel(121)
    assert api.text("setStatus", id=activation_id, status="8") == "ACCESS_CANCEL"
    assert api.text("getStatus", id=activation_id) == "STATUS_CANCEL"
    assert len(activity_stamp_fails) == 4
    db.session.expire_all()
    assert db.session.get(User, customer.id).last_activity_at is None  # rolled back
    assert balance(customer.id) == 100_000 - db.session.get(Activation, data["activationId"]).price
    assert verify_ledger() == []
    assert runner.invoke(args=["ledger", "verify"]).exit_code == 0


@pytest.mark.parametrize("action", ["", "getEverything", "GETBALANCE", "<script>"])
def test_bad_action(api, action):
    assert api.text(action) == "BAD_ACTION"
    assert api.json(action) == {"error": "BAD_ACTION"}


def test_get_number_classic(api, customer):
    body = api.text("getNumber", service="tg", country="us")
    match = re.fullmatch(r"ACCESS_NUMBER:(\d+):(\d+)", body)
    assert match, body
    activation = db.session.get(Activation, int(match.group(1)))
    assert activation.user_id == customer.id
    assert activation.phone == match.group(2)
    assert activation.status == "allocated"
    assert activation.country_id == 187
    assert activation.price == 16_900  # 1.30 upstream + 30 % = 1.69
    assert balance(customer.id) == 100_000 - 16_900
    assert verify_ledger() == []


@pytest.mark.parametrize(
    "country, expected",
    [("US", 187), ("us", 187), ("187", 187), ("12", 12), ("gb", 16), ("UK", 16)],
)
def test_country_formats(api, country, expected):
    data = api.json("getNumber", service="tg", country=country)
    assert data["status"] == "ACCESS_NUMBER"
    assert db.session.get(Activation, data["activationId"]).country_id == expected


def test_get_number_json(api):
    data = api.json("getNumber", service="tg", country="12")
    assert data["status"] == "ACCESS_NUMBER"
    assert isinstance(data["activationId"], int)
    assert re.fullmatch(r"\+\d+", data["phone"])


@pytest.mark.parametrize(
    "params, classic, json_error",
    [
        ({"service": "zz", "country": "us"}, "BAD_SERVICE", "BAD_SERVICE"),
        ({"service": "", "country": "us"}, "BAD_SERVICE", "BAD_SERVICE"),
        ({"service": "tg", "country": "zz"}, "BAD_COUNTRY", "BAD_COUNTRY"),
        ({"service": "tg", "country": "999"}, "BAD_COUNTRY", "BAD_COUNTRY"),
        ({"service": "dr", "country": "12"}, "NO_NUMBERS", "NO_NUMBERS"),  # stock 0
        ({"service": "ds", "country": "16"}, "NO_NUMBERS", "NO_NUMBERS"),  # not sold there
        (
            {"service": "tg", "country": "us", "maxPrice": "1.00"},
            "WRONG_MAX_PRICE:1.69",
            "WRONG_MAX_PRICE",
        ),
        ({"service": "tg", "country": "us", "maxPrice": "abc"}, "BAD_PARAMETER", "BAD_PARAMETER"),
        ({"service": "tg", "country": "us", "maxPrice": "-1"}, "BAD_PARAMETER", "BAD_PARAMETER"),
    ],
)
def test_get_number_refusals_change_nothing(api, customer, params, classic, json_error):
    rows = ledger_rows()
    assert api.text("getNumber", **params) == classic
    data = api.json("getNumber", **params)
    assert data["error"] == json_error
    if json_error == "WRONG_MAX_PRICE":
        assert data["minPrice"] == 1.69
    assert balance(customer.id) == 100_000
    assert ledger_rows() == rows
    assert db.session.execute(select(func.count(Activation.id))).scalar_one() == 0


def test_max_price_at_or_above_our_price_buys(api):
    assert api.text("getNumber", service="tg", country="us", maxPrice="1.69").startswith(
        "ACCESS_NUMBER:"
    )


def test_no_balance(client, make_user, stocked):
    poor = make_user(email="poor@example.com", balance="1.00")
    api = Api(client, api_key_of(poor))
    assert api.text("getNumber", service="tg", country="us") == "NO_BALANCE"
    assert api.json("getNumber", service="tg", country="us") == {"error": "NO_BALANCE"}
    assert balance(poor.id) == 10_000
    assert db.session.execute(select(func.count(Activation.id))).scalar_one() == 0


def test_disabled_service_is_bad_service(api, customer):
    db.session.get(Service, "tg").enabled = False
    db.session.commit()
    assert api.text("getNumber", service="tg", country="us") == "BAD_SERVICE"
    assert balance(customer.id) == 100_000


def test_active_activation_cap(api, customer):
    settings.store("max_active_activations", "2")
    db.session.commit()
    assert api.text("getNumber", service="ot", country="12").startswith("ACCESS_NUMBER")
    assert api.text("getNumber", service="ot", country="12").startswith("ACCESS_NUMBER")
    before = balance(customer.id)
    assert api.text("getNumber", service="ot", country="12") == "TOO_MANY_ACTIVATIONS"
    assert api.json("getNumber", service="ot", country="12") == {"error": "TOO_MANY_ACTIVATIONS"}
    assert balance(customer.id) == before
    assert verify_ledger() == []


def test_get_number_v2_types_and_order_id(api, customer):
    response = api("getNumberV2", service="tg", country="12", orderId="order-1")
    assert response.mimetype == "application/json"
    data = response.get_json()
    assert isinstance(data["activationId"], int)
    assert isinstance(data["phoneNumber"], str) and data["phoneNumber"].isdigit()
    assert data["activationCost"] == 0.33
    assert data["currency"] == 840
    assert data["countryCode"] == "12"
    assert data["canGetAnotherSms"] == "1"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", data["activationTime"])
    after_first = balance(customer.id)
    assert (
        api.text("getNumberV2", service="tg", country="12", orderId="order-1")
        == "ORDER_ALREADY_EXISTS"
    )
    assert api.json("getNumberV2", service="tg", country="12", orderId="order-1") == {
        "error": "ORDER_ALREADY_EXISTS"
    }
    assert balance(customer.id) == after_first
    # Another order id buys again.
    assert "activationId" in api.json("getNumberV2", service="tg", country="12", orderId="order-2")


def test_order_ids_are_per_customer(client, api, make_user):
    api.json("getNumberV2", service="tg", country="12", orderId="same")
    other = make_user(email="other@example.com", balance="5.00")
    other_api = Api(client, api_key_of(other))
    assert "activationId" in other_api.json(
        "getNumberV2", service="tg", country="12", orderId="same"
    )


def test_status_flow_classic(api, clock):
    body = api.text("getNumber", service="tg", country="12")
    activation_id = body.split(":")[1]
    assert api.text("getStatus", id=activation_id) == "STATUS_WAIT_CODE"
    assert api.json("getStatus", id=activation_id) == {"status": "STATUS_WAIT_CODE"}
    v2 = api("getStatusV2", id=activation_id).get_json()
    assert v2 == {"verificationType": 0, "sms": None, "call": None}
    clock.travel(6)
    body = api.text("getStatus", id=activation_id)
    assert re.fullmatch(r"STATUS_OK:\d{6}", body)
    code = body.split(":", 1)[1]
    assert api.json("getStatus", id=activation_id) == {"status": "STATUS_OK", "code": code}
    v2 = api("getStatusV2", id=activation_id).get_json()
    assert v2["sms"]["code"] == code and v2["call"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", v2["sms"]["dateTime"])
    # Another SMS: the last code is shown while waiting, then the new one.
    assert api.text("setStatus", id=activation_id, status="3") == "ACCESS_RETRY_GET"
    assert api.text("getStatus", id=activation_id) == f"STATUS_WAIT_RETRY:{code}"
    clock.travel(6)
    new = api.text("getStatus", id=activation_id)
    assert new.startswith("STATUS_OK:") and new != f"STATUS_OK:{code}"
    assert api.text("setStatus", id=activation_id, status="6") == "ACCESS_ACTIVATION"
    assert api.text("getStatus", id=activation_id) == new
    assert verify_ledger() == []


def test_codes_keep_leading_zeros(api, clock):
    # The sandbox's first activation's first code starts with a zero.
    activation_id = api.text("getNumber", service="tg", country="12").split(":")[1]
    clock.travel(6)
    body = api.text("getStatus", id=activation_id)
    assert body.startswith("STATUS_OK:0"), body
    assert api.json("getStatus", id=activation_id)["code"].startswith("0")


def test_set_status_json_answers(api, clock):
    activation_id = api.json("getNumber", service="ot", country="12")["activationId"]
    assert api.json("setStatus", id=activation_id, status="1") == {
        "status": "ACCESS_READY",
        "activationStatus": "ready",
    }
    assert api.json("setStatus", id=activation_id, status="8") == {"error": "EARLY_CANCEL_DENIED"}
    clock.travel(121)
    assert api.json("setStatus", id=activation_id, status="8") == {
        "status": "ACCESS_CANCEL",
        "activationStatus": "cancelled",
    }
    assert api.json("getStatus", id=activation_id) == {"status": "STATUS_CANCEL"}
    assert api.text("getStatusV2", id=activation_id) == "STATUS_CANCEL"


@pytest.mark.parametrize("raw_id", [str(2**31), "9" * 10, "9" * 18, "9" * 19])
def test_an_id_beyond_the_id_column_is_no_activation_and_changes_nothing(api, raw_id):
    """PostgreSQL refuses to compare its INTEGER id with a larger number: such an id must
    not reach SQL (it answered ERROR_SQL there) but be what it is, no activation."""
    activation_id = api.json("getNumber", service="ot", country="12")["activationId"]
    balance = api.text("getBalance")
    for action in ("getStatus", "getStatusV2", "getFullSms", "setStatus"):
        assert api.text(action, id=raw_id, status="8") == "NO_ACTIVATION", action
        assert api.json(action, id=raw_id, status="8") == {"error": "ACTIVATION_NOT_FOUND"}
    assert api.text("getBalance") == balance
    assert api.text("getStatus", id=activation_id) == "STATUS_WAIT_CODE"


@pytest.mark.parametrize("status", ["", "2", "9", "abc", "8.0", "-2"])
def test_bad_status_values(api, status):
    activation_id = api.json("getNumber", service="ot", country="12")["activationId"]
    assert api.text("setStatus", id=activation_id, status=status) == "BAD_STATUS"
    assert api.json("setStatus", id=activation_id, status=status) == {"error": "BAD_STATUS"}


@pytest.mark.parametrize("raw_id", ["", "abc", "-1", "0", "99999", "1 OR 1=1", "9" * 40])
def test_unknown_or_malformed_ids(api, raw_id):
    assert api.text("getStatus", id=raw_id) == "NO_ACTIVATION"
    assert api.json("getStatus", id=raw_id) == {"error": "ACTIVATION_NOT_FOUND"}
    assert api.text("setStatus", id=raw_id, status="8") == "NO_ACTIVATION"
    assert api.text("getStatusV2", id=raw_id) == "NO_ACTIVATION"
    assert api.text("getFullSms", id=raw_id) == "NO_ACTIVATION"
    assert api.json("getFullSms", id=raw_id) == {"error": "ACTIVATION_NOT_FOUND"}


def test_another_customers_activation_is_not_found(client, api, make_user, clock):
    activation_id = api.json("getNumber", service="ot", country="12")["activationId"]
    clock.travel(121)
    intruder = make_user(email="intruder@example.com", balance="5.00")
    other = Api(client, api_key_of(intruder))
    for action, params in (
        ("getStatus", {"id": activation_id}),
        ("getStatusV2", {"id": activation_id}),
        ("getFullSms", {"id": activation_id}),
        ("setStatus", {"id": activation_id, "status": "8"}),
        ("setStatus", {"id": activation_id, "status": "6"}),
    ):
        assert other.text(action, **params) == "NO_ACTIVATION"
        assert other.json(action, **params) == {"error": "ACTIVATION_NOT_FOUND"}
    assert other.json("getActiveActivations") == {"activations": []}
    assert db.session.get(Activation, activation_id).status == "allocated"
    assert balance(intruder.id) == 50_000


def test_active_activations(api, clock):
    assert api("getActiveActivations").get_json() == {"status": "error", "error": "NO_ACTIVATIONS"}
    assert api.json("getActiveActivations") == {"activations": []}
    first = api.json("getNumber", service="tg", country="12")["activationId"]
    api.json("getNumber", service="ot", country="12")
    clock.travel(6)
    api.text("getStatus", id=first)
    data = api("getActiveActivations").get_json()
    assert data["status"] == "success"
    rows = {row["activationId"]: row for row in data["activeActivations"]}
    row = rows[str(first)]
    assert row["serviceCode"] == "tg"
    assert isinstance(row["activationStatus"], str)
    assert isinstance(row["canGetAnotherSms"], str)
    assert isinstance(row["smsCode"], list)
    assert row["countryCode"] == "12" and row["currency"] == 840
    assert row["phoneNumber"].isdigit()
    json_rows = api.json("getActiveActivations")["activations"]
    assert {r["id"] for r in json_rows} == {first, first + 1}
    sample = next(r for r in json_rows if r["id"] == first)
    assert sample["status"] == "code_received"
    assert sample["phone_number"].startswith("+")
    assert sample["service_code"] == "tg"


def test_get_prices_only_buyable(api):
    data = api("getPrices").get_json()
    assert data["12"]["tg"] == {"cost": 0.33, "count": 120}
    assert "dr" not in data["12"]  # out of stock
    assert api.json("getPrices") == data
    assert set(api("getPrices", service="tg").get_json()["187"]) == {"tg"}
    assert list(api("getPrices", country="us").get_json()) == ["187"]
    assert api("getPrices", service="tg", country="gb").get_json() == {
        "16": {"tg": {"cost": 1.17, "count": 44}}
    }
    assert api.text("getPrices", country="zz") == "BAD_COUNTRY"
    db.session.get(Service, "tg").enabled = False
    db.session.commit()
    assert "tg" not in api("getPrices").get_json()["12"]


def test_get_countries_and_services(api):
    countries = api("getCountries").get_json()
    assert countries["187"]["eng"] == "USA" and countries["187"]["iso"] == "us"
    assert countries["12"]["id"] == 12
    services = api("getServicesList").get_json()
    assert services["status"] == "success"
    assert {"code": "tg", "name": "Telegram"} in services["services"]
    assert api.json("getServicesList") == services


def test_sub_cent_upstream_costs_round_up_to_the_cent(api):
    # ds in country 12 costs 0.0545 upstream: +30 % = 0.07085 → 0.10 (minimum price).
    assert api("getPrices", service="ds", country="12").get_json()["12"]["ds"]["cost"] == 0.10


def test_api_rate_limit_answers_429_with_retry_after(tmp_path, make_user, stocked):
    from reseller import create_app
    from reseller.extensions import limiter
    from tests.conftest import make_config

    app = create_app(make_config(tmp_path, RATELIMIT_ENABLED=True, API_RATE_LIMIT="3 per minute"))
    with app.app_context():
        limiter.reset()
        user = make_user(email="fast@example.com")
        key = api_key_of(user)
        client = app.test_client()
        codes = [
            client.get(
                "/stubs/handler_api.php", query_string={"api_key": key, "action": "getBalance"}
            )
            for _ in range(4)
        ]
        assert [r.status_code for r in codes] == [200, 200, 200, 429]
        assert codes[-1].headers.get("Retry-After")
        # The limit is per key: another key is not affected.
        other = make_user(email="slow@example.com")
        response = client.get(
            "/stubs/handler_api.php",
            query_string={"api_key": api_key_of(other), "action": "getBalance"},
        )
        assert response.status_code == 200
        limiter.reset()
        db.session.remove()


@pytest.mark.parametrize("action", ["getBalance", "getStatus"])
def test_hot_reads_need_no_transaction(api, customer, action):
    """getBalance, and a getStatus whose upstream poll is not due, read outside any
    transaction: on SQLite they answer while another process holds the write lock (they
    would otherwise wait up to the busy timeout); on PostgreSQL no BEGIN/ROLLBACK is sent."""
    import sqlite3
    import threading
    import time

    params, expected, tables = {}, "ACCESS_BALANCE:10.00", ["FROM users"]
    if action == "getStatus":
        bought = api.text("getNumber", service="tg", country="12")
        params = {"id": bought.split(":")[1]}  # its first poll is an interval away
        expected = "STATUS_WAIT_CODE"
        tables.append("JOIN activations")  # read with the key (the same statement)
    engine = db.engine
    assert api.text(action, **params) == expected  # the once-a-minute activity write, now
    db.session.rollback()  # and the test's own session lets go of the database
    if engine.dialect.name == "sqlite":
        locker = sqlite3.connect(
            engine.url.database, isolation_level=None, timeout=5, check_same_thread=False
        )
        locker.execute("BEGIN IMMEDIATE")  # a writer elsewhere holds the database
        releaser = threading.Timer(8, locker.rollback)
        releaser.start()
        try:
            started = time.monotonic()
            assert api.text(action, **params) == expected
            assert time.monotonic() - started < 4
        finally:
            releaser.cancel()
            locker.rollback()
            locker.close()
    else:
        import psycopg

        sent = []
        execute = psycopg.Cursor.execute

        def recording(cursor, query, *args, **kwargs):  # every statement psycopg sends
            sent.append((str(query), cursor.connection.autocommit))
            return execute(cursor, query, *args, **kwargs)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(psycopg.Cursor, "execute", recording)
            assert api.text(action, **params) == expected
        assert [t for t in tables if any(t in statement for statement, _ in sent)] == tables
        assert len(sent) == 1
        assert all(autocommit is True for _, autocommit in sent)  # psycopg sends no BEGIN
        with engine.connect() as connection:
            assert connection.get_isolation_level() != "AUTOCOMMIT"  # the pool was reset


def test_the_core_key_lookup_agrees_with_the_orm(app, make_user, clock):
    """accounts.api_caller reads the account behind a key with one Core statement built at
    import; loading the User through the ORM must give the same answer for every kind of
    account and key."""
    from reseller.models import utcnow
    from reseller.services import accounts

    plain = make_user(email="plain@example.com")
    rich = make_user(email="rich@example.com", balance="12.34")
    stamped = make_user(email="stamped@example.com", balance="0.01")
    inactive = make_user(email="off@example.com", balance="5.00")
    stamped.last_activity_at = utcnow().replace(microsecond=0)
    stamped.email_verified_at = utcnow().replace(microsecond=0)
    inactive.active = False
    db.session.commit()
    keys = [api_key_of(u) for u in (plain, rich, stamped, inactive)]
    keys += ["no-such-key", "", " " + keys[0], keys[0].upper(), "x" * 201]
    for key in keys:
        db.session.expire_all()
        orm = db.session.execute(
            select(User).where(User.api_key_hash == accounts.api_key_digest(key))
        ).scalar_one_or_none()
        if len(key) > 200:
            orm = None  # refused before any lookup
        expected = (
            None
            if orm is None
            else accounts.ApiCaller(
                orm.id, orm.active, orm.balance, orm.last_activity_at, orm.email_verified_at
            )
        )
        assert accounts.api_caller(key) == expected, key[:12]
    assert sum(accounts.api_caller(key) is not None for key in keys) == 4
    # …and it runs the statement built at import, compiled once for this database.
    plan = accounts._CALLER_BY_KEY_HASH._plans[db.engine.dialect]
    accounts.api_caller(keys[1])
    accounts.api_caller(keys[2])
    assert accounts._CALLER_BY_KEY_HASH._plans[db.engine.dialect] is plan


def test_the_api_works_on_in_memory_sqlite(tmp_path):
    """In-memory SQLite keeps one shared connection (StaticPool): the key lookup's own
    autocommit read works there and leaves a transaction the session has open intact."""
    from sqlalchemy import text

    from reseller import create_app
    from reseller.services import accounts, wallet
    from tests.conftest import make_config

    config = make_config(tmp_path, SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True})
    config.SQLALCHEMY_DATABASE_URI = "sqlite://"
    app = create_app(config)
    with app.app_context():
        db.create_all()
        user = accounts.create_user("memory@example.com", "password123")
        wallet.adjust(user.id, 12_340, note="test balance")
        key = api_key_of(user)
        assert Api(app.test_client(), key).text("getBalance") == "ACCESS_BALANCE:1.23"

        db.session.execute(text("UPDATE users SET email = 'renamed@example.com'"))  # not committed
        assert accounts.api_caller(key).id == user.id
        renamed = db.session.execute(text("SELECT email FROM users")).scalar_one()
        assert renamed == "renamed@example.com"  # the open transaction is intact
        db.session.rollback()
        # getStatus's read of the key with the activation, on the shared connection too.
        activation = Activation(
            user_id=user.id,
            service="tg",
            country_id=12,
            status="cancelled",
            price=0,
            upstream_name="sandbox",
        )
        db.session.add(activation)
        db.session.commit()
        assert Api(app.test_client(), key).text("getStatus", id=activation.id) == "STATUS_CANCEL"
        assert Api(app.test_client(), key).text("getStatus", id="999") == "NO_ACTIVATION"
        db.session.remove()


def test_the_key_is_digested_once_per_call_for_the_limit_and_the_lookup(api, monkeypatch):
    from reseller.services import accounts

    digests = []
    real = accounts.api_key_digest

    def counting(key):
        digests.append(key)
        return real(key)

    monkeypatch.setattr(accounts, "api_key_digest", counting)
    for expected in ("ACCESS_BALANCE:10.00", "ACCESS_BALANCE:10.00"):
        assert api.text("getBalance") == expected
    assert digests == [api.key, api.key]  # one per request, none carried to the next


# --- getStatus: which answer wins, and what a poll costs ----------------------------------

NOT_FOUND = {"text": "NO_ACTIVATION", "json": {"error": "ACTIVATION_NOT_FOUND"}}
WAITING = {
    ("getStatus", "text"): "STATUS_WAIT_CODE",
    ("getStatus", "json"): {"status": "STATUS_WAIT_CODE"},
    ("getStatusV2", "text"): {"verificationType": 0, "sms": None, "call": None},
    ("getStatusV2", "json"): {"verificationType": 0, "sms": None, "call": None},
    ("getFullSms", "text"): "STATUS_WAIT_CODE",
    ("getFullSms", "json"): {"status": "STATUS_WAIT_CODE"},
}


def _error(token: str, fmt: str):
    return token if fmt == "text" else {"error": token}


def _answer(response, fmt: str):
    assert response.status_code == 200
    if response.mimetype == "application/json":
        return response.get_json()
    assert fmt == "text"
    return response.get_data(as_text=True)


@pytest.fixture
def poll_parties(client, api, make_user):
    """Keys and ids for getStatus: the customer's own waiting activation, another active
    customer's, and one of a disabled account; keys that name nobody."""
    other = make_user(email="other@example.com", balance="5.00")
    idle = make_user(email="idle@example.com", balance="5.00")
    own = api.json("getNumber", service="ot", country="12")["activationId"]
    theirs = Api(client, api_key_of(other)).json("getNumber", service="ot", country="12")
    idles = Api(client, api_key_of(idle)).json("getNumber", service="ot", country="12")
    idle.active = False
    db.session.commit()
    keys = {
        "own": api.key,
        "other": api_key_of(other),
        "idle": api_key_of(idle),
        "unknown": "no-such-key",
        "blank": "   ",
        "empty": "",
        "too long": "x" * 201,
        "absent": None,
    }
    ids = {
        "own": str(own),
        "other": str(theirs["activationId"]),
        "idle": str(idles["activationId"]),
        "padded own": f"  {own}\t",
        "nonexistent": "999999",
        "largest id": str(2**31 - 1),
        "beyond the id column": str(2**31),
        "18 digits": "9" * 18,
        "malformed": "abc",
        "negative": "-1",
        "superscript": "²",
        "19 digits": "9" * 19,
        "empty": "",
        "absent": None,
        "with NUL": f"{own}\x00",
        "injection": f"{own} OR 1=1",
    }
    return keys, ids


def _expected_poll(key_name: str, id_name: str, action: str, fmt: str):
    """What getStatus answered before the poll read the key and the activation together:
    the key first (missing or unknown, then a disabled account), then the id (a NUL in it,
    then malformed, then not this caller's)."""

    if key_name in ("unknown", "blank", "empty", "too long", "absent"):
        return _error("BAD_KEY", fmt)
    if key_name == "idle":
        return _error("ACCOUNT_INACTIVE", fmt)
    if id_name == "with NUL":
        return _error("BAD_PARAMETER", fmt)
    owner = "own" if id_name == "padded own" else id_name
    if owner == key_name:
        return WAITING[action, fmt]
    return NOT_FOUND[fmt]


@pytest.mark.parametrize("action", ["getStatus", "getStatusV2", "getFullSms"])
@pytest.mark.parametrize("fmt", ["text", "json"])
def test_get_status_error_precedence(client, poll_parties, action, fmt):
    """Every key against every id, both dialects: a bad key wins over everything, a
    disabled account over any id, a NUL in the id over its form, and a malformed,
    nonexistent or foreign id is NO_ACTIVATION."""
    keys, ids = poll_parties
    wrong = []
    for key_name, key in keys.items():
        for id_name, raw_id in ids.items():
            params = {"action": action, "api_key": key, "id": raw_id}
            if fmt == "json":
                params["format"] = "json"
            params = {name: value for name, value in params.items() if value is not None}
            got = _answer(client.get(PATHS[0], query_string=params), fmt)
            expected = _expected_poll(key_name, id_name, action, fmt)
            if got != expected:
                wrong.append((key_name, id_name, got, expected))
    assert wrong == []


def test_a_poll_records_the_activity_only_when_it_answers(client, api, customer):
    """The once-a-minute activity write follows a status answer, not an error."""
    own = api.json("getNumber", service="ot", country="12")["activationId"]

    def forget_activity():
        db.session.get(User, customer.id).last_activity_at = None
        db.session.commit()

    def activity():
        db.session.expire_all()
        return db.session.get(User, customer.id).last_activity_at

    for action in ("getStatus", "getStatusV2", "getFullSms"):
        for raw_id in ("999999", "abc", f"{own}\x00"):
            forget_activity()
            assert api(action, id=raw_id).get_data(as_text=True) in (
                "NO_ACTIVATION",
                "BAD_PARAMETER",
            )
            assert activity() is None, raw_id
        forget_activity()
        api(action, id=own)
        assert activity() is not None


def test_a_due_poll_asks_the_upstream_within_the_web_budget(api, clock, monkeypatch):
    """A getStatus whose poll slot has come goes through refresh_status with the request's
    poll budget; one that is not due does not."""
    from reseller.services import activations

    calls = []
    real = activations.refresh_status

    def spying(activation, **kwargs):
        calls.append((activation.id, kwargs.get("budget")))
        return real(activation, **kwargs)

    monkeypatch.setattr(activations, "refresh_status", spying)
    own = api.json("getNumber", service="tg", country="12")["activationId"]
    for action in ("getStatus", "getStatusV2"):
        api(action, id=own)
    assert calls == []
    clock.travel(6)
    assert api.text("getStatus", id=own).startswith("STATUS_OK:")
    assert len(calls) == 1 and calls[0][0] == own
    assert isinstance(calls[0][1], activations.PollBudget)


@contextlib.contextmanager
def statements_sent():
    """Every SQL statement handed to the database driver while the block runs, whoever sends
    it: the session, or a db_reads.HotRead on a raw pooled connection (which the engine's
    before_cursor_execute does not see). Also the transactions the engine begins."""
    from sqlalchemy import event

    engine = db.engine
    sent: list[str] = []
    begun: list[int] = []

    def on_begin(connection):
        begun.append(1)

    event.listen(engine, "begin", on_begin)
    try:
        with driver_statements(lambda sql, in_transaction: sent.append(sql)):
            yield sent, begun
    finally:
        event.remove(engine, "begin", on_begin)


@pytest.mark.parametrize("action", ["getStatus", "getStatusV2", "getFullSms"])
@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_poll_that_is_not_due_is_one_statement(api, action, fmt):
    """A getStatus whose upstream poll is not due reads the key and the activation with one
    statement, and begins no transaction."""
    own = api.json("getNumber", service="ot", country="12")["activationId"]
    api.text("getBalance")  # the once-a-minute activity write is done
    db.session.commit()  # the test's session holds no connection
    with statements_sent() as (sent, begun):
        response = api(action, fmt="json" if fmt == "json" else None, id=own)
    assert _answer(response, fmt) == WAITING[action, fmt]
    assert len(sent) == 1, sent
    assert "users" in sent[0] and "activations" in sent[0]
    assert begun == []
    # An error answer costs no more: the unknown key is one read too.
    with statements_sent() as (sent, begun):
        assert Api(api.client, "no-such-key").text(action, id=own) == "BAD_KEY"
    assert len(sent) == 1 and begun == []


def test_a_due_poll_reads_the_activation_with_its_claim(api, clock):
    """A getStatus whose poll is due: the key and activation in one read, then the poll
    slot's claim, which answers what the upstream call needs; the activation is read again
    only after the upstream's answer. (It was read twice more before: once through the ORM
    before the claim, once after it.) The claim and the read after it run outside any
    transaction: nothing holds SQLite's write lock around them or to the request's end."""
    own = api.json("getNumber", service="ot", country="12")["activationId"]
    api.text("getBalance")
    clock.travel(6)
    db.session.commit()
    with statements_sent() as (sent, begun):
        assert api.text("getStatus", id=own) == "STATUS_WAIT_CODE"
    assert "LEFT OUTER JOIN activations" in sent[0]  # the key and the activation
    claims = [i for i, s in enumerate(sent) if s.startswith("UPDATE activations SET next_poll")]
    assert len(claims) == 1 and "RETURNING" in sent[claims[0]], sent
    reads = [i for i, s in enumerate(sent) if "\nFROM activations" in s]
    assert len(reads) == 1 and reads[0] > claims[0], sent
    # The one transaction is the sandbox upstream's own (it keeps its numbers in this
    # database): before, the claim and the read after the answer each began one too.
    assert len(begun) == 1, sent
    if db.engine.dialect.name == "sqlite":  # SQLite's trace shows BEGIN and COMMIT too
        inside, in_transactions = False, []
        for statement in sent:
            if statement.startswith("BEGIN"):
                inside = True
            elif statement.startswith(("COMMIT", "ROLLBACK")):
                inside = False
            elif inside:
                in_transactions.append(statement)
        assert in_transactions and all("sandbox_activations" in s for s in in_transactions)


# --- setStatus: the key and the activation in one read ----------------------------------


def _state_of_everyone():
    db.session.expire_all()
    return (
        sorted(db.session.execute(select(Activation.id, Activation.status)).all()),
        sorted(db.session.execute(select(User.id, User.balance, User.active)).all()),
        ledger_rows(),
    )


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_set_status_in_one_read_answers_as_the_two_reads(client, poll_parties, monkeypatch, fmt):
    """setStatus reads the key's account and the activation with one statement when the id
    can be one; every key against every id and every kind of status must get the answer
    the key check followed by setStatus's own read gives (a bad key over everything, a
    disabled account over any id or status, a NUL in a parameter, then a bad status, then
    an id that is not the caller's), and change nothing."""
    from reseller.api import routes

    keys, ids = poll_parties
    statuses = {"ready": "1", "unknown": "5", "with NUL": "1\x00", "absent": None}
    one_read = dict(routes.IN_ONE_READ)
    two_reads = {name: f for name, f in one_read.items() if name != "setStatus"}
    used = []
    real = routes.IN_ONE_READ["setStatus"]

    def counted(*args):
        used.append(1)
        return real(*args)

    one_read["setStatus"] = counted
    before = _state_of_everyone()
    wrong, seen = [], set()
    for key_name, key in keys.items():
        for id_name, raw_id in ids.items():
            for status_name, status in statuses.items():
                params = {"action": "setStatus", "api_key": key, "id": raw_id, "status": status}
                if fmt == "json":
                    params["format"] = "json"
                params = {name: value for name, value in params.items() if value is not None}
                answers = []
                for table in (one_read, two_reads):
                    monkeypatch.setattr(routes, "IN_ONE_READ", table)
                    answers.append(_answer(client.get(PATHS[0], query_string=params), fmt))
                seen.add(str(answers[1]))
                if answers[0] != answers[1]:
                    wrong.append((key_name, id_name, status_name, *answers))
    assert wrong == []
    assert used  # the one read answered the ids it can
    # …and the comparison covered every kind of answer.
    for token in ("BAD_KEY", "ACCOUNT_INACTIVE", "BAD_PARAMETER", "BAD_STATUS", "ACCESS_READY"):
        assert any(token in answer for answer in seen), (token, seen)
    assert any("NO_ACTIVATION" in a or "ACTIVATION_NOT_FOUND" in a for a in seen), seen
    assert _state_of_everyone() == before


def test_set_status_reads_once_before_it_acts(api):
    """A setStatus reads the key, the activation, its seller and the settings with one
    statement and begins no transaction when it changes nothing; an unknown key costs the
    same one read. (The key was read on its own before.)"""
    own = api.json("getNumber", service="ot", country="12")["activationId"]
    api.text("getBalance")  # the once-a-minute activity write is done
    db.session.commit()
    with statements_sent() as (sent, begun):
        assert api.text("setStatus", id=own, status="1") == "ACCESS_READY"
    assert len(sent) == 1, sent
    assert "users" in sent[0] and "activations" in sent[0] and "providers" in sent[0]
    assert begun == []
    with statements_sent() as (sent, begun):
        assert Api(api.client, "no-such-key").text("setStatus", id=own, status="8") == "BAD_KEY"
    assert len(sent) == 1 and begun == []
