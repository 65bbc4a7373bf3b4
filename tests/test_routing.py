"""Several providers: routing under both policies, failover on definite refusals only, the
circuit breaker shared through the database, every later action at the selling provider,
and the customer's price never above the quote or maxPrice.

Two fake SMS-Activate-protocol providers ("alpha", priority 1, and "beta", priority 2) run
as separate HTTP servers with their own stock, prices and faults.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from reseller import create_app
from reseller.extensions import db
from reseller.models import Activation, Provider, User
from reseller.money import to_units
from reseller.services import catalog, pricing, provider_admin, routing, settings
from reseller.services import provider as provider_accounts
from reseller.services.ledger import verify_ledger
from tests.conftest import Api, api_key_of, make_config
from tests.fake_grizzly import PROHIBITED_TEXT as PROHIBITED
from tests.fake_grizzly import FakeGrizzly, Fault, Reply

DEAD_URL = "http://127.0.0.1:9/stubs/handler_api.php"


@pytest.fixture
def config_overrides():
    return {
        "UPSTREAM_CONNECT_TIMEOUT": 1.0,
        "UPSTREAM_READ_TIMEOUT": 1.0,
        "BREAKER_FAILURES": 2,
        "BREAKER_COOLDOWN": 60,
    }


def _prices(**changes):
    """Fake prices: tg in country 12 at `tg12` (cost, count), the rest as the fake's."""
    from tests.fake_grizzly import default_prices

    table = default_prices()
    for key, value in changes.items():
        service, country = key[:2], int(key[2:])
        table[(country, service)] = (Decimal(value[0]), value[1])
    return table


@pytest.fixture
def alpha():
    with FakeGrizzly(api_key="alpha-key", early_cancel_seconds=0) as server:
        yield server
    assert not server.errors


@pytest.fixture
def beta():
    with FakeGrizzly(
        api_key="beta-key", early_cancel_seconds=0, prices=_prices(tg12=("0.20", 80))
    ) as server:
        server._next_id = 800_000_001  # ids of its own, as a real provider's
        yield server
    assert not server.errors


def add_providers(alpha, beta):
    provider_accounts.all_providers()  # the environment's sandbox, created on first use
    provider_admin.set_enabled(provider_admin.get("sandbox"), False)
    provider_admin.add("alpha", "sms-activate", alpha.url, "alpha-key", priority=1)
    provider_admin.add("beta", "sms-activate", beta.url, "beta-key", priority=2)
    results = catalog.refresh_all()
    assert set(results) == {"alpha", "beta"} and not any("error" in r for r in results.values())


@pytest.fixture
def two(app, alpha, beta):
    add_providers(alpha, beta)
    return alpha, beta


@pytest.fixture
def buyer(two, make_user):
    return make_user(email="buyer@example.com", balance="10.00")


@pytest.fixture
def api(client, buyer):
    return Api(client, api_key_of(buyer))


def balance(user_id: int) -> int:
    db.session.expire_all()
    return db.session.get(User, user_id).balance


def activation(activation_id) -> Activation:
    db.session.expire_all()
    return db.session.get(Activation, int(activation_id))


def assert_books_balance():
    db.session.expire_all()
    assert verify_ledger() == []


# --- routing ------------------------------------------------------------------------------


def test_offers_carry_the_routed_cost_and_the_total_stock(two, api):
    quote = pricing.quote("tg", 12)
    assert quote.cost == to_units("0.30")  # alpha's: first by priority
    assert quote.count == 606 + 80  # both providers' stock
    prices = api.json("getPrices", service="tg", country="12")
    assert prices["12"]["tg"]["count"] == 686
    assert Decimal(str(prices["12"]["tg"]["cost"])) == Decimal("0.39")  # 0.30 + 30 %


def test_priority_policy_buys_from_the_lowest_priority_number(api, buyer, two):
    alpha, beta = two
    answer = api.json("getNumber", service="tg", country="12")
    sold = activation(answer["activationId"])
    assert sold.upstream_name == "alpha" and sold.price == to_units("0.39")
    assert alpha.count("getNumberV2") == 1 and beta.count("getNumberV2") == 0
    assert balance(buyer.id) == to_units("10.00") - to_units("0.39")
    assert_books_balance()


