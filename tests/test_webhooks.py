"""Customer webhooks: the outbox written with the activation change, signed delivery by the
worker to a loopback receiver, retries and backoff, pause and resume, claims under racing
workers, and the request-forgery guard (address classes checked with a resolver stub)."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time

import pytest
from sqlalchemy import func, select

from reseller import safe_http, special_addresses
from reseller.extensions import db
from reseller.models import Activation, WebhookAttempt, WebhookEndpoint, WebhookEvent
from reseller.models import ActivationStatus as S
from reseller.services import activations, webhooks, worker
from reseller.services.ledger import verify_ledger
from tests.conftest import ON_POSTGRES, Api, api_key_of
from tests.webhook_receiver import Receiver


@pytest.fixture
def config_overrides():
    return {"WEBHOOK_CONNECT_TIMEOUT": 1.0, "WEBHOOK_READ_TIMEOUT": 0.5}


@pytest.fixture
def receiver():
    with Receiver() as server:
        yield server


@pytest.fixture
def customer(make_user):
    return make_user(email="hooked@example.com", balance="10.00")


def verify(received, secret: str) -> dict:
    """What a receiver does, written from the documented scheme (not with our helper)."""
    timestamp = received.headers["x-webhook-timestamp"]
    expected = hmac.new(
        secret.encode(), timestamp.encode() + b"." + received.body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(received.headers["x-webhook-signature"], "sha256=" + expected)
    return json.loads(received.body)


def secret_of(user) -> str:
    return webhooks.reveal_secret(webhooks.endpoint_for(user.id))


def events(**filters) -> list[WebhookEvent]:
    db.session.expire_all()
    stmt = select(WebhookEvent).order_by(WebhookEvent.id)
    for name, value in filters.items():
        stmt = stmt.where(getattr(WebhookEvent, name) == value)
    return list(db.session.execute(stmt).scalars())


def endpoint(user) -> WebhookEndpoint:
    db.session.expire_all()
    return webhooks.endpoint_for(user.id)


# --- the end-to-end: a code upstream reaches the receiver with no getStatus ----------------


def test_sandbox_code_reaches_the_receiver_signed_without_get_status(
    stocked, client, customer, receiver, clock
):
    webhooks.save_url(customer, receiver.url)
    api = Api(client, api_key_of(customer))
    activation_id = int(api.text("getNumber", service="tg", country="12").split(":")[1])
    clock.travel(stocked.config["SANDBOX_CODE_DELAY"] + 5)

    report = worker.run_once()

    assert report.webhooks_delivered == 1, report.summary()
    [received] = receiver.received
    body = verify(received, secret_of(customer))
    activation = db.session.get(Activation, activation_id)
    assert activation.status == S.CODE_RECEIVED
    assert body == {
        "activationId": activation_id,
        "service": "tg",
        "text": activation.sms_text or activation.code,
        "code": activation.code,
        "country": 12,
        "receivedAt": activation.code_at.strftime("%Y-%m-%d %H:%M:%S"),
        "event": "sms",
    }
    [queued] = events()
    assert received.headers["x-webhook-id"] == queued.uid
    assert received.headers["x-webhook-event"] == "sms"
    assert received.headers["content-type"] == "application/json"
    assert queued.status == "delivered" and queued.attempts == 1
    # Delivered once: the next pass sends nothing again.
    worker.run_once()
    assert len(receiver.received) == 1


@pytest.fixture
def grizzly_api(client, grizzly, customer):
    """The customer's API over a fake GrizzlySMS (conftest's `grizzly` and `fake`)."""
    return Api(client, api_key_of(customer))


def test_grizzly_code_and_another_sms_are_each_pushed(grizzly_api, fake, customer, receiver, clock):
    fake.code_delay = None
    webhooks.save_url(customer, receiver.url)
    activation_id = grizzly_api.json("getNumber", service="tg", country="12")["activationId"]
    upstream_id = db.session.get(Activation, activation_id).upstream_id
    customer_calls = fake.count("getStatus")

    fake.deliver_code(upstream_id, "314159")
    clock.travel(4)
    worker.run_once()

    assert fake.count("getStatus") > customer_calls  # the worker asked, not the customer
    [first] = receiver.received
    assert verify(first, secret_of(customer))["code"] == "314159"

    assert grizzly_api.text("setStatus", id=activation_id, status="3") == "ACCESS_RETRY_GET"
    fake.deliver_code(upstream_id, "271828")
    clock.travel(4)
    worker.run_once()

    assert [verify(r, secret_of(customer))["code"] for r in receiver.received] == [
        "314159",
        "271828",
    ]
    ids = {r.headers["x-webhook-id"] for r in receiver.received}
    assert len(ids) == 2


def test_cancel_and_expiry_push_events_without_a_code(grizzly_api, fake, customer, receiver, clock):
    fake.code_delay = None
    webhooks.save_url(customer, receiver.url)
    cancelled = grizzly_api.json("getNumber", service="tg", country="12")["activationId"]
    expiring = grizzly_api.json("getNumber", service="tg", country="12")["activationId"]
    clock.travel(125)
    assert grizzly_api.text("setStatus", id=cancelled, status="8") == "ACCESS_CANCEL"
    clock.travel(20 * 60)
    worker.run_once()

    bodies = [verify(r, secret_of(customer)) for r in receiver.received]
    assert [(b["event"], b["activationId"]) for b in bodies] == [
        ("cancelled", cancelled),
        ("expired", expiring),
    ]
    for body in bodies:
        assert "code" not in body and "text" not in body
        assert body["service"] == "tg" and body["country"] == 12
        assert body["closedAt"]
    assert verify_ledger() == []


def test_no_webhook_costs_no_statement_and_queues_nothing(stocked, client, customer):
    """A customer without a webhook: the state machine's one read also reads the (absent)
    endpoint; nothing else touches the webhook tables."""
    api = Api(client, api_key_of(customer))
    activation_id = api.json("getNumber", service="tg", country="12")["activationId"]
    from tests.test_api import statements_sent  # (recorded at the driver: every path)

    with statements_sent() as (statements, _begun):
        assert activations._transition(
            activation_id, S.CODE_RECEIVED, actor="test", code="1", code_at=None
        )
        db.session.commit()
    touching = [s for s in statements if "webhook" in s.lower()]
    assert len(touching) == 1 and touching[0].lstrip().upper().startswith("SELECT")
    assert "activations" in touching[0]
    assert events() == []


def test_an_event_is_written_with_the_change_or_not_at_all(stocked, client, customer, receiver):
    webhooks.save_url(customer, receiver.url)
    api = Api(client, api_key_of(customer))
    activation_id = api.json("getNumber", service="tg", country="12")["activationId"]
    assert activations._transition(activation_id, S.CODE_RECEIVED, actor="test", code="9")
    db.session.rollback()  # the change never committed: neither does its event
    assert events() == []
    assert activations._transition(activation_id, S.CODE_RECEIVED, actor="test", code="9")
    db.session.commit()
    assert [(e.kind, e.code, e.activation_id) for e in events()] == [("sms", "9", activation_id)]


# --- delivery: retries, timeouts, redirects, pause ----------------------------------------


def test_a_500_is_retried_after_about_ten_seconds_with_the_same_id(customer, receiver, clock):
    webhooks.save_url(customer, receiver.url)
    webhooks.send_test(customer)
    queued = events()[0]  # a test event gets one attempt: make it an SMS event
    queued.kind = "sms"
    db.session.commit()
    receiver.mode = "error"

    counts = webhooks.deliver_due()

    assert (counts.delivered, counts.failed) == (0, 1)
    [failed] = events()
    assert failed.status == "queued" and failed.attempts == 1
    assert failed.last_error == "HTTP 500"
    delay = (failed.next_attempt_at - db.session.get(WebhookAttempt, 1).attempted_at).seconds
    assert 9 <= delay <= 11
    receiver.mode = "ok"
    assert webhooks.deliver_due().delivered == 0  # not due yet
    clock.travel(11)
    assert webhooks.deliver_due().delivered == 1
    first, second = receiver.received
    assert first.headers["x-webhook-id"] == second.headers["x-webhook-id"]
    assert second.headers["x-webhook-attempt"] == "2"
    assert events()[0].status == "delivered"
    attempts = webhooks.recent_attempts(endpoint(customer).id)
    assert [(a.status_code, a.error) for a in attempts] == [(200, None), (500, "HTTP 500")]
    assert endpoint(customer).consecutive_failures == 0


def test_a_hanging_receiver_times_out_and_is_retried(app, customer, receiver, clock):
    webhooks.save_url(customer, receiver.url)
    event_row = webhooks.send_test(customer)
    event_row.kind = "cancelled"
    db.session.commit()
    receiver.mode = "hang"

    assert webhooks.deliver_due().failed == 1

    [attempt] = webhooks.recent_attempts(endpoint(customer).id)
    assert attempt.error == "timed out" and attempt.status_code is None
    assert attempt.duration_ms < 3000  # the read timeout (0.5 s), not the hang (3 s)
    receiver.mode = "ok"
    clock.travel(11)
    assert webhooks.deliver_due().delivered == 1


def test_a_redirect_is_not_followed(customer, receiver):
    webhooks.save_url(customer, receiver.url)
    webhooks.send_test(customer)
    receiver.mode = "redirect"

    assert webhooks.deliver_due().failed == 1

    assert receiver.paths() == ["/hook"]  # never /elsewhere
    [attempt] = webhooks.recent_attempts(endpoint(customer).id)
    assert attempt.status_code == 302 and "redirect" in attempt.error
    assert events()[0].status == "failed"  # a test event gets one attempt


def test_backoff_runs_from_ten_seconds_to_a_day_then_the_event_fails(
    customer, receiver, clock, monkeypatch
):
    assert webhooks.retry_delay(1) == 10
    assert round(webhooks.retry_delay(webhooks.MAX_ATTEMPTS - 1)) == 24 * 3600
    delays = [webhooks.retry_delay(n) for n in range(1, webhooks.MAX_ATTEMPTS)]
    assert delays == sorted(delays)
    monkeypatch.setattr(webhooks, "PAUSE_AFTER", 100)
    webhooks.save_url(customer, receiver.url)
    webhooks.send_test(customer)
    events()[0].kind = "sms"
    db.session.commit()
    receiver.mode = "error"
    for _ in range(webhooks.MAX_ATTEMPTS):
        assert webhooks.deliver_due().failed == 1
        clock.travel(25 * 3600)
    [gone] = events()
    assert gone.status == "failed" and gone.attempts == webhooks.MAX_ATTEMPTS
    assert webhooks.deliver_due().failed == 0
    assert len(receiver.received) == webhooks.MAX_ATTEMPTS


def test_repeated_failure_pauses_the_endpoint_and_saving_resumes_it(
    customer, receiver, clock, monkeypatch
):
    monkeypatch.setattr(webhooks, "PAUSE_AFTER", 3)
    webhooks.save_url(customer, receiver.url)
    receiver.mode = "error"
    for _ in range(3):
        webhooks.send_test(customer)
        webhooks.deliver_due()
    paused = endpoint(customer)
    assert paused.paused_at is not None
    assert "3 failed deliveries" in paused.pause_reason and "HTTP 500" in paused.pause_reason
    with pytest.raises(webhooks.WebhookError):
        webhooks.send_test(customer)

    # Events keep being written while paused, and wait.
    db.session.add(
        WebhookEvent(uid="a" * 32, endpoint_id=paused.id, kind="sms", code="1", status="queued")
    )
    db.session.commit()
    receiver.mode = "ok"
    clock.travel(3600)
    assert webhooks.deliver_due().delivered == 0
    assert len(receiver.received) == 3

    webhooks.save_url(customer, receiver.url)  # saving resumes

    resumed = endpoint(customer)
    assert resumed.paused_at is None and resumed.consecutive_failures == 0
    assert webhooks.deliver_due().delivered == 1
    assert receiver.received[-1].headers["x-webhook-id"] == "a" * 32


def test_two_workers_racing_deliver_each_event_once(app, customer, receiver):
    webhooks.save_url(customer, receiver.url)
    for _ in range(12):
        webhooks.send_test(customer)
    receiver.delay = 0.05  # both workers are mid-delivery at the same time
    start = threading.Barrier(2)
    failures = []

    def run():
        try:
            with app.app_context():
                start.wait()
                for _ in range(3):
                    webhooks.deliver_due()
                db.session.remove()
        except Exception as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures
    ids = [r.headers["x-webhook-id"] for r in receiver.received]
    assert len(ids) == 12 and len(set(ids)) == 12
    assert {e.status for e in events()} == {"delivered"}
    assert db.session.execute(select(func.count(WebhookAttempt.id))).scalar_one() == 12


@pytest.mark.skipif(not ON_POSTGRES, reason="SKIP LOCKED is PostgreSQL's")
def test_claims_skip_rows_another_worker_has_locked(app, customer, receiver):
    """On PostgreSQL a worker's candidate SELECT skips rows locked by another's claim."""
    webhooks.save_url(customer, receiver.url)
    webhooks.send_test(customer)
    other = db.engine.connect()
    try:
        other.exec_driver_sql("BEGIN")
        other.exec_driver_sql("SELECT id FROM webhook_events FOR UPDATE")
        assert webhooks.deliver_due().delivered == 0
    finally:
        other.exec_driver_sql("ROLLBACK")
        other.close()
    assert webhooks.deliver_due().delivered == 1


# --- the request-forgery guard ----------------------------------------------------------

REFUSED_ADDRESSES = [
    "127.0.0.1",  # loopback
    "10.1.2.3",  # private
    "172.16.5.4",
    "192.168.1.10",
    "100.64.0.1",  # carrier-grade NAT
    "169.254.169.254",  # link-local: cloud metadata
    "0.0.0.0",  # unspecified
    "224.0.0.1",  # multicast
    "240.0.0.1",  # reserved
    "255.255.255.255",
    "192.0.2.10",  # documentation
    "::1",
    "fe80::1",
    "fc00::1",  # unique local
    "ff02::1",  # multicast
    "::ffff:127.0.0.1",  # IPv4-mapped loopback
    "::ffff:10.0.0.1",
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "2002:c0a8:0101::1",  # 6to4 of 192.168.1.1
]


@pytest.fixture
def production_rules(app, monkeypatch):
    """Production's address rule, DNS answered by a stub, and any connection attempt caught."""
    app.config["WEBHOOK_ALLOW_PRIVATE_TARGETS"] = False
    answers: dict[str, list[str]] = {}
    monkeypatch.setattr(safe_http, "resolve", lambda host, port: answers.get(host, [host]))
    attempts = []
    real_connect = socket.socket.connect

    def watched(self, address):
        attempts.append(address)
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", watched)
    return answers, attempts


