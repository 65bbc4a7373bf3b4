"""The console's Providers page, the activations filter by provider, and /healthz's
per-provider readings."""

from __future__ import annotations

import socket

import pytest
from sqlalchemy import func, select

from reseller.extensions import db
from reseller.models import AuditLog, Provider
from reseller.services import catalog, provider_admin, routing
from reseller.services import provider as provider_accounts
from tests.fake_grizzly import FakeGrizzly

SECRET = "very-secret-provider-key-9876"


@pytest.fixture
def boss(make_user, auth):
    user = make_user(email="boss@example.com", is_admin=True)
    auth.login("boss@example.com")
    return user


@pytest.fixture
def hero():
    with FakeGrizzly(api_key=SECRET) as server:
        yield server


def page(response) -> str:
    return response.get_data(as_text=True)


def test_add_a_provider_on_the_console_and_see_it(client, boss, hero, api, runner):
    response = client.post(
        "/admin/providers",
        data={
            "name": "hero",
            "protocol": "sms-activate",
            "display_name": "HeroSMS",
            "url": hero.url,
            "api_key": SECRET,
            "priority": "0",
            "currency": "USD",
            "rate": "1",
        },
    )
    assert response.status_code == 302
    assert runner.invoke(args=["worker", "--once"]).exit_code == 0  # reads its catalogue
    assert api.text("getNumber", service="tg", country="12").startswith("ACCESS_NUMBER:")
    shown = page(client.get("/admin/providers"))
    assert "HeroSMS" in shown and 'data-health="ok"' in shown
    assert SECRET not in shown and "…9876" in shown
    assert "16 offers" in shown  # the fake's 4 services × 4 countries
    assert "Sandbox" in shown  # the environment's provider, still listed
    audit = db.session.execute(
        select(AuditLog).where(AuditLog.action == "provider.add")
    ).scalar_one()
    assert SECRET not in audit.after

    # The purchase went to hero (priority 0): its figures and the activations filter say so.
    assert ">1</td>" in shown.split("HeroSMS")[1].split("Today")[1][:200]
    listed = page(client.get("/admin/activations?provider=hero"))
    assert "1 activation." in listed
    assert "0 activations." in page(client.get("/admin/activations?provider=sandbox"))

    # The overview's figures split by provider: hero sold one number today, the sandbox none.
    overview = page(client.get("/admin/"))
    split = overview.split('id="by-provider-heading"')[1].split("</section>")[0]
    hero_row = split.split("?provider=hero")[1].split("</tr>")[0]
    assert hero_row.count("<td") == 9 and '<td class="num">1</td>' in hero_row


def test_edit_keeps_the_key_unless_a_new_one_is_given(client, boss, hero):
    provider_admin.add("hero", "sms-activate", hero.url, SECRET)
    form = page(client.get("/admin/providers/hero"))
    assert SECRET not in form
    data = {"display_name": "Hero", "url": hero.url, "api_key": "", "priority": "3",
            "currency": "RUB", "rate": "0.011", "notes": "backup account"}  # fmt: skip
    assert client.post("/admin/providers/hero", data=data).status_code == 302
    db.session.expire_all()
    row = provider_admin.get("hero")
    assert provider_accounts.reveal_key(row) == SECRET
    assert (row.priority, row.currency, str(row.rate)) == (3, "RUB", "0.01100000")
    assert row.rate_updated_at is not None
    data["api_key"] = "a-new-key-0000"
    client.post("/admin/providers/hero", data=data)
    db.session.expire_all()
    assert provider_accounts.reveal_key(provider_admin.get("hero")) == "a-new-key-0000"


@pytest.mark.parametrize(
    "changes",
    [
        {"name": "Not A Slug"},
        {"protocol": "carrier-pigeon"},
        {"url": "javascript:alert(1)"},
        {"priority": "-4"},
        {"rate": "0"},
        {"currency": "dollars!"},
    ],
)
def test_bad_provider_input_is_a_form_error_and_changes_nothing(client, boss, changes):
    data = {"name": "spare", "protocol": "sms-activate", "url": "https://x.example/h.php",
            "api_key": "k", "priority": "1", "currency": "USD", "rate": "1"} | changes  # fmt: skip
    response = client.post("/admin/providers", data=data)
    assert response.status_code == 400
    assert db.session.execute(select(func.count(Provider.id))).scalar_one() <= 1  # the sandbox
    assert db.session.execute(select(func.count(AuditLog.id))).scalar_one() == 0


def test_disable_and_remove_from_the_console(client, boss, api, hero):
    provider_admin.add("hero", "sms-activate", hero.url, SECRET, priority=0)
    catalog.refresh_all()
    api.text("getNumber", service="tg", country="12")
    assert client.post("/admin/providers/hero/remove").status_code == 302
    assert "open activation" in page(client.get("/admin/providers"))
    client.post("/admin/providers/hero/disable")
    db.session.expire_all()
    assert provider_admin.get("hero").enabled is False
    assert "disabled" in page(client.get("/admin/providers"))


