"""Every code and SMS text of a number, on its card and in history; Buy again; the list
view (issue 24, customer pages)."""

import pytest
from markupsafe import escape
from sqlalchemy import select

from reseller.extensions import db
from reseller.models import Activation
from reseller.money import format_amount
from reseller.services import pricing
from reseller.upstream.sandbox import sms_code, sms_text


@pytest.fixture
def logged_in(client, auth, customer):
    auth.login(customer.email)
    return client


def bought(client, user_id, service="tg", country="12"):
    client.post(
        "/dashboard/buy",
        data={
            "service": service,
            "country": country,
            "max_price": format_amount(pricing.quote(service, int(country)).price),
        },
    )
    db.session.expire_all()
    return db.session.execute(
        select(Activation).where(Activation.user_id == user_id).order_by(Activation.id.desc())
    ).scalar()


def test_history_shows_every_code_with_its_text_and_buy_again(logged_in, customer, clock):
    activation = bought(logged_in, customer.id)
    clock.travel(6)
    logged_in.get("/dashboard/activations.json")
    logged_in.post(f"/dashboard/activations/{activation.id}/retry")
    clock.travel(6)
    logged_in.get("/dashboard/activations.json")
    logged_in.post(f"/dashboard/activations/{activation.id}/complete")
    page = logged_in.get("/dashboard/history").get_data(as_text=True)
    codes = [sms_code(int(activation.upstream_id), n) for n in (1, 2)]
    assert page.index(f"<code>{codes[0]}</code>") < page.index(f"<code>{codes[1]}</code>")
    for code in codes:
        assert str(escape(sms_text("tg", code))) in page
    assert 'href="/dashboard?service=tg#offer-12">Buy again</a>' in page


def test_the_sms_text_is_stored_with_each_code(logged_in, customer, clock):
    activation = bought(logged_in, customer.id)
    clock.travel(6)
    logged_in.get("/dashboard/activations.json")
    db.session.expire_all()
    [message] = db.session.get(Activation, activation.id).messages
    assert message.text == sms_text("tg", message.code)


def test_an_open_card_carries_a_buy_again_link_for_when_it_closes(logged_in, customer):
    activation = bought(logged_in, customer.id, "wa", "187")
    page = logged_in.get("/dashboard").get_data(as_text=True)
    card = page[page.index(f'id="activation-{activation.id}"') :]
    assert 'href="/dashboard?service=wa#offer-187">Buy again</a>' in card


def test_the_list_view_shows_the_same_cards_compactly(logged_in, customer):
    activation = bought(logged_in, customer.id)
    page = logged_in.get("/dashboard?view=list").get_data(as_text=True)
    assert '<div class="activations list">' in page
    assert f'id="activation-{activation.id}"' in page
    assert '<div class="activations">' in logged_in.get("/dashboard").get_data(as_text=True)