@pytest.mark.parametrize("address", REFUSED_ADDRESSES)
def test_every_non_public_address_is_refused_without_a_connection(
    production_rules, customer, address
):
    answers, attempts = production_rules
    answers["hooks.example.com"] = ["93.184.216.34", address]  # one bad address is enough
    with pytest.raises(webhooks.WebhookError, match="private, local or reserved"):
        webhooks.save_url(customer, "https://hooks.example.com/sms")
    literal = f"[{address}]" if ":" in address else address
    with pytest.raises(webhooks.WebhookError):
        webhooks.save_url(customer, f"http://{literal}:8080/sms")
    outcome = safe_http.post(
        "https://hooks.example.com/sms", b"{}", {}, timeout=(1, 1), deadline=3, allow_private=False
    )
    assert outcome.status_code is None and outcome.error.startswith("refused:")
    assert attempts == []
    assert webhooks.endpoint_for(customer.id) is None


def _addresses_decided_by(block):
    """The first, a middle and the last address of `block` that no nested block decides."""
    if block.prefix == "64:ff9b::/96":  # NAT64: the IPv4 address inside decides too
        return ["64:ff9b::808:808", "64:ff9b::102:304"]
    network = block.network
    picks = {network[0], network[network.num_addresses // 2], network[-1]}
    return sorted(str(ip) for ip in picks if special_addresses.block_of(ip) is block)


@pytest.mark.parametrize(
    "block",
    special_addresses.IPV4 + special_addresses.IPV6,
    ids=lambda block: block.prefix,
)
def test_every_registry_block_is_refused_unless_globally_reachable(production_rules, block):
    answers, attempts = production_rules
    addresses = _addresses_decided_by(block)
    assert addresses, f"{block.prefix}: every address is decided by a nested block"
    for address in addresses:
        answers["hooks.example.com"] = [address]
        if block.reachable is True:
            safe_http.check_url("https://hooks.example.com/", allow_private=False)
        else:
            with pytest.raises(safe_http.TargetRefused, match="private, local or reserved"):
                safe_http.check_url("https://hooks.example.com/", allow_private=False)
    assert attempts == []


@pytest.mark.parametrize(
    "address",
    [
        "fec0::1",  # deprecated site-local
        "feff:ffff::1",
        "3fff::1",  # documentation (RFC 9637)
        "3fff:fff:ffff::1",
        "192.0.0.1",  # IETF protocol assignments
        "192.0.0.200",
        "5f00::1",  # SRv6 SIDs
        "100:0:0:1::1",  # dummy prefix
        "64:ff9b::c000:1",  # NAT64 of 192.0.0.1
        "4000::1",  # outside global unicast
    ],
)
def test_non_public_addresses_python_lets_through_are_refused(production_rules, address):
    answers, _ = production_rules
    answers["hooks.example.com"] = [address]
    with pytest.raises(safe_http.TargetRefused, match="private, local or reserved"):
        safe_http.check_url("https://hooks.example.com/", allow_private=False)


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "1.1.1.1",
        "93.184.216.34",
        "192.0.1.1",  # next to 192.0.0.0/24 and 192.0.2.0/24
        "198.20.0.1",  # past benchmarking 198.18.0.0/15
        "223.255.255.254",
        "2606:4700::1111",
        "2a00:1450:4001::1",
        "2001:4860:4860::8888",  # Google, just past 2001::/23
        "3fff:1000::1",  # past 3fff::/20
        "64:ff9b::808:808",  # NAT64 of 8.8.8.8
    ],
)
def test_public_addresses_are_accepted(production_rules, address):
    answers, _ = production_rules
    answers["hooks.example.com"] = [address]
    assert safe_http.check_url("https://hooks.example.com/", allow_private=False).port == 443


