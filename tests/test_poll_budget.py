"""A slow or hanging upstream must not hold web requests: status polls share a small time
budget per request (WEB_POLL_BUDGET), past which the database answers; the worker's polling
is bounded per pass (WORKER_POLL_BUDGET) and runs after expiry and refunds."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from reseller.extensions import db
from reseller.models import Activation
from reseller.services import catalog, worker
from reseller.services.provider import use_upstream
from reseller.upstream.sms_activate import SmsActivateClient as GrizzlyClient
from tests.conftest import Api, api_key_of
from tests.fake_grizzly import FakeGrizzly, Fault

# Before the budget, each due poll waited 2 tries x 2 s on a hanging upstream: 12 s for the
# three numbers below. The bounds asserted are far below that and far above the budget.
BUDGET = 0.5
SLOW_REQUEST = 2.5


@pytest.fixture
def config_overrides():
    return {"WEB_POLL_BUDGET": BUDGET, "WORKER_POLL_BUDGET": 1.0}


@pytest.fixture
def fake():
    with FakeGrizzly(code_delay=None, early_cancel_seconds=0) as server:
        yield server
        server.latency = 0  # let held answers go before the server stops


@pytest.fixture
def buyer(app, fake, make_user, client, auth, clock):
    grizzly = GrizzlyClient(
        "test-key", url=fake.url, connect_timeout=2, read_timeout=2, retries=1, backoff=0
    )
    use_upstream(app, grizzly)
    catalog.refresh(grizzly)
    user = make_user(email="buyer@example.com", balance="10.00")
    api = Api(client, api_key_of(user))
    ids = [int(api.text("getNumber", service="tg", country="12").split(":")[1]) for _ in range(3)]
    clock.travel(5)  # every poll slot is due
    auth.login("buyer@example.com")
    return api, ids


def timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def test_the_dashboard_answers_from_the_database_when_the_upstream_hangs(client, fake, buyer):
    _api, ids = buyer
    fake.latency = 30  # every answer hangs
    response, elapsed = timed(lambda: client.get("/dashboard"))
    assert response.status_code == 200
    assert elapsed < SLOW_REQUEST, elapsed
    page = response.get_data(as_text=True)
    assert all(f'id="activation-{i}"' in page for i in ids)
    assert fake.count("getStatus") <= 1  # the budget went on the first; the rest were not asked

    feed, elapsed = timed(lambda: client.get("/dashboard/activations.json"))
    assert feed.status_code == 200 and elapsed < SLOW_REQUEST, elapsed
    assert {a["id"] for a in feed.get_json()["activations"]} == set(ids)


def test_get_status_answers_from_the_database_when_the_upstream_hangs(fake, buyer):
    api, ids = buyer
    fake.latency = 30
    answer, elapsed = timed(lambda: api.text("getStatus", id=ids[0]))
    assert answer == "STATUS_WAIT_CODE"
    assert elapsed < SLOW_REQUEST, elapsed
    v2, elapsed = timed(lambda: api("getStatusV2", id=ids[1]).get_json())
    assert v2["sms"] is None and elapsed < SLOW_REQUEST, elapsed


def test_a_healthy_upstream_is_still_polled_inline(client, fake, buyer):
    api, ids = buyer
    fake.deliver_code(db.session.get(Activation, ids[0]).upstream_id, "4321")
    assert api.text("getStatus", id=ids[0]) == "STATUS_OK:4321"


def test_the_sms_text_call_counts_against_the_same_budget(app, fake, buyer):
    """A new code's text is one more call (getStatusV2), inside the poll's budget: when it
    hangs, the code is answered in time and kept without its text."""
    api, ids = buyer
    patient = GrizzlyClient("test-key", url=fake.url, read_timeout=10, retries=0, backoff=0)
    use_upstream(app, patient)  # without the budget, the hanging text would take 10 s
    fake.slow_seconds = 30
    fake.script("getStatusV2", Fault.SLOW)
    fake.deliver_code(db.session.get(Activation, ids[0]).upstream_id, "4321", "Code 4321")
    answer, elapsed = timed(lambda: api.text("getStatus", id=ids[0]))
    assert answer == "STATUS_OK:4321"
    assert elapsed < SLOW_REQUEST, elapsed
    assert fake.count("getStatusV2") == 1
    db.session.expire_all()
    assert db.session.get(Activation, ids[0]).sms_text is None


def test_the_worker_bounds_its_polling_per_pass_and_releases_the_rest(app, fake, buyer, clock):
    _api, ids = buyer
    fake.latency = 0.6  # slow, but answering: the second poll runs into the 1 s budget
    report = worker.PassReport()
    _, elapsed = timed(lambda: worker.poll_due(report))
    assert 1 <= report.polled < len(ids)  # the third was left for the next pass
    assert elapsed < SLOW_REQUEST, elapsed
    db.session.expire_all()
    claims = db.session.execute(select(Activation.id, Activation.claimed_until)).all()
    assert all(until is None or until <= clock.utcnow() for _id, until in claims)
    fake.latency = 0
    worker.poll_due(report)  # the next pass polls the rest
    assert report.polled == len(ids)


def test_expiry_and_refunds_run_before_anything_that_waits_on_the_upstream():
    steps = [step.__name__ for step in worker.STEPS]
    assert steps.index("expire_overdue") < steps.index("poll_due")
    assert steps.index("settle_purchases") < steps.index("poll_due")
    for late in ("refresh_upstream_balance", "refresh_prices", "refresh_offers"):
        assert steps.index(late) > steps.index("poll_due")