def test_healthz_reports_each_provider_without_asking_it(client, hero, runner):
    provider_admin.add("hero", "sms-activate", hero.url, SECRET)
    runner.invoke(args=["worker", "--once"])
    calls = len(hero.calls)
    report = client.get("/healthz").get_json()
    assert len(hero.calls) == calls
    assert set(report["providers"]) == {"hero", "sandbox"}
    assert report["providers"]["hero"]["reachable"] is True
    assert report["providers"]["hero"]["breaker"] == "closed"
    for _ in range(3):
        routing.record_failure("hero", "hero getNumber: read timeout from 127.0.0.1:1")
    public = client.get("/healthz").get_json()["providers"]["hero"]
    assert public["breaker"] == "open" and "error" not in public  # the reason is private
    from reseller.services import health

    assert health.providers_status()["hero"]["error"] == (
        "hero getNumber: read timeout from 127.0.0.1:1"
    )
    assert "error" not in health.providers_status()["sandbox"]


def _card(html: str, name: str) -> str:
    return html.split(f'id="provider-{name}"')[1].split("</section>")[0]


def test_a_refused_connection_is_named_in_words_on_the_card_and_banner(client, boss, runner):
    with socket.socket() as spare:  # a port nothing listens on
        spare.bind(("127.0.0.1", 0))
        port = spare.getsockname()[1]
    provider_admin.add(
        "hero", "sms-activate", f"http://127.0.0.1:{port}/stubs/handler_api.php", SECRET
    )
    runner.invoke(args=["worker", "--once"])
    db.session.expire_all()
    row = provider_admin.get("hero")
    assert row.last_error.endswith(f": connection refused at 127.0.0.1:{port}")
    shown = page(client.get("/admin/providers"))
    card = _card(shown, "hero")
    assert f"connection refused at 127.0.0.1:{port}" in card
    banner = shown.split('id="provider-banner"')[1].split("</div>")[0]
    assert 'href="/admin/providers#provider-hero">hero</a>' in banner
    assert f"connection refused at 127.0.0.1:{port}" in banner
    assert "UNAVAILABLE" not in card and SECRET not in shown


def test_a_refused_key_is_named_on_the_card(client, boss, hero, runner):
    provider_admin.add("hero", "sms-activate", hero.url, "not-the-key")
    runner.invoke(args=["worker", "--once"])
    card = _card(page(client.get("/admin/providers")), "hero")
    assert "BAD_KEY" in card and 'class="badge bad"' in card


def test_card_and_banner_agree_while_the_breaker_is_open(client, boss, hero):
    provider_admin.add("hero", "sms-activate", hero.url, SECRET)
    for _ in range(3):
        routing.record_failure("hero", "hero getNumber: read timeout from 127.0.0.1:1")
    shown = page(client.get("/admin/providers"))
    assert 'data-health="open"' in shown
    card = _card(shown, "hero")
    assert "paused after failures" in card and "read timeout from 127.0.0.1:1" in card
    banner = shown.split('id="provider-banner"')[1].split("</div>")[0]
    assert "paused after failures" in banner and "read timeout from 127.0.0.1:1" in banner


def test_the_add_form_offers_known_providers_and_fills_the_url_without_javascript(client, boss):
    from reseller.upstream.registry import PRESETS

    form = page(client.get("/admin/providers"))
    assert '<option data-protocol="5sim" data-url="https://5sim.net/v1" value="5sim">' in form
    assert "Rate: 1 unit of the provider's currency = this many USD" in form
    data = {"preset": "5sim", "name": "five", "protocol": "sms-activate", "url": "",
            "api_key": "k", "priority": "5", "currency": "RUB", "rate": "0.011"}  # fmt: skip
    assert client.post("/admin/providers", data=data).status_code == 302
    row = provider_admin.get("five")
    assert (row.protocol, row.base_url) == ("5sim", PRESETS["5sim"][1])


def test_the_sandbox_card_does_not_talk_about_grizzly_settings(client, boss):
    card = _card(page(client.get("/admin/providers")), "sandbox")
    assert "GRIZZLY" not in card and "UPSTREAM=sandbox" in card
    assert "GRIZZLY" not in page(client.get("/admin/providers/sandbox"))


def test_provider_action_buttons_sit_in_one_row_not_in_a_paragraph(client, boss):
    card = _card(page(client.get("/admin/providers")), "sandbox")
    actions = card.split('<div class="actions">')[1].split("</div>")[0]
    assert actions.count("<form") == 2 and "<p" not in actions