def test_a_public_address_is_accepted(production_rules, customer):
    answers, attempts = production_rules
    answers["hooks.example.com"] = ["93.184.216.34", "2606:2800:220:1::1"]
    webhooks.save_url(customer, "https://hooks.example.com/sms?token=1")
    assert endpoint(customer).url == "https://hooks.example.com/sms?token=1"
    assert attempts == []


def test_the_address_is_checked_again_at_delivery(production_rules, customer):
    """DNS may answer differently later (rebinding): delivery refuses, nothing connects."""
    answers, attempts = production_rules
    answers["hooks.example.com"] = ["93.184.216.34"]
    webhooks.save_url(customer, "http://hooks.example.com:8080/sms")
    webhooks.send_test(customer)
    answers["hooks.example.com"] = ["127.0.0.1"]

    assert webhooks.deliver_due().failed == 1

    assert attempts == []
    [attempt] = webhooks.recent_attempts(endpoint(customer).id)
    assert attempt.error.startswith("refused:")


@pytest.fixture
def lookups(monkeypatch) -> list[str]:
    """Every host name resolves to loopback; the list records the names looked up."""
    names: list[str] = []

    def stub(host, port):
        names.append(host)
        return ["127.0.0.1"]

    monkeypatch.setattr(safe_http, "resolve", stub)
    return names


