"""/metrics: who may read it, each metric moved by the action it counts, labels that never
carry a key or a phone, and deploy/'s rules and dashboard naming only metrics we export.

Counters are per process and the suite shares one: every check compares a scrape before
and after. Exact counts across gunicorn workers: tests/multiprocess/test_metrics.py.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from config import ConfigError
from reseller import create_app, metrics, observability
from reseller.clock import utcnow
from reseller.extensions import db
from reseller.models import Provider
from reseller.money import to_units
from reseller.services import payments, stats, webhooks, worker
from tests.conftest import Api, make_config
from tests.webhook_receiver import Receiver

TOKEN = "metrics-token-0123456789"
DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


@pytest.fixture
def config_overrides():
    return {"METRICS_TOKEN": TOKEN}


def scrape(client) -> str:
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.status_code
    assert response.mimetype == "text/plain"
    assert response.headers["Cache-Control"] == "no-store"
    return response.get_data(as_text=True)


def value(text: str, name: str, **labels) -> float:
    """The sample `name` with exactly `labels` (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


def names(text: str) -> set[str]:
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


# --- who may read ------------------------------------------------------------------------


@pytest.mark.parametrize("config_overrides", [{}])
def test_without_a_token_there_are_no_metrics(client):
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", headers={"Authorization": "Bearer x" * 20}).status_code == 404


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer wrong-token-0123456789",
        f"Bearer {TOKEN}x",
        f"Basic {TOKEN}",
        TOKEN,
        "Bearer ",
    ],
)
def test_only_the_bearer_of_the_token_reads_them(client, header):
    headers = {"Authorization": header} if header is not None else {}
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "reseller_" not in response.get_data(as_text=True)


def test_the_token_is_compared_in_constant_time(client, monkeypatch):
    compared = []
    real = observability.hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(observability.hmac, "compare_digest", spy)
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    scrape(client)
    assert compared == [(b"nope", TOKEN.encode()), (TOKEN.encode(), TOKEN.encode())]


def test_a_short_token_is_refused_at_start(tmp_path):
    with pytest.raises(ConfigError, match="METRICS_TOKEN"):
        create_app(make_config(tmp_path, METRICS_TOKEN="short"))


# --- the customer API --------------------------------------------------------------------


def test_api_calls_are_counted_by_action_and_answer_and_timed(client, api, customer):
    before = scrape(client)
    api.text("getBalance")
    api.text("getBalance")
    Api(client, "not-a-key").text("getBalance")
    api.text("no<such>action")
    api.json("getStatus", id="999999")  # JSON: counted by the classic token
    answer = api.text("getNumber", service="tg", country="12")
    after = scrape(client)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    total = "reseller_api_requests_total"
    assert moved(total, action="getBalance", answer="ACCESS_BALANCE") == 2
    assert moved(total, action="getBalance", answer="BAD_KEY") == 1
    assert moved(total, action="other", answer="BAD_ACTION") == 1
    assert moved(total, action="getStatus", answer="NO_ACTIVATION") == 1
    assert moved(total, action="getNumber", answer="ACCESS_NUMBER") == 1
    count = "reseller_api_request_duration_seconds_count"
    assert moved(count, action="getBalance") == 3
    assert moved("reseller_api_request_duration_seconds_bucket", action="getBalance", le="+Inf")
    assert moved("reseller_http_responses_total", code="2xx") >= 6
    # Nothing of an answer but its token, nothing of a request but its action.
    phone = answer.split(":")[2]
    assert phone not in after and api.key not in after and "no<such>" not in after


@pytest.mark.parametrize(
    "config_overrides",
    [{"METRICS_TOKEN": TOKEN, "RATELIMIT_ENABLED": True, "API_RATE_LIMIT": "1 per minute"}],
)
def test_a_rate_limited_call_is_counted(client, api):
    from reseller.extensions import limiter

    limiter.reset()
    before = scrape(client)
    api.text("getBalance")
    params = {"api_key": api.key, "action": "getBalance"}
    assert client.get(api.path, query_string=params).status_code == 429
    after = scrape(client)
    labels = {"action": "getBalance", "answer": "RATE_LIMITED"}
    total = "reseller_api_requests_total"
    assert value(after, total, **labels) - value(before, total, **labels) == 1
    four = {"code": "4xx"}
    assert value(after, "reseller_http_responses_total", **four) == 1 + value(
        before, "reseller_http_responses_total", **four
    )


