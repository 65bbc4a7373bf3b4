"""The 5sim client against a fake 5sim speaking its wire format, and 5sim as a provider
behind routing: failover to it, and every later action on its numbers going to it."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import select

from reseller.extensions import db
from reseller.models import Activation, Rental, User
from reseller.money import to_units
from reseller.services import catalog, provider_admin
from reseller.services import provider as provider_accounts
from reseller.services.ledger import verify_ledger
from reseller.upstream import errors as up
from reseller.upstream.base import SetStatusAnswer, UpstreamState
from reseller.upstream.fivesim import FiveSimClient, _timestamp
from tests.conftest import Api, api_key_of
from tests.fake_fivesim import FakeFiveSim
from tests.fake_grizzly import FakeGrizzly, Fault, Reply

TOKEN = "fivesim-token"


@pytest.fixture
def fake():
    with FakeFiveSim(TOKEN) as server:
        yield server
    assert not server.errors


@pytest.fixture
def client(fake):
    five = FiveSimClient(TOKEN, url=fake.url, connect_timeout=1, read_timeout=1, backoff=0)
    five._sleep = lambda seconds: None
    return five


def test_balance_and_a_bad_token(client, fake):
    assert client.get_balance() == Decimal("100.0")
    stranger = FiveSimClient("wrong", url=fake.url)
    with pytest.raises(up.BadKey):
        stranger.get_balance()


def test_prices_are_mapped_and_the_unmapped_named(client):
    prices = {(p.service, p.country_id): p for p in client.get_prices()}
    # usa/telegram: two operators with stock; we buy "any", so the dearer one is our cost.
    assert prices[("tg", 187)].cost == Decimal("0.25") and prices[("tg", 187)].count == 55
    assert prices[("tg", 16)].cost == Decimal("0.40")
    assert prices[("tg", 0)].count == 0  # listed, out of stock
    assert ("tg", 12) not in prices  # 5sim has no "USA (virtual)"
    assert client.skipped == ("country atlantis", "product mysteryapp")


def test_buy_check_and_finish(client, fake):
    number = client.get_number("tg", 187, max_price=Decimal("0.30"))
    assert number.phone.startswith("1555") and number.cost == Decimal("0.2")
    assert fake.calls[-1] == ("buy", {"maxPrice": "0.30", "path": "usa/any/telegram"})
    assert client.get_status(number.upstream_id).state == UpstreamState.WAIT_CODE
    fake.deliver(number.upstream_id, "012345")
    answer = client.get_status(number.upstream_id)
    assert (answer.state, answer.code, answer.messages) == (UpstreamState.CODE, "012345", 1)
    assert client.set_status(number.upstream_id, 3) == SetStatusAnswer.RETRY_GET  # no call
    assert client.set_status(number.upstream_id, 6) == SetStatusAnswer.ACTIVATION
    assert fake.orders[int(number.upstream_id)]["status"] == "FINISHED"


def test_cancel_and_its_refusals(client, fake):
    number = client.get_number("tg", 187)
    assert client.set_status(number.upstream_id, 8) == SetStatusAnswer.CANCEL
    assert client.get_status(number.upstream_id).state == UpstreamState.CANCELLED
    other = client.get_number("tg", 187)
    fake.deliver(other.upstream_id, "99999")
    with pytest.raises(up.StatusAlreadyChanged):  # "order has sms"
        client.set_status(other.upstream_id, 8)
    with pytest.raises(up.NoActivation):  # "order not found"
        client.get_status("123")


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ("no free phones", up.NoNumbers),
        ("not enough user balance", up.NoBalance),
        ("not enough rating", up.AccountInactive),
        ("bad country", up.BadCountry),
        ("no product", up.BadService),
        ("something new", up.UpstreamRejected),
        (Reply("", status=503), up.UpstreamUnavailable),
    ],
)
def test_purchase_refusals_are_typed(client, fake, answer, error):
    from reseller.services.activations import _definite_error

    fake.script("buy", answer)
    with pytest.raises(error) as caught:
        client.get_number("tg", 187)
    # Each known refusal says nothing was sold (fail over); unknown text does not.
    sold_nothing = _definite_error(caught.value) is not None
    assert sold_nothing is (answer != "something new")


@pytest.mark.parametrize("fault", [Fault.DROP, Fault.HTTP_500])
def test_a_lost_purchase_answer_is_an_unknown_outcome(client, fake, fault):
    fake.script("buy", fault, process=True)
    with pytest.raises(up.UnknownOutcome):
        client.get_number("tg", 187)
    active = client.get_active_activations()
    assert [(a.service, a.country_id) for a in active] == [("tg", 187)]


def test_the_fake_pages_the_order_history_as_5sim_does(client, fake):
    first, second, third = fake.add_past_orders(3)
    headers = {"Authorization": f"Bearer {TOKEN}"}

    def ids(**params):
        import requests

        answer = requests.get(fake.url + "/user/orders", params=params, headers=headers)
        return [o["id"] for o in answer.json()["Data"]], answer.json()["Total"]

    assert ids(category="activation") == ([first, second, third], 3)
    assert ids(category="activation", order="id", reverse="true", limit="2") == (
        [third, second],
        3,
    )
    assert ids(category="activation", order="date", reverse="true", offset="2") == ([first], 3)
    assert ids(category="hosting") == ([], 0)


def test_open_orders_are_found_past_a_long_history(client, fake):
    """150 old orders before our open one: the list must reach the newest orders."""
    fake.add_past_orders(150, age=dt.timedelta(days=3))
    (lost,) = fake.add_past_orders(1, status="PENDING")
    assert [a.upstream_id for a in client.get_active_activations()] == [str(lost)]


def test_an_open_order_behind_a_page_of_newer_ones_is_found(client, fake):
    """A busy account: 230 orders after our open one within its lifetime. The list pages on
    until it reaches orders that expired long ago, and no further."""
    fake.add_past_orders(300, age=dt.timedelta(days=1))
    (lost,) = fake.add_past_orders(1, status="PENDING", age=dt.timedelta(minutes=5))
    fake.add_past_orders(230, status="CANCELED", age=dt.timedelta(minutes=1))
    assert [a.upstream_id for a in client.get_active_activations()] == [str(lost)]
    pages = [params for verb, params in fake.calls if verb == "orders"]
    # 100 newer, 100 newer, then 30 newer, ours and 69 that expired a day ago: the end.
    assert all(p["order"] == "id" and p["reverse"] == "true" for p in pages)
    assert [p["offset"] for p in pages] == ["0", "100", "200"]


def test_unmapped_service_or_country_is_refused_without_a_call(client, fake):
    with pytest.raises(up.BadService):
        client.get_number("zz", 187)
    with pytest.raises(up.BadCountry):
        client.get_number("tg", 12)
    assert fake.count("buy") == 0


def test_timestamps_with_nanoseconds():
    assert _timestamp("2018-10-13T08:28:38.809469028Z") == dt.datetime(
        2018, 10, 13, 8, 28, 38, 809469
    )


def test_the_token_never_appears_in_errors(fake):
    dead = FiveSimClient(TOKEN, url="http://127.0.0.1:9/v1", connect_timeout=0.3, retries=0)
    with pytest.raises(up.UpstreamUnavailable) as caught:
        dead.get_balance()
    assert TOKEN not in str(caught.value) and TOKEN not in repr(caught.value)


# --- 5sim behind routing -------------------------------------------------------------------


@pytest.fixture
def grizzly():
    prices = {(187, "tg"): (Decimal("0.20"), 10)}
    with FakeGrizzly(api_key="g-key", prices=prices, code_delay=None) as server:
        yield server


@pytest.fixture
def routed(app, fake, grizzly, make_user, client):
    provider_accounts.all_providers()
    provider_admin.set_enabled(provider_admin.get("sandbox"), False)
    provider_admin.add("grizzly", "sms-activate", grizzly.url, "g-key", priority=1)
    provider_admin.add("five", "5sim", fake.url, TOKEN, priority=2)
    results = catalog.refresh_all()
    assert results["five"]["skipped"] == ["country atlantis", "product mysteryapp"]
    user = make_user(balance="10.00")
    return Api(app.test_client(), api_key_of(user))


def test_failover_to_5sim_and_its_lifecycle(routed, fake, grizzly, clock, runner):
    grizzly.script("getNumberV2", "NO_NUMBERS")
    answer = routed.json("getNumber", service="tg", country="us")
    sold = db.session.get(Activation, answer["activationId"])
    assert sold.upstream_name == "five" and sold.price == to_units("0.26")  # grizzly's quote
    assert fake.calls[-1][1]["maxPrice"] == "0.26"
    order_id = sold.upstream_id

    fake.deliver(order_id, "11111")
    clock.travel(5)
    assert routed.text("getStatus", id=sold.id) == "STATUS_OK:11111"
    assert routed.text("setStatus", id=sold.id, status="3") == "ACCESS_RETRY_GET"
    clock.travel(5)
    # 5sim still lists the first SMS: no second code appears until a new one arrives.
    assert routed.text("getStatus", id=sold.id) == "STATUS_WAIT_RETRY:11111"
    fake.deliver(order_id, "22222")
    clock.travel(5)
    assert routed.text("getStatus", id=sold.id) == "STATUS_OK:22222"
    assert routed.text("setStatus", id=sold.id, status="6") == "ACCESS_ACTIVATION"
    assert fake.orders[int(order_id)]["status"] == "FINISHED"
    assert grizzly.count("getStatus") == 0 and grizzly.count("setStatus") == 0
    db.session.expire_all()
    assert verify_ledger() == []


def test_a_5sim_number_cancelled_and_settled_at_5sim(routed, fake, grizzly, clock, runner):
    grizzly.script("getNumberV2", "NO_NUMBERS")
    sold = routed.json("getNumber", service="tg", country="us")["activationId"]
    clock.travel(121)
    assert routed.text("setStatus", id=sold, status="8") == "ACCESS_CANCEL"
    db.session.expire_all()
    row = db.session.get(Activation, sold)
    assert row.status == "cancelled"
    assert fake.orders[int(row.upstream_id)]["status"] == "CANCELED"
    # A lost 5sim purchase is settled at 5sim: its orphan cancelled there.
    grizzly.script("getNumberV2", "NO_NUMBERS")
    fake.script("buy", Fault.DROP, process=True)
    assert routed.text("getNumber", service="tg", country="us") == "ERROR_SQL"
    clock.travel(120)
    runner.invoke(args=["worker", "--once"])
    clock.travel(120)
    assert "orphans cancelled 1" in runner.invoke(args=["worker", "--once"]).output
    assert all(o["status"] == "CANCELED" for o in fake.orders.values())
    statuses = db.session.execute(select(Activation.status).order_by(Activation.id)).scalars()
    assert list(statuses) == ["cancelled", "failed"]
    assert runner.invoke(args=["ledger", "verify"]).exit_code == 0


def test_a_lost_5sim_purchase_is_released_past_a_long_history(routed, fake, grizzly, clock, runner):
    fake.add_past_orders(150, age=dt.timedelta(days=3))
    grizzly.script("getNumberV2", "NO_NUMBERS")
    fake.script("buy", Fault.DROP, process=True)
    assert routed.text("getNumber", service="tg", country="us") == "ERROR_SQL"
    (bought,) = [o for o in fake.orders.values() if o["status"] == "PENDING"]
    clock.travel(120)
    assert "settled 1" in runner.invoke(args=["worker", "--once"]).output
    clock.travel(120)
    assert "orphans cancelled 1" in runner.invoke(args=["worker", "--once"]).output
    assert bought["status"] == "CANCELED"
    assert runner.invoke(args=["ledger", "verify"]).exit_code == 0


def test_a_5sim_numbers_card_lists_every_sms_with_its_text(routed, fake, grizzly, clock, app):
    """5sim sends each SMS's full text: the number's card shows every code, oldest first,
    each with its text (issue 24)."""
    from markupsafe import escape

    grizzly.script("getNumberV2", "NO_NUMBERS")
    answer = routed.json("getNumber", service="tg", country="us")
    order_id = db.session.get(Activation, answer["activationId"]).upstream_id
    browser = app.test_client()
    email = db.session.get(Activation, answer["activationId"]).user.email
    browser.post("/login", data={"email": email, "password": "password123"})
    fake.deliver(order_id, "11111", "Telegram code 11111, do not share")
    clock.travel(5)
    routed.text("getStatus", id=answer["activationId"])
    routed.text("setStatus", id=answer["activationId"], status="3")
    fake.deliver(order_id, "22222", "Telegram code 22222 <for you>")
    clock.travel(5)
    routed.text("getStatus", id=answer["activationId"])
    page = browser.get("/dashboard").get_data(as_text=True)
    card = page[page.index(f'id="activation-{answer["activationId"]}"') :]
    assert card.index(">11111</code>") < card.index(">22222</code>")
    assert "Telegram code 11111, do not share" in card
    assert str(escape("Telegram code 22222 <for you>")) in card


# --- hosting (5sim's rent) -------------------------------------------------------------------


def test_a_rented_number_is_found_past_a_long_hosting_history(client, fake):
    """The rent list reads the hosting orders newest first, as the activation list does:
    150 ended hosting orders before ours would hide it from an oldest-first read."""
    fake.add_past_orders(150, age=dt.timedelta(days=40), category="hosting")
    number = client.rent_number("tg", 187, 3)
    assert [r.upstream_id for r in client.get_rent_list()] == [number.upstream_id]


def test_hosting_offers_rent_and_inbox(client, fake):
    offers = client.get_rent_offers(187, 24)
    assert {o.service for o in offers} >= {"tg", "wa"}
    assert {(o.cost, o.count) for o in offers} == {(Decimal("1.5"), 12)}
    assert client.get_rent_offers(187, 48) == []  # no such hosting length
    assert client.get_rent_offers(12, 24) == []  # a country 5sim does not have
    with pytest.raises(up.RentUnsupported):
        client.rent_number("tg", 187, 48)
    number = client.rent_number("tg", 187, 3)
    assert fake.calls[-1] == ("hosting", {"path": "usa/any/3hours"})
    assert number.phone.startswith("1777") and number.ends_at is not None
    assert client.get_rent_status(number.upstream_id).messages == ()
    fake.deliver(number.upstream_id, "11111", text="first")
    fake.deliver(number.upstream_id, "22222", text="second")
    status = client.get_rent_status(number.upstream_id)
    assert [m.text for m in status.messages] == ["first", "second"]
    assert [r.upstream_id for r in client.get_rent_list()] == [number.upstream_id]
    with pytest.raises(up.CantCancel):  # hosting orders cannot be cancelled
        client.set_rent_status(number.upstream_id, 2)
    client.set_rent_status(number.upstream_id, 1)
    assert client.get_rent_status(number.upstream_id).state == "finished"
    assert client.get_rent_list() == []


def test_rent_fails_over_to_5sim_hosting(routed, fake, grizzly, clock):
    fake.hosting[("usa", "1day")] = (Decimal("1.00"), 3)  # within our price for grizzly's cost
    grizzly.script("getRentNumber", Reply('{"status":"error","message":"NO_NUMBERS"}'))
    answer = routed("getRentNumber", service="tg", rent_time="24", country="us").get_json()
    assert answer["status"] == "success", answer
    rental = db.session.get(Rental, answer["phone"]["id"])
    assert rental.upstream_name == "five"
    order_id = rental.upstream_id
    assert fake.orders[int(order_id)]["_category"] == "hosting"

    fake.deliver(order_id, "33333", text="Telegram code 33333")
    clock.travel(31)
    status = routed("getRentStatus", id=rental.id).get_json()
    assert status["values"]["0"]["text"] == "Telegram code 33333"
    charged = db.session.get(User, rental.user_id).balance
    assert routed("setRentStatus", id=rental.id, status="2").get_json()["message"] == "CANT_CANCEL"
    assert routed("continueRentNumber", id=rental.id).get_json()["message"] == "RENT_DIE"
    db.session.expire_all()
    assert db.session.get(User, rental.user_id).balance == charged  # the continue given back
    assert routed("setRentStatus", id=rental.id, status="1").get_json() == {"status": "success"}
    assert fake.orders[int(order_id)]["status"] == "FINISHED"
    assert verify_ledger() == []


@pytest.mark.parametrize(
    "answer",
    [
        "ERROR_SQL",
        '{"status":"error","message":"ERROR_SQL"}',
        '{"status":"error","message":"NO_ACTIVATION"}',  # a token of another action
        "Something went wrong on our side",  # free text we do not know
    ],
)
def test_an_unknown_rent_answer_never_fails_over(routed, fake, grizzly, answer):
    """As at purchase (issue 23, item 7): only an answer that says nothing was rented fails
    over; anything else may have rented a number, so the hold stays with that provider and
    no other provider is asked."""
    fake.hosting[("usa", "1day")] = (Decimal("1.00"), 3)
    grizzly.script("getRentNumber", Reply(answer))
    reply = routed("getRentNumber", service="tg", rent_time="24", country="us").get_json()
    assert reply == {"status": "error", "message": "ERROR_SQL"}, reply
    rental = db.session.execute(select(Rental)).scalar_one()
    assert (rental.status, rental.upstream_name) == ("unknown", "grizzly")
    assert not [o for o in fake.orders.values() if o["_category"] == "hosting"]
    assert verify_ledger() == []