def test_the_connection_goes_to_the_checked_address_with_the_host_name(
    app, customer, receiver, lookups
):
    webhooks.save_url(customer, f"http://hooks.example.com:{receiver.port}/pinned")
    webhooks.send_test(customer)
    assert webhooks.deliver_due().delivered == 1
    [received] = receiver.received
    assert received.path == "/pinned"
    assert received.headers["host"] == f"hooks.example.com:{receiver.port}"
    assert lookups == ["hooks.example.com", "hooks.example.com"]  # on save, at delivery


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://hooks.example.com/x", "http:// or https://"),
        ("https://hooks.example.com:22/x", "port 80, 443"),
        ("http://hooks.example.com:1023/x", "port 80, 443"),
        ("https://user:pw@hooks.example.com/x", "user name or password"),
        ("https:///x", "no host"),
        ("https://hooks.example.com/" + "x" * 600, "at most 500"),
        ("https://hooks.example.com/a b", "spaces"),
        ("", "Enter a URL"),
        ("http://[::1/x", "not a valid URL"),
    ],
)
def test_bad_urls_are_refused_with_a_reason(production_rules, customer, url, message):
    answers, _ = production_rules
    answers["hooks.example.com"] = ["93.184.216.34"]
    with pytest.raises(webhooks.WebhookError, match=message.replace("+", r"\+")):
        webhooks.save_url(customer, url)
    assert webhooks.endpoint_for(customer.id) is None