def test_cheapest_policy_buys_from_the_lowest_cost_and_prices_from_it(api, buyer, two):
    alpha, beta = two
    provider_admin.set_policy("cheapest")
    quote = pricing.quote("tg", 12)
    assert quote.cost == to_units("0.20") and quote.price == to_units("0.26")
    answer = api.json("getNumber", service="tg", country="12")
    sold = activation(answer["activationId"])
    assert sold.upstream_name == "beta" and sold.price == to_units("0.26")
    assert sold.upstream_cost == to_units("0.20")
    assert alpha.count("getNumberV2") == 0 and beta.count("getNumberV2") == 1


def test_cheapest_policy_breaks_ties_by_priority(app, alpha, make_user, client):
    with FakeGrizzly(api_key="beta-key", prices=_prices(tg12=("0.30", 10))) as beta:
        add_providers(alpha, beta)
        provider_admin.set_policy("cheapest")
        api = Api(client, api_key_of(make_user(balance="5.00")))
        sold = activation(api.json("getNumber", service="tg", country="12")["activationId"])
        assert sold.upstream_name == "alpha"
        provider_admin.set_priority(provider_admin.get("beta"), 0)
        sold = activation(api.json("getNumber", service="tg", country="12")["activationId"])
        assert sold.upstream_name == "beta"


REFUSALS = [
    pytest.param("NO_NUMBERS", id="no-numbers"),
    pytest.param("NO_BALANCE", id="upstream-wallet-empty"),
    pytest.param("SERVICE_UNAVAILABLE_REGION", id="service-unavailable-there"),
    pytest.param(Fault.PROHIBITED, id="free-text-rejection"),
    pytest.param("BAD_SERVICE", id="bad-service-there"),
    pytest.param(Reply("Service Unavailable", status=503), id="http-503"),
    pytest.param("BAD_KEY", id="our-key-refused"),
]


@pytest.mark.parametrize("refusal", REFUSALS)
def test_a_definite_refusal_fails_over_to_the_next_provider(api, buyer, two, refusal):
    alpha, beta = two
    alpha.script("getNumberV2", refusal)
    answer = api.json("getNumber", service="tg", country="12")
    sold = activation(answer["activationId"])
    assert sold.upstream_name == "beta" and sold.status == "allocated"
    assert sold.price == to_units("0.39")  # the quote, whoever sells
    assert sold.upstream_cost == to_units("0.20")
    assert alpha.count("getNumberV2") == 1 and beta.count("getNumberV2") == 1
    # Our price was beta's maximum: the margin cannot go negative.
    assert beta.calls[-1].params["maxPrice"] == "0.39"
    assert balance(buyer.id) == to_units("10.00") - to_units("0.39")
    assert_books_balance()


def test_connection_refused_fails_over(api, buyer, two):
    alpha, beta = two
    provider_admin.update(provider_admin.get("alpha"), url=DEAD_URL)
    sold = activation(api.json("getNumber", service="tg", country="12")["activationId"])
    assert sold.upstream_name == "beta"
    assert_books_balance()


def test_every_provider_refusing_refunds_once_and_answers_no_numbers(api, buyer, two):
    alpha, beta = two
    alpha.script("getNumberV2", "NO_NUMBERS")
    beta.script("getNumberV2", "NO_BALANCE")
    assert api.text("getNumber", service="tg", country="12") == "NO_NUMBERS"
    failed = db.session.execute(select(Activation)).scalar_one()
    assert failed.status == "failed"
    assert alpha.count("getNumberV2") == 1 and beta.count("getNumberV2") == 1  # once each
    assert balance(buyer.id) == to_units("10.00")
    assert_books_balance()


@pytest.mark.parametrize("fault", [Fault.DROP, Fault.SLOW, Fault.HTTP_500])
def test_an_unknown_outcome_never_fails_over(api, buyer, two, clock, runner, fault):
    alpha, beta = two
    alpha.slow_seconds, alpha.code_delay = 2, None
    alpha.script("getNumberV2", fault, process=True)  # bought at alpha, answer lost
    assert api.text("getNumber", service="tg", country="12") == "ERROR_SQL"
    held = db.session.execute(select(Activation)).scalar_one()
    assert held.status == "unknown" and held.upstream_name == "alpha"
    assert beta.count("getNumberV2") == 0
    assert balance(buyer.id) == to_units("10.00") - to_units("0.39")  # the hold stays

    # Settlement happens at alpha (whose active list shows the orphan), never at beta.
    clock.travel(120)
    assert "settled 1" in runner.invoke(args=["worker", "--once"]).output
    clock.travel(120)
    assert "orphans cancelled 1" in runner.invoke(args=["worker", "--once"]).output
    assert alpha.count("getActiveActivations") >= 2 and alpha.count("setStatus") == 1
    assert beta.count("setStatus") == 0
    assert balance(buyer.id) == to_units("10.00")
    assert runner.invoke(args=["ledger", "verify"]).exit_code == 0