# --- upstream, purchases -----------------------------------------------------------------


def test_upstream_calls_and_purchases_are_counted_per_provider(client, api):
    before = scrape(client)
    assert api.text("getNumber", service="tg", country="12").startswith("ACCESS_NUMBER")
    after = scrape(client)
    name = "reseller_upstream_request_duration_seconds_count"
    labels = {"provider": "sandbox", "action": "get_number"}
    assert value(after, name, **labels) - value(before, name, **labels) == 1
    sold = {"provider": "sandbox", "outcome": "sold"}
    total = "reseller_purchases_total"
    assert value(after, total, **sold) - value(before, total, **sold) == 1


def test_upstream_errors_are_counted_by_token(client, app, stocked):
    from reseller.services.provider import upstream
    from reseller.upstream import errors as up

    seller = upstream()
    before = scrape(client)
    with pytest.raises(up.UpstreamError):
        seller.get_status("no-such-activation")
    after = scrape(client)
    name = "reseller_upstream_errors_total"
    labels = {"kind": "NO_ACTIVATION", "provider": "sandbox"}
    assert value(after, name, **labels) - value(before, name, **labels) == 1
    timed = {"action": "get_status", "provider": "sandbox"}
    name = "reseller_upstream_request_duration_seconds_count"
    assert value(after, name, **timed) - value(before, name, **timed) == 1


# --- top-ups and webhooks ----------------------------------------------------------------


def test_topups_are_counted_by_gateway_and_status_once_committed(client, make_user):
    user = make_user(email="payer@example.com")
    urls = payments.Urls("http://localhost/cb", "http://localhost/back", "http://localhost/")
    before = scrape(client)
    payment = payments.start_topup(user, to_units("25"), "sandbox", urls)
    payments.sandbox_pay(payment)
    payments.sandbox_pay(payment)  # a duplicate changes nothing, counts nothing
    after = scrape(client)
    total = "reseller_topups_total"
    for status in ("pending", "paid"):
        labels = {"gateway": "sandbox", "status": status}
        assert value(after, total, **labels) - value(before, total, **labels) == 1, status


def test_a_rolled_back_change_is_not_counted(client, app):
    before = scrape(client)
    db.session.execute(update(Provider).values(notes="x"))
    metrics.count_when_committed(metrics.TOPUPS, "sandbox", "flagged")
    db.session.rollback()
    db.session.commit()
    labels = {"gateway": "sandbox", "status": "flagged"}
    assert value(scrape(client), "reseller_topups_total", **labels) == value(
        before, "reseller_topups_total", **labels
    )


def test_webhook_deliveries_are_counted_and_the_backlog_is_read(client, make_user):
    user = make_user(email="hooked@example.com")
    with Receiver() as receiver:
        webhooks.save_url(user, receiver.url)
        webhooks.send_test(user)
        db.session.commit()
        before = scrape(client)
        assert value(before, "reseller_outbox_pending", kind="webhook") == 1
        assert webhooks.deliver_due().delivered == 1
    after = scrape(client)
    name = "reseller_webhook_deliveries_total"
    assert value(after, name, result="delivered") - value(before, name, result="delivered") == 1
    assert value(after, "reseller_outbox_pending", kind="webhook") == 0


# --- read from the database at scrape time -----------------------------------------------


