import re

import pytest

from reseller.services import accounts, provider, provider_admin, settings

KEY_RE = re.compile(r'id="api-key-value" class="key">([^<]+)<')


def shown_key(client):
    page = client.get("/docs").get_data(as_text=True)
    match = KEY_RE.search(page)
    return match.group(1) if match else None, page


def test_anonymous_docs_page(client):
    response = client.get("/docs")
    assert response.status_code == 200
    page = response.get_data(as_text=True).replace("<wbr>", "")  # URLs' break points
    assert "SMS-Activate compatible style" in page
    assert "our upstream providers" in page
    assert "Login required" in page
    assert "log in</a>" in page and "create an account</a>" in page
    for title in (
        "Get balance",
        "Request number",
        "Get status",
        "Set status",
        "Active activations",
    ):
        assert title in page
    for meaning in ("1 = number ready", "3 = request another SMS", "6 = complete", "8 = cancel"):
        assert meaning in page
    assert "Error handling" in page
    assert "api_key=YOUR_API_KEY" in page
    assert "http://localhost/api/customer?" in page
    # No asset from outside the server.
    assert not re.search(r'(src|href)="(https?:)?//', page)


def test_home_links_to_docs(client):
    page = client.get("/").get_data(as_text=True)
    assert 'href="/docs"' in page


def test_logged_in_docs_show_the_users_key_in_examples(client, auth, make_user):
    user = make_user(email="me@example.com")
    auth.login("me@example.com")
    key, page = shown_key(client)
    assert key
    assert accounts.api_caller(key).id == user.id
    assert f"api_key={key}&amp;action=getBalance" in page.replace("<wbr>", "")
    assert "Copy" in page and "Regenerate key" in page


def test_regenerate_invalidates_the_old_key(client, auth, make_user):
    user = make_user(email="me@example.com")
    auth.login("me@example.com")
    old, _ = shown_key(client)
    response = client.post("/docs/api-key/regenerate")
    assert response.status_code == 302
    new, page = shown_key(client)
    assert new and new != old
    assert accounts.api_caller(old) is None
    assert accounts.api_caller(new).id == user.id


def test_regenerate_requires_login(client):
    response = client.post("/docs/api-key/regenerate")
    assert response.status_code == 302
    assert "/login" in response.location


def test_key_is_not_stored_in_clear(make_user):
    from sqlalchemy import text

    from reseller.extensions import db

    user = make_user()
    key = accounts.reveal_api_key(user)
    dump = " ".join(
        str(v) for row in db.session.execute(text("SELECT * FROM users")).all() for v in row
    )
    assert key not in dump


# The seed's sentence, with the enabled providers' display names in it.
SEED = "while your customers interact with your branded API."
HERO_URL = "https://hero-sms.com/stubs/handler_api.php"
GRIZZLY_ENV = {"UPSTREAM": "grizzly", "GRIZZLY_API_KEY": "test-grizzly-key"}


def lead(client) -> str:
    page = client.get("/docs").get_data(as_text=True)
    return " ".join(re.search(r'<p class="lead">(.*?)</p>', page, re.S).group(1).split())


@pytest.mark.parametrize("config_overrides", [GRIZZLY_ENV])
def test_docs_name_the_environment_provider_in_the_seed_sentence(client):
    assert f"GrizzlySMS remains the upstream provider {SEED}" in lead(client)


@pytest.mark.parametrize("config_overrides", [GRIZZLY_ENV])
def test_docs_name_every_enabled_provider(client):
    provider_admin.add("fivesim", "5sim", None, "k", priority=5, display_name="5sim")
    provider_admin.add("hero", "sms-activate", HERO_URL, "k", priority=7, display_name="Hero")
    assert f"GrizzlySMS, 5sim and Hero remain the upstream providers {SEED}" in lead(client)
    provider_admin.set_enabled(provider.by_name("hero"), False)
    assert f"GrizzlySMS and 5sim remain the upstream providers {SEED}" in lead(client)


@pytest.mark.parametrize("config_overrides", [GRIZZLY_ENV])
def test_operator_may_hide_the_provider_names(client, boss):
    response = client.post("/admin/settings", data=settings_form(show_provider_names="no"))
    assert response.status_code == 302
    text = lead(client)
    assert SEED not in text and "GrizzlySMS" not in text
    assert "Numbers are supplied by our upstream providers" in text


def test_show_provider_names_is_yes_or_no(client, boss):
    response = client.post("/admin/settings", data=settings_form(show_provider_names="maybe"))
    assert response.status_code == 400
    assert "Not a valid choice" in response.get_data(as_text=True)
    assert settings.raw_value("show_provider_names") == "yes"


def settings_form(**changes) -> dict[str, str]:
    data = {spec.key: settings.raw_value(spec.key) for spec in settings.SPECS}
    return data | changes


# --- examples that name a country are true (issue 24) ----------------------------------------


def _docs(client):
    import html

    response = client.get("/docs")
    assert response.status_code == 200
    return html.unescape(response.get_data(as_text=True).replace("<wbr>", ""))


def test_country_examples_are_true_and_come_from_the_live_catalogue(stocked, client):
    page = _docs(client)
    # us is 187, the USA; 12 is "USA (virtual)" and is never called the USA.
    assert "<code>us</code> for USA" in page and "<code>187</code> for USA" in page
    assert '{"187": {"id": 187, "eng": "USA", "iso": "us", "visible": 1}}' in page
    assert '"countryCode": "187", "countryName": "USA"' in page
    assert '"countryCode": "12", "countryName": "USA"' not in page
    assert "<code>12</code> for the USA" not in page
    assert "country=us" in page


def test_country_examples_follow_the_catalogue_when_the_usa_is_not_sold(stocked, client):
    from reseller.extensions import db
    from reseller.models import Country

    db.session.get(Country, 187).enabled = False
    db.session.commit()
    page = _docs(client)
    assert '"eng": "USA"' not in page
    assert '{"43": {"id": 43, "eng": "Germany", "iso": "de", "visible": 1}}' in page
    assert "country=de" in page


def test_the_docs_tables_scroll_in_their_own_box(app, client):
    page = _docs(client)
    assert '<div class="table-wrap">\n  <table class="errors-table">' in page