def test_error_sql_at_purchase_never_fails_over_and_is_settled_at_its_provider(
    api, buyer, two, clock, runner
):
    """ERROR_SQL is an unknown outcome (the provider's database failed, perhaps after it
    sold): here alpha did sell. No second purchase at beta; the hold stays with alpha; the
    worker refunds it once and cancels the number it finds in alpha's active list."""
    from tests.test_lifecycle import refunds

    alpha, beta = two
    alpha.code_delay = None
    alpha.script("getNumberV2", "ERROR_SQL", process=True)
    assert api.text("getNumber", service="tg", country="12") == "ERROR_SQL"
    held = db.session.execute(select(Activation)).scalar_one()
    assert held.status == "unknown" and held.upstream_name == "alpha"
    assert beta.count("getNumberV2") == 0
    assert balance(buyer.id) == to_units("10.00") - to_units("0.39")  # the hold stays
    (sold,) = alpha.activations.values()
    assert sold.state == "wait_code"

    clock.travel(120)
    assert "settled 1" in runner.invoke(args=["worker", "--once"]).output
    clock.travel(120)
    assert "orphans cancelled 1" in runner.invoke(args=["worker", "--once"]).output
    assert sold.state == "cancelled" and alpha.count("setStatus") == 1
    assert beta.count("getNumberV2") == 0 and beta.count("setStatus") == 0
    settled = activation(held.id)
    assert settled.status == "failed" and settled.upstream_id == str(sold.id)
    assert balance(buyer.id) == to_units("10.00") and refunds(held.id) == 1
    clock.travel(120)
    runner.invoke(args=["worker", "--once"])
    assert refunds(held.id) == 1 and alpha.count("setStatus") == 1
    assert runner.invoke(args=["ledger", "verify"]).exit_code == 0


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param("ERROR_SQL", id="error-sql"),
        pytest.param("Database is locked, try again", id="unknown-free-text"),
        pytest.param('{"status": "error", "error": "Internal error"}', id="unknown-json-error"),
        pytest.param("NO_ACTIVATION", id="a-token-of-another-action"),
        pytest.param("ORDER_ALREADY_EXISTS", id="order-already-exists"),
        pytest.param(Reply("ERROR_SQL", status=400), id="error-sql-as-http-400"),
    ],
)
def test_an_answer_that_does_not_say_nothing_was_sold_never_fails_over(api, buyer, two, answer):
    alpha, beta = two
    alpha.script("getNumberV2", answer)
    assert api.text("getNumber", service="tg", country="12") == "ERROR_SQL"
    held = db.session.execute(select(Activation)).scalar_one()
    assert held.status == "unknown" and held.upstream_name == "alpha"
    assert beta.count("getNumberV2") == 0
    assert balance(buyer.id) == to_units("10.00") - to_units("0.39")


def test_every_protocol_token_is_judged_a_refusal_or_an_unknown_purchase_outcome():
    """The tokens that say nothing was sold, and nothing else (a new token is unknown until
    someone decides otherwise)."""
    from reseller.services.activations import _definite_error
    from reseller.upstream import errors as up

    refusals = {
        "NO_NUMBERS",
        "NO_BALANCE",
        "SERVICE_UNAVAILABLE_REGION",
        "BAD_SERVICE",
        "BAD_COUNTRY",
        "BAD_ACTION",
        "ACTION_NOT_AVAILABLE",
        "BANNED",
        "BAD_KEY",
        "NO_KEY",
        "USERS_IP_IS_NOT_ALLOWED",
        "ACCOUNT_INACTIVE",
    }
    judged = {
        token: _definite_error(cls() if token != "WRONG_MAX_PRICE" else cls("0.5")) is not None
        for token, cls in up._BY_TOKEN.items()
    }
    # (WRONG_MAX_PRICE is handled before: the provider is dearer now, nothing was sold.)
    assert {token for token, refused in judged.items() if refused} == refusals
    for token in ("ERROR_SQL", "NO_ACTIVATION", "ORDER_ALREADY_EXISTS", "STATUS_ALREADY_CHANGED"):
        assert judged[token] is False, token
    assert _definite_error(up.UnknownOutcome()) is None
    assert _definite_error(up.UpstreamRejected("Something went wrong")) is None
    assert _definite_error(up.error_for_token(PROHIBITED)) is not None
    assert _definite_error(up.UpstreamUnavailable()) is not None
    assert _definite_error(up.RateLimited(1.0)) is not None