def test_an_unresolvable_host_is_refused(production_rules, customer, monkeypatch):
    def fail(host, port):
        raise socket.gaierror("no such host")

    monkeypatch.setattr(safe_http, "resolve", fail)
    with pytest.raises(webhooks.WebhookError, match="cannot be resolved"):
        webhooks.save_url(customer, "https://nowhere.example.com/")


# --- upkeep ----------------------------------------------------------------------------------


def test_prune_bounds_attempts_queue_and_old_events(customer, receiver, clock, monkeypatch):
    monkeypatch.setattr(webhooks, "QUEUE_LIMIT", 3)
    webhooks.save_url(customer, receiver.url)
    hook = endpoint(customer)
    for n in range(webhooks.ATTEMPTS_KEPT + 5):
        db.session.add(
            WebhookAttempt(endpoint_id=hook.id, event_uid=f"{n:032d}", kind="sms", duration_ms=1)
        )
    old_id = webhooks.send_test(customer).id
    webhooks.deliver_due()
    clock.travel(8 * 24 * 3600)
    for _ in range(5):
        webhooks.send_test(customer)

    webhooks.prune()

    assert db.session.get(WebhookEvent, old_id) is None  # delivered 8 days ago
    statuses = [(e.status, e.last_error) for e in events()]
    assert statuses[:2] == [("failed", "dropped: more than 3 events waiting")] * 2
    assert [s for s, _ in statuses[2:]] == ["queued"] * 3
    kept = db.session.execute(
        select(func.count(WebhookAttempt.id)).where(WebhookAttempt.endpoint_id == hook.id)
    ).scalar_one()
    assert kept == webhooks.ATTEMPTS_KEPT


def test_figures_count_today(customer, receiver):
    webhooks.save_url(customer, receiver.url)
    webhooks.send_test(customer)
    webhooks.deliver_due()
    receiver.mode = "error"
    webhooks.send_test(customer)
    webhooks.deliver_due()
    webhooks.send_test(customer)
    figures = webhooks.figures()
    assert (figures.endpoints, figures.paused) == (1, 0)
    assert (figures.queued, figures.delivered_today, figures.failed_today) == (1, 1, 1)


def test_removing_the_webhook_stops_events(stocked, client, customer, receiver):
    webhooks.save_url(customer, receiver.url)
    old_secret = secret_of(customer)
    webhooks.send_test(customer)
    webhooks.remove(customer)
    assert webhooks.endpoint_for(customer.id) is None
    assert [(e.status, e.last_error) for e in events()] == [("failed", "dropped: webhook removed")]
    api = Api(client, api_key_of(customer))
    activation_id = api.json("getNumber", service="tg", country="12")["activationId"]
    assert activations._transition(activation_id, S.CODE_RECEIVED, actor="test", code="1")
    db.session.commit()
    assert len(events()) == 1
    assert webhooks.deliver_due().delivered == 0 and receiver.received == []
    webhooks.save_url(customer, receiver.url)  # set again: a new secret
    assert secret_of(customer) != old_secret


def test_an_event_written_as_the_webhook_is_removed_is_dropped(stocked, client, customer, receiver):
    """The state machine read the endpoint id just before the customer removed it."""
    webhooks.save_url(customer, receiver.url)
    hook_id = endpoint(customer).id
    webhooks.remove(customer)
    api = Api(client, api_key_of(customer))
    activation_id = api.json("getNumber", service="tg", country="12")["activationId"]
    webhooks.record_transition(hook_id, activation_id, S.CANCELLED, {})
    db.session.commit()  # the foreign key still holds: the activation change is never refused
    assert webhooks.deliver_due().delivered == 0
    assert [(e.status, e.last_error) for e in events()] == [("failed", "dropped: webhook removed")]
    assert receiver.received == []


# --- the Account page -----------------------------------------------------------------------


