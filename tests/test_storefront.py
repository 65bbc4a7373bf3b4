"""The customer-facing shop window: the public price list, the footer's pages, where a
log-in lands, the sign-up form's rules (issue 24, customer pages)."""

import pytest

from reseller.main import storefront
from reseller.money import to_units
from reseller.services import pricing, settings
from reseller.upstream.sandbox import SandboxUpstream


def page(client, path, status=200):
    response = client.get(path)
    assert response.status_code == status, (path, response.status_code)
    return response.get_data(as_text=True)


@pytest.fixture
def no_upstream_calls(monkeypatch):
    """Any call to a provider fails the test: the public pages read the catalogue cache."""
    calls = []

    def refuse(self, *args, **kwargs):
        calls.append(args)
        raise AssertionError("a page view called the provider")

    for name in ("get_prices", "get_services", "get_countries", "get_balance", "get_number"):
        monkeypatch.setattr(SandboxUpstream, name, refuse)
    return calls


# --- the public price list -------------------------------------------------------------


def test_prices_are_public_and_list_every_service_with_its_cheapest_price(
    stocked, client, no_upstream_calls
):
    text = page(client, "/prices")
    offers = pricing.service_offers()
    assert offers
    for offer in offers:
        assert offer.name in text
        assert f"/prices/{offer.service}" in text
    telegram = next(o for o in offers if o.service == "tg")
    assert storefront.money(telegram.from_price) in text
    assert f"{telegram.count:,}" in text
    assert not no_upstream_calls


def test_a_service_page_lists_its_countries_cheapest_first_with_flags(
    stocked, client, no_upstream_calls
):
    text = page(client, "/prices/tg")
    quotes = sorted(pricing.price_table(service="tg"), key=lambda q: q.price)
    positions = [text.index(storefront.money(q.price)) for q in quotes]
    assert positions == sorted(positions)
    assert "🇺🇸" in text  # 187, us
    assert not no_upstream_calls


def test_the_price_list_is_searchable_and_sortable_without_javascript(stocked, client):
    text = page(client, "/prices?q=tele")
    assert "Telegram" in text and "WhatsApp" not in text
    by_stock = page(client, "/prices/tg?sort=stock")
    quotes = sorted(pricing.price_table(service="tg"), key=lambda q: -q.count)
    counts = [f"{q.count:,}" for q in quotes]
    positions = [by_stock.index(f">{c}<") for c in counts]
    assert positions == sorted(positions)
    by_name = page(client, "/prices/tg?sort=name&cq=usa")
    assert by_name.index("USA") < by_name.index("USA (virtual)")
    assert "Russia" not in by_name


def test_an_unknown_or_disabled_service_has_no_price_page(stocked, client):
    page(client, "/prices/nope", status=404)


def test_home_page_and_header_link_the_price_list(app, client):
    text = page(client, "/")
    assert text.count('href="/prices"') >= 2


# --- marks and flags --------------------------------------------------------------------


def test_flags_come_from_the_iso_code():
    assert storefront.flag("us") == "\U0001f1fa\U0001f1f8"
    assert storefront.flag("GB") == "\U0001f1ec\U0001f1e7"
    assert storefront.flag(None) == storefront.flag("1") == storefront.flag("usa") == ""


def test_service_marks_are_initials_on_a_stable_colour():
    assert storefront.service_mark("tg", "Telegram") == storefront.Mark("T", "mark mark-tg")
    mark = storefront.service_mark("xx", "Some Service")
    assert mark.initials == "SS"
    assert mark == storefront.service_mark("xx", "Some Service")
    assert mark.css_class.startswith("mark mark-c")


# --- footer, terms, privacy, support ------------------------------------------------------


def test_footer_links_terms_privacy_and_support_on_every_public_page(app, client):
    settings.store("support_contact", "help@example.com")
    from reseller.extensions import db

    db.session.commit()
    for path in ("/", "/prices", "/docs", "/login", "/signup", "/terms", "/privacy"):
        text = page(client, path)
        assert 'href="/terms"' in text and 'href="/privacy"' in text, path
        assert 'href="mailto:help@example.com"' in text, path


def test_terms_and_privacy_have_defaults_and_are_operator_editable(app, client):
    assert "refund" in page(client, "/terms").lower() or "back to your balance" in page(
        client, "/terms"
    )
    assert "email address" in page(client, "/privacy")
    from reseller.extensions import db

    settings.store("terms_text", "Our own terms.\nSecond line.")
    settings.store("privacy_text", "Our own privacy words.")
    db.session.commit()
    assert "Our own terms." in page(client, "/terms")
    assert "Our own privacy words." in page(client, "/privacy")


def test_terms_may_be_longer_than_other_texts():
    spec = settings.BY_KEY["terms_text"]
    assert settings.parse(spec, "x" * 15000) == "x" * 15000
    with pytest.raises(settings.SettingError):
        settings.parse(settings.BY_KEY["support_contact"], "x" * 2001)


def test_the_console_settings_form_edits_the_site_texts(app, client, boss):
    text = page(client, "/admin/settings")
    assert 'name="terms_text"' in text and 'name="privacy_text"' in text


# --- log-in landing, sign-up rules -----------------------------------------------------------


def test_log_in_without_next_lands_customers_on_the_dashboard(app, make_user, auth):
    make_user(email="c@example.com")
    response = auth.login("c@example.com")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/dashboard")


def test_log_in_without_next_lands_admins_in_the_console(app, make_user, auth):
    make_user(email="a@example.com", is_admin=True)
    response = auth.login("a@example.com")
    assert response.headers["Location"].endswith("/admin")


def test_log_in_with_next_goes_there(app, make_user, client):
    make_user(email="c@example.com")
    response = client.post(
        "/login?next=/dashboard/history",
        data={"email": "c@example.com", "password": "password123"},
    )
    assert response.headers["Location"].endswith("/dashboard/history")


def test_sign_up_states_the_password_rules_up_front(app, client):
    text = page(client, "/signup")
    assert "At least 8 characters" in text
    assert 'aria-describedby="password-rules"' in text


def test_money_is_formatted_once(app):
    assert storefront.money(to_units("1.5")) == "1.50 USD"


def test_long_urls_wrap_between_their_parts():
    shown = str(storefront.url_breaks("https://x.example/api?a=1&b=<2>"))
    assert shown == ("https:/<wbr>/<wbr>x.example/<wbr>api<wbr>?a<wbr>=1<wbr>&amp;b<wbr>=&lt;2&gt;")


def test_the_docs_page_urls_carry_break_opportunities(app, client):
    text = page(client, "/docs")
    assert "/<wbr>stubs/<wbr>handler_api.php<wbr>?api_key<wbr>=YOUR_API_KEY" in text