# --- the price ----------------------------------------------------------------------------


def test_failover_never_goes_above_the_customers_price(app, alpha, make_user, client):
    with FakeGrizzly(api_key="beta-key", prices=_prices(tg12=("0.50", 10))) as beta:
        add_providers(alpha, beta)
        buyer = make_user(balance="10.00")
        api = Api(client, api_key_of(buyer))
        alpha.script("getNumberV2", "NO_NUMBERS")
        assert api.text("getNumber", service="tg", country="12") == "NO_NUMBERS"
        assert beta.count("getNumberV2") == 0  # dearer than the 0.39 we charge: not tried
        assert balance(buyer.id) == to_units("10.00")

        # The operator may serve at a loss to keep the order: the customer still pays 0.39.
        admin_values = {"serve_at_loss": "yes"}
        from reseller.services.admin import update_settings

        assert update_settings(admin_values, None) == {}
        alpha.script("getNumberV2", "NO_NUMBERS")
        catalog.refresh_all()
        sold = activation(api.json("getNumber", service="tg", country="12")["activationId"])
        assert sold.upstream_name == "beta"
        assert sold.price == to_units("0.39") and sold.upstream_cost == to_units("0.50")
        assert balance(buyer.id) == to_units("10.00") - to_units("0.39")
        assert_books_balance()


def test_max_price_below_the_quote_buys_nothing_anywhere(api, buyer, two):
    alpha, beta = two
    assert api.text("getNumber", service="tg", country="12", maxPrice="0.30") == (
        "WRONG_MAX_PRICE:0.39"
    )
    assert alpha.count("getNumberV2") == 0 and beta.count("getNumberV2") == 0
    assert balance(buyer.id) == to_units("10.00")


def test_a_dearer_provider_fails_over_and_the_next_quote_follows(api, buyer, two):
    alpha, beta = two
    alpha.script("getNumberV2", "WRONG_MAX_PRICE:0.45")
    sold = activation(api.json("getNumber", service="tg", country="12")["activationId"])
    assert sold.upstream_name == "beta" and sold.price == to_units("0.39")
    # alpha's new cost is learnt: the offer now comes from... alpha still (priority), at the
    # new cost, so the quote rises; beta's cost would be cheaper but priority rules.
    assert pricing.quote("tg", 12).cost == to_units("0.45")


def test_provider_currency_is_converted_at_its_rate(app, alpha, make_user, client):
    with FakeGrizzly(api_key="beta-key", prices=_prices(tg12=("25", 10))) as rub:
        provider_accounts.all_providers()
        provider_admin.set_enabled(provider_admin.get("sandbox"), False)
        provider_admin.add("rub", "sms-activate", rub.url, "beta-key", currency="RUB", rate="0.011")
        catalog.refresh_all()
        quote = pricing.quote("tg", 12)
        assert quote.cost == to_units("0.275")  # 25 RUB × 0.011
        api = Api(client, api_key_of(make_user(balance="5.00")))
        sold = activation(api.json("getNumber", service="tg", country="12")["activationId"])
        # maxPrice in roubles: our price (0.36) / 0.011, rounded down
        assert rub.calls[-1].params["maxPrice"] == str(
            (Decimal("0.36") / Decimal("0.011")).quantize(Decimal("0.0001"), "ROUND_FLOOR")
        )
        assert sold.upstream_cost == to_units("0.275")