def test_account_page_sets_tests_and_shows_the_webhook(client, auth, customer, receiver):
    auth.login(customer.email)
    page = client.get("/dashboard/account").get_data(as_text=True)
    assert 'id="webhook"' in page and "Signing secret" not in page

    refused = client.post("/dashboard/account/webhook", data={"url": "ftp://example.com/x"})
    assert refused.status_code == 200  # the page again, with the reason
    assert "Use an http:// or https:// URL." in refused.get_data(as_text=True)
    assert webhooks.endpoint_for(customer.id) is None

    saved = client.post("/dashboard/account/webhook", data={"url": receiver.url})
    assert saved.status_code == 302 and saved.location.endswith("/dashboard/account#webhook")
    secret = secret_of(customer)
    page = client.get("/dashboard/account").get_data(as_text=True)
    assert secret in page and receiver.url in page and "Active" in page

    assert client.post("/dashboard/account/webhook/test").status_code == 302
    webhooks.deliver_due()
    verify(receiver.received[0], secret)
    page = client.get("/dashboard/account").get_data(as_text=True)
    assert "HTTP 200" in page and ">test " in page

    client.post("/dashboard/account/webhook/secret")
    assert secret_of(customer) != secret
    page = client.get("/dashboard/account").get_data(as_text=True)
    assert secret not in page and secret_of(customer) in page

    client.post("/dashboard/account/webhook/remove")
    assert webhooks.endpoint_for(customer.id) is None


def test_account_page_shows_a_pause_and_saving_resumes(
    client, auth, customer, receiver, monkeypatch
):
    monkeypatch.setattr(webhooks, "PAUSE_AFTER", 1)
    webhooks.save_url(customer, receiver.url)
    receiver.mode = "error"
    webhooks.send_test(customer)
    webhooks.deliver_due()
    auth.login(customer.email)
    page = client.get("/dashboard/account").get_data(as_text=True)
    assert "Paused" in page and "HTTP 500" in page
    test = client.post("/dashboard/account/webhook/test", follow_redirects=True)
    assert "Delivery is paused" in test.get_data(as_text=True)
    resumed = client.post(
        "/dashboard/account/webhook", data={"url": receiver.url}, follow_redirects=True
    )
    assert "delivery resumed" in resumed.get_data(as_text=True)
    assert endpoint(customer).paused_at is None


def test_another_customer_never_sees_the_secret(client, auth, customer, make_user, receiver):
    webhooks.save_url(customer, receiver.url)
    other = make_user(email="other@example.com")
    auth.login(other.email)
    page = client.get("/dashboard/account").get_data(as_text=True)
    assert secret_of(customer) not in page and receiver.url not in page
    client.post("/dashboard/account/webhook/remove")
    assert webhooks.endpoint_for(customer.id) is not None


# --- the docs ---------------------------------------------------------------------------------


def test_the_documented_verification_accepts_our_requests_and_refuses_forgeries(
    client, customer, receiver
):
    from reseller.docs.content import WEBHOOK_VERIFY_EXAMPLE

    namespace: dict = {}
    exec(WEBHOOK_VERIFY_EXAMPLE, namespace)  # noqa: S102 - our own documented example
    documented = namespace["verify"]
    webhooks.save_url(customer, receiver.url)
    webhooks.send_test(customer)
    webhooks.deliver_due()
    [received] = receiver.received
    headers = {
        "X-Webhook-Timestamp": received.headers["x-webhook-timestamp"],
        "X-Webhook-Signature": received.headers["x-webhook-signature"],
    }
    assert documented(secret_of(customer), headers, received.body)
    assert not documented(secret_of(customer), headers, received.body + b" ")
    assert not documented("whsec_wrong", headers, received.body)
    stale = dict(headers, **{"X-Webhook-Timestamp": str(int(headers["X-Webhook-Timestamp"]) - 900)})
    assert not documented(secret_of(customer), stale, received.body)

    page = client.get("/docs").get_data(as_text=True)
    assert 'id="webhooks"' in page and "X-Webhook-Signature" in page
    assert "&#34;event&#34;: &#34;sms&#34;" in page or '"event": "sms"' in page


# --- the console ------------------------------------------------------------------------------


def test_console_shows_the_webhook_and_todays_figures(
    client, auth, make_user, customer, receiver, monkeypatch
):
    monkeypatch.setattr(webhooks, "PAUSE_AFTER", 2)
    webhooks.save_url(customer, receiver.url)
    webhooks.send_test(customer)
    webhooks.deliver_due()
    receiver.mode = "error"
    for _ in range(2):
        webhooks.send_test(customer)
        webhooks.deliver_due()
    admin = make_user(email="boss@example.com", is_admin=True)
    auth.login(admin.email)

    page = client.get(f"/admin/customers/{customer.id}").get_data(as_text=True)
    assert receiver.url in page and "Paused" in page and "HTTP 500" in page
    assert secret_of(customer) not in page
    overview = client.get("/admin").get_data(as_text=True)
    assert "<strong>1</strong> delivered" in overview
    assert '<strong class="warn">2</strong> failed' in overview
    assert "1 paused after repeated failure" in overview