def test_database_figures(client, api, customer):
    text = scrape(client)
    assert value(text, "reseller_activations_open") == 0
    assert value(text, "reseller_customer_wallets_total") == 10.0
    assert value(text, "reseller_worker_last_pass_timestamp_seconds") == 0
    assert value(text, "reseller_breaker_open", provider="sandbox") == 0
    assert value(text, "reseller_outbox_pending", kind="telegram") == 0

    api.text("getNumber", service="tg", country="12")
    worker.run_once()
    stats.provider_balances(max_age=0)
    db.session.execute(update(Provider).values(open_until=utcnow() + dt.timedelta(hours=1)))
    db.session.commit()
    text = scrape(client)
    assert value(text, "reseller_activations_open") == 1
    assert value(text, "reseller_customer_wallets_total") < 10.0
    last_pass = value(text, "reseller_worker_last_pass_timestamp_seconds")
    assert abs(last_pass - utcnow().replace(tzinfo=dt.UTC).timestamp()) < 5
    assert value(text, "reseller_breaker_open", provider="sandbox") == 1
    assert value(text, "reseller_provider_balance", provider="sandbox") > 0


# --- deploy/ -----------------------------------------------------------------------------

# A PromQL metric name: an identifier not followed by "(" (a function), not a label name
# (inside {…}) and not a keyword.
_PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
}


def promql_metric_names(expr: str) -> set[str]:
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r'"[^"]*"', "", expr)  # strings
    found = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
        word = match.group()
        rest = expr[match.end() :].lstrip()
        if rest.startswith("(") or word in _PROMQL_WORDS:
            continue
        if re.fullmatch(r"\d+[smhdwy]?|e\d*|inf|nan", word, re.IGNORECASE):
            continue
        found.add(word)
    return found


def alert_rules() -> dict[str, str]:
    """{alert: expr} of deploy/prometheus-alerts.yml, whose rules keep `alert:` and a
    one-line `expr:` (read without a YAML library)."""
    text = (DEPLOY / "prometheus-alerts.yml").read_text()
    alerts = re.findall(r"^\s*- alert:\s*(\S+)\s*\n\s*expr:\s*(.+)$", text, re.MULTILINE)
    assert len(alerts) == text.count("- alert:"), "each alert: followed by a one-line expr:"
    assert not [expr for _, expr in alerts if expr.strip() in ("|", ">", "|-", ">-")]
    return dict(alerts)


def deploy_expressions() -> list[str]:
    found = list(alert_rules().values())
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    for panel in dashboard["panels"]:
        found.extend(target["expr"] for target in panel.get("targets", []))
    return found


def test_the_parser_finds_metric_names():
    expr = 'sum by (provider) (rate(reseller_purchases_total{outcome="sold"}[5m])) > 0.5 * on(x) up'
    assert promql_metric_names(expr) == {"reseller_purchases_total", "up"}
    expr = (
        "histogram_quantile(0.99, sum by (le) "
        "(rate(reseller_api_request_duration_seconds_bucket[5m])))"
    )
    assert promql_metric_names(expr) == {"reseller_api_request_duration_seconds_bucket"}


def test_every_metric_deploy_uses_is_one_we_export(client, api):
    api.text("getBalance")
    exported = names(scrape(client))
    assert exported <= metrics.metric_names()
    expressions = deploy_expressions()
    assert len(expressions) >= 10
    used = set().union(*(promql_metric_names(e) for e in expressions))
    assert used, expressions
    unknown = used - metrics.metric_names()
    assert not unknown, f"deploy/ uses metrics we do not export: {sorted(unknown)}"


def test_the_alert_rules_cover_what_the_operator_must_hear_of():
    uses = {name: promql_metric_names(expr) for name, expr in alert_rules().items()}

    def alert_using(metric):
        return [name for name, used in uses.items() if metric in used]

    assert alert_using("reseller_worker_last_pass_timestamp_seconds")
    assert alert_using("reseller_breaker_open")
    assert any(
        {"reseller_provider_balance", "reseller_customer_wallets_total"} <= used
        for used in uses.values()
    )
    assert alert_using("reseller_http_responses_total")
    assert alert_using("reseller_outbox_pending")
    scrape_config = (DEPLOY / "prometheus.yml").read_text()
    assert re.search(r"^\s*metrics_path:\s*/metrics\s*$", scrape_config, re.MULTILINE)
    assert re.search(r"^\s*type:\s*Bearer\s*$", scrape_config, re.MULTILINE)
    assert re.search(r"^\s*credentials_file:", scrape_config, re.MULTILINE)
    assert "prometheus-alerts.yml" in scrape_config