def test_a_new_conversion_rate_prices_the_offers_at_once(app, alpha, make_user, client):
    """The operator changes a provider's rate: what we sell is priced at the new rate now,
    not at the next price refresh (the provider's own price list is not read again)."""
    with FakeGrizzly(api_key="beta-key", prices=_prices(tg12=("25", 10))) as rub:
        provider_accounts.all_providers()
        provider_admin.set_enabled(provider_admin.get("sandbox"), False)
        provider_admin.add("rub", "sms-activate", rub.url, "beta-key", currency="RUB", rate="0.011")
        catalog.refresh_all()
        assert pricing.quote("tg", 12).cost == to_units("0.275")  # 25 RUB × 0.011
        reads = rub.count("getPrices")

        provider_admin.update(provider_admin.get("rub"), rate="0.02")
        assert pricing.quote("tg", 12).cost == to_units("0.50")  # 25 RUB × 0.02
        assert rub.count("getPrices") == reads
        api = Api(client, api_key_of(make_user(balance="5.00")))
        prices = api.json("getPrices", service="tg", country="12")
        assert Decimal(str(prices["12"]["tg"]["cost"])) == Decimal("0.65")  # 0.50 + 30 %
        sold = activation(api.json("getNumber", service="tg", country="12")["activationId"])
        assert sold.price == to_units("0.65") and sold.upstream_cost == to_units("0.50")
        assert rub.calls[-1].params["maxPrice"] == "32.5000"  # 0.65 / 0.02 roubles

        # A cost learnt from a refusal (WRONG_MAX_PRICE) follows a later rate too.
        rub.script("getNumberV2", "WRONG_MAX_PRICE:30")
        assert api.text("getNumber", service="tg", country="12") == "WRONG_MAX_PRICE:0.78"
        assert pricing.quote("tg", 12).cost == to_units("0.60")  # 30 RUB × 0.02
        provider_admin.update(provider_admin.get("rub"), rate="0.01")
        assert pricing.quote("tg", 12).cost == to_units("0.30")  # 30 RUB × 0.01


# --- the circuit breaker ------------------------------------------------------------------


def other_process(tmp_path):
    """Another app on the same database: what another gunicorn worker or host sees."""
    return create_app(make_config(tmp_path, BREAKER_FAILURES=2, BREAKER_COOLDOWN=60))


def test_the_breaker_opens_and_closes_for_every_process(api, buyer, two, clock, tmp_path):
    alpha, beta = two
    down = Reply("Service Unavailable", status=503)
    alpha.script("getNumberV2", down, down)
    for _ in range(2):  # two failures in a row: the breaker opens
        sold = activation(api.json("getNumber", service="tg", country="12")["activationId"])
        assert sold.upstream_name == "beta"
    state = routing.breaker_state(provider_admin.get("alpha"))
    assert state.state == "open" and state.failures == 2

    buyer_id = buyer.id
    db.session.commit()
    other = other_process(tmp_path)
    with other.app_context():
        other_buyer = db.session.get(User, buyer_id)
        names = [c.name for c in routing.candidates("tg", 12)]
        assert names == ["beta"]  # the other process skips alpha too
        other_api = Api(other.test_client(), api_key_of(other_buyer))
        sold = other_api.json("getNumber", service="tg", country="12")
        db.session.remove()
    assert alpha.count("getNumberV2") == 2  # not asked while open
    assert activation(sold["activationId"]).upstream_name == "beta"
    db.session.commit()

    clock.travel(61)  # cooled down: alpha is tried again (half-open) and answers
    with other.app_context():
        assert [c.name for c in routing.candidates("tg", 12)] == ["alpha", "beta"]
        sold = other_api.json("getNumber", service="tg", country="12")
        db.session.remove()
        db.engine.dispose()
    assert activation(sold["activationId"]).upstream_name == "alpha"
    state = routing.breaker_state(provider_admin.get("alpha"))
    assert state.state == "closed" and state.failures == 0  # seen by this process too
    assert_books_balance()


def test_a_success_between_failures_seen_by_other_processes_resets_the_count(two):
    """Failures in a row: a success in one process ends the row that other processes
    counted, even when its client was built before their failure (BREAKER_FAILURES = 2)."""
    from reseller.services import breaker

    here = provider_accounts.upstream("alpha")  # the row said: no failures
    db.session.commit()
    breaker.record_failure("alpha", "UNAVAILABLE")  # another process: one failure
    assert here.get_balance() > 0  # this process: a success, after that failure
    breaker.record_failure("alpha", "UNAVAILABLE")  # another process: one failure again
    state = routing.breaker_state(provider_admin.get("alpha"))
    assert state.state == "closed" and state.failures == 1
    assert [c.name for c in routing.candidates("tg", 12)] == ["alpha", "beta"]