def _certificate(tmp_path, name: str):
    """A self-signed certificate for `name`: (cert path, key path)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_https_is_pinned_to_the_checked_address_and_verifies_the_host_name(
    tmp_path, receiver, monkeypatch
):
    """TLS to the pinned address still sends the host name (SNI) and checks the certificate
    against it: a certificate for another name is refused."""
    import ssl

    cert, key = _certificate(tmp_path, "hooks.example.com")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    names = []
    context.sni_callback = lambda sock, name, ctx: names.append(name)
    receiver.server.socket = context.wrap_socket(receiver.server.socket, server_side=True)
    monkeypatch.setattr(safe_http, "resolve", lambda host, port: ["127.0.0.1"])

    def post(host):
        return safe_http.post(
            f"https://{host}:{receiver.port}/tls",
            b"{}",
            {},
            timeout=(2, 2),
            deadline=5,
            allow_private=True,
            verify=str(cert),
        )

    assert post("hooks.example.com").status_code == 200
    assert names == ["hooks.example.com"]
    assert receiver.received[0].headers["host"] == f"hooks.example.com:{receiver.port}"
    wrong = post("other.example.com")
    assert wrong.status_code is None and wrong.error.startswith("TLS error")


@pytest.mark.parametrize("config_overrides", [{"RATELIMIT_ENABLED": True}])
def test_saving_and_testing_are_rate_limited_per_account(client, auth, customer, receiver):
    auth.login(customer.email)
    answers = [
        client.post("/dashboard/account/webhook", data={"url": receiver.url}).status_code
        for _ in range(31)
    ]
    assert answers[:30] == [302] * 30 and answers[30] == 429


# --- a receiver that holds on: the deadline, claims, and everyone else ------------------

# A byte a second, each within the read timeout: only the deadline ends the delivery.
TRICKLE_LIMITS = {
    "WEBHOOK_CONNECT_TIMEOUT": 1.0,
    "WEBHOOK_READ_TIMEOUT": 2.0,
    "WEBHOOK_DELIVERY_DEADLINE": 3.0,
}


def in_app(app, function):
    def run():
        with app.app_context():
            try:
                function()
            finally:
                db.session.remove()

    return run


def _sms_event(user) -> WebhookEvent:
    event_row = webhooks.send_test(user)
    event_row.kind = "sms"  # retried, unlike a test event
    db.session.commit()
    return event_row


@pytest.mark.parametrize("config_overrides", [TRICKLE_LIMITS])
def test_a_trickling_receiver_is_cut_at_the_deadline_and_never_served_twice_at_once(
    app, customer, receiver, clock
):
    webhooks.save_url(customer, receiver.url)
    uid = _sms_event(customer).uid
    db.session.commit()  # SQLite: reading `uid` began a transaction, holding the write lock
    receiver.mode = "trickle"  # a byte a second for 8 s; the deadline is 3 s
    first = threading.Thread(target=in_app(app, webhooks.deliver_due))
    started = time.monotonic()
    first.start()
    first.join(timeout=3 + 2)
    ran_past_deadline = first.is_alive()
    took = time.monotonic() - started

    # Much later, past any claim the first worker took, a second worker sends the event
    # again: the first must not be sending it still.
    clock.travel(3600)
    receiver.mode = "ok"
    second = webhooks.deliver_due()
    first.join(timeout=15)

    assert not ran_past_deadline, f"the delivery still ran after {took:.1f} s"
    assert receiver.most_at_once[uid] == 1
    assert second.delivered == 1
    timed_out, delivered = reversed(webhooks.recent_attempts(endpoint(customer).id))
    assert timed_out.error == "timed out" and 2900 <= timed_out.duration_ms < 4000
    assert delivered.error is None
    assert events()[0].status == "delivered"


def test_a_claim_outlives_every_delivery_it_covers(app):
    limits = webhooks._Limits.configured()
    assert limits.claim_seconds > webhooks.PER_ENDPOINT * limits.deadline
    assert limits.deadline == 10  # the default docs/webhooks.md states


@pytest.mark.parametrize(
    "config_overrides",
    [{**TRICKLE_LIMITS, "WEBHOOK_DELIVERY_DEADLINE": 6, "SANDBOX_CODE_DELAY": 10**6}],
)
def test_a_trickling_receiver_delays_neither_other_customers_nor_expiry(
    app, stocked, client, customer, make_user, receiver, clock
):
    other = make_user(email="other@example.com", balance="10.00")
    api = Api(client, api_key_of(other))
    lifetime = stocked.config["ACTIVATION_LIFETIME"]

    def buy() -> int:
        return int(api.text("getNumber", service="tg", country="12").split(":")[1])

    with Receiver() as fast:
        webhooks.save_url(customer, receiver.url)
        webhooks.save_url(other, fast.url)
        first = buy()
        clock.travel(lifetime + 1)
        _sms_event(customer)  # first in line, to the trickling receiver
        receiver.mode = "trickle"
        courier = webhooks.Courier.serve(app)  # as `flask worker` runs
        try:
            started = time.monotonic()
            report = worker.run_once()
            one = time.monotonic() - started
            assert report.expired == 1 and report.webhooks_delivered == 1, report.summary()
            assert [json.loads(r.body)["event"] for r in fast.received] == ["expired"]

            # The next pass, while the slow delivery goes on: its expiry is not held either.
            second = buy()
            clock.travel(lifetime + 1)
            started = time.monotonic()
            report = worker.run_once()
            two = time.monotonic() - started
            assert report.expired == 1 and report.webhooks_delivered == 1, report.summary()
            assert len(fast.received) == 2
            assert len(receiver.received) == 1  # not sent again while under way
        finally:
            counts = courier.close()
    assert one < webhooks.PASS_WAIT + 2 and two < webhooks.PASS_WAIT + 2, (one, two)
    assert counts.failed == 1  # the slow one, cut at its deadline
    [slow] = webhooks.recent_attempts(endpoint(customer).id)
    assert slow.error == "timed out" and slow.duration_ms < 7000
    db.session.expire_all()
    assert db.session.get(Activation, first).status == S.EXPIRED
    assert db.session.get(Activation, second).status == S.EXPIRED
    verify_ledger()


# --- internationalised host names, and faults of our own --------------------------------


def test_an_internationalised_host_goes_out_in_idna_form(app, customer, receiver, lookups):
    webhooks.save_url(customer, f"http://Пример.РФ:{receiver.port}/hook")
    webhooks.send_test(customer)

    assert webhooks.deliver_due().delivered == 1

    [received] = receiver.received
    assert received.headers["host"] == f"xn--e1afmkfd.xn--p1ai:{receiver.port}"
    assert lookups == ["xn--e1afmkfd.xn--p1ai", "xn--e1afmkfd.xn--p1ai"]  # on save, delivery
    assert safe_http.parse_target("https://bücher.example/ä?q=ü").host == "xn--bcher-kva.example"
    assert safe_http.parse_target("https://bücher.example/ä?q=ü").path == "/%C3%A4?q=%C3%BC"


def test_an_invalid_internationalised_host_is_refused(app, customer):
    with pytest.raises(webhooks.WebhookError, match="not a valid domain name"):
        webhooks.save_url(customer, "https://a\u200db.example/hook")  # a joiner out of place


def test_any_exception_in_a_delivery_is_a_failed_attempt_with_backoff(
    app, customer, receiver, clock, monkeypatch
):
    monkeypatch.setattr(webhooks, "PAUSE_AFTER", 3)
    webhooks.save_url(customer, receiver.url)
    _sms_event(customer)

    def broken(*args, **kwargs):
        raise RuntimeError("a fault of ours")

    monkeypatch.setattr(safe_http, "post", broken)
    assert webhooks.deliver_due().failed == 1
    [event_row] = events()
    assert event_row.attempts == 1 and event_row.last_error == "internal error (RuntimeError)"
    assert event_row.claimed_until is None
    assert webhooks.deliver_due().failed == 0  # backing off, not retried at once
    clock.travel(11)

    monkeypatch.undo()
    monkeypatch.setattr(webhooks, "PAUSE_AFTER", 3)
    monkeypatch.setattr(webhooks, "payload", broken)  # preparing fails as well
    assert webhooks.deliver_due().failed == 1
    assert events()[0].attempts == 2
    clock.travel(60)
    assert webhooks.deliver_due().failed == 1
    assert endpoint(customer).paused_at is not None  # the streak pauses it as any failure
    assert "internal error (RuntimeError)" in endpoint(customer).pause_reason
    assert receiver.received == []


def test_a_slow_dns_answer_is_cut_off(app, customer, monkeypatch):
    """getaddrinfo has no timeout, and the customer picks the DNS server that answers."""
    release = threading.Event()

    def slow(*args, **kwargs):
        release.wait(8)
        raise socket.gaierror("too late")

    monkeypatch.setattr(socket, "getaddrinfo", slow)
    try:
        started = time.monotonic()
        with pytest.raises(webhooks.WebhookError, match="did not resolve within 2 s"):
            webhooks.save_url(customer, "https://slow.example.com/hook")
        outcome = safe_http.post(
            "https://slow.example.com/hook",
            b"{}",
            {},
            timeout=(1, 1),
            deadline=10,
            allow_private=True,
        )
        took = time.monotonic() - started
    finally:
        release.set()
    assert outcome.error == "refused: The host name slow.example.com did not resolve within 2 s."
    assert took < 2 * safe_http.DNS_TIMEOUT + 1


def test_a_post_made_inside_a_running_event_loop_is_delivered(receiver, lookups):
    """A caller in async code (its thread already runs an event loop, where anyio.run cannot
    start another): the exchange runs in a thread of its own."""
    import asyncio

    async def inside_a_loop():
        return safe_http.post(
            f"http://hooks.example.com:{receiver.port}/loop",
            b"{}",
            {},
            timeout=(2, 2),
            deadline=5,
            allow_private=True,
        )

    outcome = asyncio.run(inside_a_loop())
    assert outcome.delivered and outcome.status_code == 200
    assert [r.path for r in receiver.received] == ["/loop"]
