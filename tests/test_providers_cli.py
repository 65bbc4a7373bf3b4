"""`flask providers …`: add, list, enable/disable, priority, remove, routing — all audited,
keys never echoed."""

from __future__ import annotations

import json

from sqlalchemy import select

from reseller.extensions import db
from reseller.models import Activation, AuditLog, Provider
from reseller.services import provider, settings
from tests.fake_grizzly import FakeGrizzly


def audit_actions() -> list[str]:
    return list(db.session.execute(select(AuditLog.action).order_by(AuditLog.id)).scalars())


def test_add_list_and_change_providers(app, runner):
    with FakeGrizzly(api_key="hero-secret-key-123") as hero:
        result = runner.invoke(
            args=[
                "providers", "add", "hero", "--protocol", "sms-activate", "--url", hero.url,
                "--api-key", "hero-secret-key-123", "--priority", "2", "--display-name", "HeroSMS",
            ]
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert "hero-secret-key-123" not in result.output and "…-123" in result.output
        row = db.session.execute(select(Provider).where(Provider.name == "hero")).scalar_one()
        assert row.api_key_encrypted and "hero-secret" not in row.api_key_encrypted
        assert provider.reveal_key(row) == "hero-secret-key-123"

        assert runner.invoke(args=["prices", "sync"]).exit_code == 0
        listing = runner.invoke(args=["providers", "list", "--refresh"]).output
        assert "routing policy: priority" in listing
        hero_line = next(line for line in listing.splitlines() if line.startswith("hero"))
        assert "sms-activate" in hero_line and "enabled" in hero_line
        assert "priority 2" in hero_line and "balance 100.00" in hero_line
        assert "health closed" in hero_line
        assert "sandbox" in listing  # the environment's provider

    assert runner.invoke(args=["providers", "disable", "hero"]).exit_code == 0
    assert "disabled" in runner.invoke(args=["providers", "list"]).output
    assert runner.invoke(args=["providers", "enable", "hero"]).exit_code == 0
    assert runner.invoke(args=["providers", "priority", "hero", "0"]).exit_code == 0
    db.session.expire_all()
    assert db.session.get(Provider, row.id).priority == 0
    assert runner.invoke(args=["providers", "routing", "cheapest"]).exit_code == 0
    settings.forget()
    assert settings.get("routing_policy") == "cheapest"
    assert runner.invoke(args=["providers", "remove", "hero"]).exit_code == 0
    assert db.session.execute(select(Provider).where(Provider.name == "hero")).first() is None

    assert audit_actions() == [
        "provider.add",
        "provider.disable",
        "provider.enable",
        "provider.edit",
        "setting.update",
        "provider.remove",
    ]
    for entry in db.session.execute(select(AuditLog)).scalars():
        assert "hero-secret-key-123" not in (entry.before or "") + (entry.after or "")
    added = db.session.execute(
        select(AuditLog).where(AuditLog.action == "provider.add")
    ).scalar_one()
    assert json.loads(added.after)["api_key"] == "…-123"


def test_the_key_may_come_from_the_environment_or_a_prompt(app, runner, monkeypatch):
    monkeypatch.setenv("PROVIDER_API_KEY", "from-the-environment")
    result = runner.invoke(
        args=[
            "providers",
            "add",
            "bower",
            "--protocol",
            "sms-activate",
            "--url",
            "https://smsbower.example/stubs/handler_api.php",
        ]
    )
    assert result.exit_code == 0, result.output
    monkeypatch.delenv("PROVIDER_API_KEY")
    result = runner.invoke(
        args=["providers", "add", "five", "--protocol", "5sim"], input="typed-secret\n"
    )
    assert result.exit_code == 0, result.output
    assert "typed-secret" not in result.output
    rows = {p.name: p for p in db.session.execute(select(Provider)).scalars()}
    assert provider.reveal_key(rows["bower"]) == "from-the-environment"
    assert provider.reveal_key(rows["five"]) == "typed-secret"
    assert rows["five"].base_url == "https://5sim.net/v1"  # the protocol's known address


def test_bad_input_changes_nothing(app, runner):
    for args in (
        ["providers", "add", "Bad Name", "--protocol", "sms-activate", "--api-key", "k"],
        ["providers", "add", "x", "--protocol", "sms-activate", "--url", "ftp://x",
         "--api-key", "k"],
        ["providers", "add", "x", "--protocol", "sms-activate", "--url", "https://x.example",
         "--api-key", "k", "--rate", "-1"],
        ["providers", "priority", "nobody", "3"],
        ["providers", "routing", "random"],
    ):  # fmt: skip
        result = runner.invoke(args=args)
        assert result.exit_code != 0, args
    assert audit_actions() == []
    assert [p.name for p in provider.all_providers()] == ["sandbox"]


def test_remove_is_refused_while_activations_are_open(app, runner, make_user):
    user = make_user()
    provider.all_providers()
    db.session.add(
        Activation(
            user_id=user.id, service="tg", country_id=0, status="allocated", price=100,
            upstream_name="sandbox", upstream_id="1",
        )
    )  # fmt: skip
    db.session.commit()
    result = runner.invoke(args=["providers", "remove", "sandbox"])
    assert result.exit_code != 0 and "open activation" in result.output
    assert runner.invoke(args=["providers", "disable", "sandbox"]).exit_code == 0
    assert runner.invoke(args=["providers", "remove", "sandbox"]).exit_code != 0