def test_a_half_open_breaker_reopens_on_one_more_failure(api, two, clock):
    alpha, beta = two
    down = Reply("Service Unavailable", status=503)
    alpha.script("getNumberV2", down, down, down)
    for _ in range(2):
        api.json("getNumber", service="tg", country="12")
    clock.travel(61)
    assert routing.breaker_state(provider_admin.get("alpha")).state == "half-open"
    api.json("getNumber", service="tg", country="12")
    assert alpha.count("getNumberV2") == 3
    assert routing.breaker_state(provider_admin.get("alpha")).state == "open"


def test_offers_follow_the_breaker(api, two, runner):
    alpha, beta = two
    down = Reply("Service Unavailable", status=503)
    alpha.script("getNumberV2", down, down)
    for _ in range(2):
        api.json("getNumber", service="tg", country="12")
    assert not catalog.offers_current()
    runner.invoke(args=["worker", "--once"])
    quote = pricing.quote("tg", 12)
    assert quote.cost == to_units("0.20") and quote.count < 606  # beta's alone


# --- later actions go to the seller -------------------------------------------------------


def test_every_later_action_reaches_the_selling_provider(api, buyer, two, clock):
    alpha, beta = two
    alpha.code_delay = beta.code_delay = None
    at_alpha = api.json("getNumber", service="tg", country="12")["activationId"]
    alpha.script("getNumberV2", "NO_NUMBERS")
    at_beta = api.json("getNumber", service="tg", country="12")["activationId"]
    alpha_id = activation(at_alpha).upstream_id
    beta_id = activation(at_beta).upstream_id
    assert activation(at_beta).upstream_name == "beta"

    alpha.deliver_code(alpha_id, "11111")
    beta.deliver_code(beta_id, "22222")
    clock.travel(5)
    assert api.text("getStatus", id=at_alpha) == "STATUS_OK:11111"
    assert api.text("getStatus", id=at_beta) == "STATUS_OK:22222"
    assert alpha.count("getStatus", alpha_id) == 1 and beta.count("getStatus", beta_id) == 1
    assert alpha.count("getStatus", beta_id) == 0 and beta.count("getStatus", alpha_id) == 0

    assert api.text("setStatus", id=at_beta, status="3") == "ACCESS_RETRY_GET"
    assert beta.count("setStatus", beta_id) == 1 and alpha.count("setStatus") == 0
    assert api.text("setStatus", id=at_alpha, status="6") == "ACCESS_ACTIVATION"
    assert alpha.count("setStatus", alpha_id) == 1 and beta.count("setStatus", alpha_id) == 0

    # A third number, cancelled: the cancel reaches its seller.
    alpha.script("getNumberV2", "NO_NUMBERS")
    third = api.json("getNumber", service="tg", country="12")["activationId"]
    clock.travel(121)
    assert api.text("setStatus", id=third, status="8") == "ACCESS_CANCEL"
    third_id = activation(third).upstream_id
    assert beta.count("setStatus", third_id) == 1 and alpha.count("setStatus", third_id) == 0
    assert_books_balance()


def test_expiry_cancels_at_the_seller(api, two, clock, runner):
    alpha, beta = two
    beta.code_delay = None
    alpha.script("getNumberV2", "NO_NUMBERS")
    sold = api.json("getNumber", service="tg", country="12")["activationId"]
    clock.travel(settings.get("activation_lifetime") + 1)
    assert "expired 1" in runner.invoke(args=["worker", "--once"]).output
    upstream_id = activation(sold).upstream_id
    assert beta.count("setStatus", upstream_id) == 1 and alpha.count("setStatus") == 0
    assert activation(sold).status == "expired"
    assert runner.invoke(args=["ledger", "verify"]).exit_code == 0


def test_a_disabled_provider_still_finishes_what_it_sold(api, two, clock, runner):
    alpha, beta = two
    alpha.code_delay = None
    sold = api.json("getNumber", service="tg", country="12")["activationId"]
    provider_admin.set_enabled(provider_admin.get("alpha"), False)
    later = activation(api.json("getNumber", service="tg", country="12")["activationId"])
    assert later.upstream_name == "beta"  # nothing new from alpha

    upstream_id = activation(sold).upstream_id
    alpha.deliver_code(upstream_id, "33333")
    clock.travel(5)
    runner.invoke(args=["worker", "--once"])  # the worker still polls alpha
    assert activation(sold).code == "33333"
    assert api.text("setStatus", id=sold, status="6") == "ACCESS_ACTIVATION"
    assert alpha.count("setStatus", upstream_id) == 1
    assert runner.invoke(args=["ledger", "verify"]).exit_code == 0

    with pytest.raises(provider_admin.AdminError, match="open activation"):
        provider_admin.remove(provider_admin.get("beta"))


