"""/metrics under real gunicorn: counts exact across 4 workers whichever answers the scrape,
a killed worker's counts kept, a previous run's files cleared at start, `flask worker`
counting into the same directory, and each instance (a host) counting its own requests."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ON_POSTGRES
from tests.multiprocess.test_cluster import METRICS_TOKEN, Cluster, call, wait_until

pytestmark = [pytest.mark.multiprocess, pytest.mark.postgres_only, pytest.mark.timeout(600)]

BALANCES = {"action": "getBalance", "answer": "ACCESS_BALANCE"}


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])  # noqa: S607 - a process that is gone at once
    process.wait()
    return process.pid


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if not ON_POSTGRES:
        pytest.skip("needs PostgreSQL")
    cluster = Cluster(tmp_path_factory.mktemp("metrics-cluster"))
    # A previous run's file in web-a's directory: gone once gunicorn has started.
    cluster.metrics_dir("web-a").mkdir()
    cluster.stale = cluster.metrics_dir("web-a") / f"counter_{_dead_pid()}.db"
    cluster.stale.write_bytes(b"\0" * 16)
    try:
        cluster.start()
        yield cluster
    except BaseException:
        for process in cluster.processes:
            if process.log_path.exists():
                tail = process.log_path.read_bytes()[-3000:].decode(errors="replace")
                print(f"--- {process.log_path.name} ---\n{tail}")
        raise
    finally:
        cluster.stop()


def scrape(base: str) -> str:
    response = requests.get(
        base + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10
    )
    assert response.status_code == 200, response.status_code
    return response.text


def value(text: str, name: str, **labels) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


def balances(base: str) -> float:
    return value(scrape(base), "reseller_api_requests_total", **BALANCES)


def every_scrape(base: str, times: int = 12) -> set[float]:
    """What `times` scrapes in a row say (new connections: any worker may answer)."""
    return {balances(base) for _ in range(times)}


def storm(base: str, key: str, count: int) -> None:
    def one(_):
        with requests.Session() as session:
            assert call(session, base, key, action="getBalance").startswith("ACCESS_BALANCE")

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(one, range(count)))


def test_counts_are_exact_across_four_workers_and_survive_a_killed_worker(cluster):
    (web_a, master_a), (web_b, _) = cluster.web
    assert not cluster.stale.exists()
    assert requests.get(web_a + "/metrics", timeout=5).status_code == 401
    (customer,) = cluster.create_customers(1, "1.00")
    key = customer["key"]
    assert every_scrape(web_a) == {0} and every_scrape(web_b) == {0}

    storm(web_a, key, 200)
    assert every_scrape(web_a) == {200}
    durations = value(
        scrape(web_a), "reseller_api_request_duration_seconds_count", action="getBalance"
    )
    assert durations == 200
    # The requests spread over the workers: several wrote their own file.
    files = {p.name for p in cluster.metrics_dir("web-a").glob("counter_*.db")}
    assert len(files) >= 2, files

    # A worker killed: its counts stay in the sum; its replacement counts on.
    victim = cluster.worker_pids(master_a)[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(
        lambda: (
            victim not in cluster.worker_pids(master_a) and len(cluster.worker_pids(master_a)) == 4
        ),
        what="a replacement worker",
    )
    wait_until(lambda: requests.get(web_a + "/healthz", timeout=2).ok, what="web-a")
    assert every_scrape(web_a) == {200}
    storm(web_a, key, 50)
    assert every_scrape(web_a) == {250}

    # Another host counts its own; Prometheus sums the hosts.
    storm(web_b, key, 30)
    assert every_scrape(web_b, 6) == {30}
    assert every_scrape(web_a, 6) == {250}


def test_flask_worker_counts_into_the_hosts_directory(cluster):
    (web_a, _), _ = cluster.web
    upstream = "reseller_upstream_request_duration_seconds_count"
    before = value(scrape(web_a), upstream, provider="grizzly", action="get_balance")
    passed_before = value(scrape(web_a), "reseller_worker_last_pass_timestamp_seconds")
    cluster.flask(
        "worker", "--once", env={"PROMETHEUS_MULTIPROC_DIR": str(cluster.metrics_dir("web-a"))}
    )
    text = scrape(web_a)
    # The pass read the provider's balance (once a minute): a call the web never makes.
    assert value(text, upstream, provider="grizzly", action="get_balance") == before + 1
    last_pass = value(text, "reseller_worker_last_pass_timestamp_seconds")
    assert last_pass > passed_before and abs(last_pass - time.time()) < 60
    assert value(text, "reseller_provider_balance", provider="grizzly") == pytest.approx(100000)
