"""The actions public clients call beside the activation flow: getTopCountriesByService,
getNumbersStatus, getBalanceAndCashBack, getOperators and getHistory (issue 28)."""

import calendar

import pytest

from reseller.docs.content import NOT_SERVED
from reseller.extensions import db
from reseller.models import PricingRule
from reseller.money import parse_amount
from reseller.services import pricing


def test_balance_and_cashback_is_the_balance(api):
    assert api.text("getBalanceAndCashBack") == "ACCESS_BALANCE:10.00"
    assert api.json("getBalanceAndCashBack") == {"balance": 10.0}


def test_top_countries_best_first_from_our_prices(api):
    answer = api("getTopCountriesByService", service="tg").get_json()
    quotes = pricing.top_countries("tg")
    assert [row["country"] for row in answer.values()] == [q.country_id for q in quotes]
    assert list(answer) == [str(i) for i in range(len(quotes))]
    prices = [row["price"] for row in answer.values()]
    assert prices == sorted(prices) and len(prices) >= 3
    first = answer["0"]
    assert first["price"] == first["retail_price"] and first["count"] > 0
    # a pricing rule moves a country: the answer follows our retail prices
    db.session.add(
        PricingRule(service="tg", country_id=first["country"], fixed_price=parse_amount("99.99"))
    )
    db.session.commit()
    moved = api("getTopCountriesByService", service="tg", freePrice="true").get_json()
    assert moved[str(len(moved) - 1)]["country"] == first["country"]
    assert moved[str(len(moved) - 1)]["price"] == 99.99


@pytest.mark.parametrize("service", ["", "nosuch"])
def test_top_countries_needs_a_service(api, service):
    assert api.text("getTopCountriesByService", service=service) == "BAD_SERVICE"


def test_numbers_status_is_our_stock_per_service(api):
    answer = api("getNumbersStatus", country="12").get_json()
    stock = pricing.stock_by_service(12)
    assert answer == {f"{code}_0": count for code, count in stock.items()}
    assert answer["tg_0"] > 0 and "ot_0" in answer
    assert api.text("getNumbersStatus", country="nowhere") == "BAD_COUNTRY"


def test_operators(api):
    answer = api("getOperators", country="12").get_json()
    assert answer == {"status": "success", "countryOperators": {"12": ["any"]}}
    every = api("getOperators").get_json()["countryOperators"]
    assert {"0", "12", "16"} <= set(every)


def test_history_newest_first_bounded_and_own(api, client, make_user, clock):
    from tests.conftest import Api, api_key_of

    first = int(api.text("getNumber", service="tg", country="12").split(":")[1])
    clock.travel(6)  # the sandbox delivers the code
    assert api.text("getStatus", id=first).startswith("STATUS_OK:")
    clock.travel(100)
    second = int(api.text("getNumber", service="ot", country="12").split(":")[1])
    rows = api("getHistory").get_json()
    assert [row["id"] for row in rows] == [second, first]
    assert rows[1]["sms"] and rows[1]["status"] == "code_received"
    assert rows[0]["sms"] == [] and rows[0]["currency"] == 840
    assert isinstance(rows[0]["cost"], float) and rows[0]["phone"].isdigit()
    assert [r["id"] for r in api("getHistory", limit="1").get_json()] == [second]
    assert [r["id"] for r in api("getHistory", offset="1").get_json()] == [first]

    cut = calendar.timegm(clock.utcnow().timetuple()) - 50
    assert [r["id"] for r in api("getHistory", end=str(cut)).get_json()] == [first]
    assert [r["id"] for r in api("getHistory", start=str(cut)).get_json()] == [second]
    assert api.text("getHistory", start="yesterday") == "BAD_PARAMETER"

    other = Api(client, api_key_of(make_user(email="other@example.com")))
    assert other("getHistory").get_json() == []


def test_docs_page_documents_the_new_actions_and_what_is_left(client, api):
    text = client.get("/docs").get_data(as_text=True)
    for action in (
        "getTopCountriesByService",
        "getNumbersStatus",
        "getOperators",
        "getBalanceAndCashBack",
        "getHistory",
        "getFullSms",
        "FULL_SMS:",
        "getRentServicesAndCountries",
        "getRentNumber",
        "getRentStatus",
        "setRentStatus",
        "getRentList",
        "continueRentNumber",
        "getContinueRentPriceNumber",
        "NO_ID_RENT",
        "INCORECT_STATUS",
        "rent_sms",
    ):
        assert action in text, action
    assert "Not served" in text
    assert "getFullSms" not in NOT_SERVED
    for action in NOT_SERVED:  # what the page calls unserved answers BAD_ACTION
        assert action in text
        assert api.text(action, id="1") == "BAD_ACTION", action