def test_a_removed_provider_leaves_history_and_no_offers(two, runner):
    alpha, beta = two
    provider_admin.remove(provider_admin.get("beta"))
    assert db.session.execute(select(Provider.name).order_by(Provider.name)).scalars().all() == [
        "alpha",
        "sandbox",
    ]
    assert pricing.quote("tg", 12).count == 606


# --- backward compatibility ---------------------------------------------------------------


def test_an_environment_only_grizzly_instance_keeps_working(tmp_path, alpha, make_user):
    from tests.conftest import reset_database

    app = create_app(
        make_config(
            tmp_path / "env",
            UPSTREAM="grizzly",
            GRIZZLY_API_KEY="alpha-key",
            GRIZZLY_API_URL=alpha.url,
        )
    )
    (tmp_path / "env").mkdir()
    with app.app_context():
        reset_database()
        runner = app.test_cli_runner()
        assert runner.invoke(args=["prices", "sync"]).exit_code == 0
        grizzly = db.session.execute(select(Provider)).scalar_one()
        assert (grizzly.name, grizzly.protocol, grizzly.from_env) == (
            "grizzly",
            "sms-activate",
            True,
        )
        assert grizzly.api_key_encrypted == ""  # the key stays in the environment
        from reseller.services import accounts

        user = accounts.create_user("env@example.com", "password123")
        from reseller.services import wallet

        wallet.adjust(user.id, to_units("5.00"), note="test")
        api = Api(app.test_client(), api_key_of(user))
        sold = activation(api.json("getNumber", service="tg", country="12")["activationId"])
        assert sold.upstream_name == "grizzly" and alpha.count("getNumberV2") == 1
        db.session.remove()
        db.engine.dispose()


# --- the Core reads of a purchase agree with the ORM ---------------------------------------


def test_the_candidates_and_provider_reads_agree_with_the_orm(two):
    """routing's candidates read and provider._row (Core, built at import) find what loading
    the Provider rows through the ORM finds: the same providers with the same columns, the
    same pair costs and stock, an open breaker or a disabled provider skipped alike."""
    import datetime as dt

    from reseller.models import ProviderPrice, utcnow
    from reseller.services.breaker import _closed

    def orm_candidates(service, country_id):
        rows = db.session.execute(
            select(Provider, ProviderPrice.cost, ProviderPrice.count)
            .join(ProviderPrice, ProviderPrice.provider_id == Provider.id)
            .where(
                Provider.enabled.is_(True),
                _closed(utcnow()),
                ProviderPrice.service == service,
                ProviderPrice.country_id == country_id,
                ProviderPrice.count > 0,
            )
        ).all()
        return sorted(
            (p.name, p.priority, cost, count, Decimal(str(p.rate))) for p, cost, count in rows
        )

    def core_candidates(service, country_id):
        return sorted(
            (c.name, c.priority, c.cost, c.count, c.rate)
            for c in routing.candidates(service, country_id)
        )

    columns = [c.key for c in Provider.__table__.columns]
    pairs = db.session.execute(select(ProviderPrice.service, ProviderPrice.country_id)).all()
    alpha_row = provider_admin.get("alpha")
    for state in ("as added", "breaker open", "disabled"):
        if state == "breaker open":
            alpha_row.open_until = utcnow() + dt.timedelta(seconds=60)
            alpha_row.failures = 3
        elif state == "disabled":
            alpha_row.open_until, alpha_row.failures, alpha_row.enabled = None, 0, False
        db.session.commit()
        found = 0
        for service, country_id in set(pairs):
            assert core_candidates(service, country_id) == orm_candidates(service, country_id)
            found += len(core_candidates(service, country_id))
        assert found > 0
        for name in ("alpha", "beta", "sandbox"):
            row = provider_accounts._row(name)
            orm = provider_accounts.by_name(name)
            assert [getattr(row, c) for c in columns] == [getattr(orm, c) for c in columns]
    with pytest.raises(provider_accounts.UnknownProvider):
        provider_accounts._row("nobody")
