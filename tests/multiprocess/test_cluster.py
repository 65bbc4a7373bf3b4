"""Two gunicorn instances (4 workers each) on one PostgreSQL, a fake GrizzlySMS process and
a Redis for shared rate-limit counters: money and data stay right under real concurrency,
a worker killed in the middle of a purchase loses nothing, and with a second provider the
customers keep buying when the first starts failing half-way."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from config import TestConfig
from tests.conftest import ON_POSTGRES

pytestmark = [pytest.mark.multiprocess, pytest.mark.postgres_only, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SECRET = "cluster-secret-key-0123456789abcdef"
CUSTOMERS = 10
PURCHASES_EACH = 25  # attempts; the balance allows exactly ALLOWED
ALLOWED = 10
PRICE = "0.39"  # tg in country 12: 0.30 upstream + 30 %
POLL_INTERVAL = 1
METRICS_TOKEN = "cluster-metrics-token-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, timeout=30.0, interval=0.2, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: S110 - not up yet
            pass
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


class Cluster:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.processes: list[subprocess.Popen] = []
        base = make_url(TestConfig().SQLALCHEMY_DATABASE_URI)
        self.db_name = f"cluster_{os.getpid()}"
        admin = create_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.db_name}"'))
            conn.execute(text(f'CREATE DATABASE "{self.db_name}"'))
        admin.dispose()
        self.admin_url = base
        self.db_url = base.set(database=self.db_name).render_as_string(hide_password=False)
        self.engine = create_engine(self.db_url)

    # -- processes ----------------------------------------------------------------------

    def spawn(self, name: str, args: list[str], env=None) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        process.log_path = self.tmp / f"{name}.log"
        self.processes.append(process)
        return process

    def start(self) -> None:
        redis_server = shutil.which("redis-server")
        if redis_server is None:
            if os.environ.get("CI") == "true":
                pytest.fail("redis-server missing (scripts/system-packages.sh installs it)")
            pytest.skip("redis-server is not installed")
        self.redis_port = free_port()
        self.spawn(
            "redis",
            [
                redis_server,
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
        )
        import redis

        self.redis = redis.Redis(port=self.redis_port)
        wait_until(self.redis.ping, what="redis")

        fake_port = free_port()
        self.fake = self.spawn(
            "fake",
            [
                sys.executable,
                "tests/fake_grizzly.py",
                "--port",
                str(fake_port),
                "--code-delay",
                "-1",
                "--early-cancel-seconds",
                "0",
                "--balance",
                "100000.00",
            ],
        )
        self.fake_url = f"http://127.0.0.1:{fake_port}"
        wait_until(lambda: requests.get(self.fake_url + "/_fake/state", timeout=1).ok, what="fake")

        self.env = {
            **os.environ,
            "RESELLER_ENV": "production",
            "SECRET_KEY": SECRET,
            "DATABASE_URL": self.db_url,
            "UPSTREAM": "grizzly",
            "GRIZZLY_API_KEY": "test-key",
            "GRIZZLY_API_URL": self.fake_url + "/stubs/handler_api.php",
            "UPSTREAM_CONNECT_TIMEOUT": "1",
            "UPSTREAM_READ_TIMEOUT": "15",
            "UPSTREAM_POLL_INTERVAL": str(POLL_INTERVAL),
            "EARLY_CANCEL_WINDOW": "0",
            "RATELIMIT_STORAGE_URI": f"redis://127.0.0.1:{self.redis_port}",
            "API_RATE_LIMIT": "100000 per hour",
            "SETTLE_AFTER": "3",
            "LOG_LEVEL": "WARNING",
            "PAYMENT_GATEWAYS": "sandbox",  # production runs the sandbox gateway when named
            "METRICS_TOKEN": METRICS_TOKEN,
        }
        self.flask("db", "upgrade")
        self.flask("prices", "sync")
        self.web = []
        for name in ("web-a", "web-b"):
            port = free_port()
            # The production gunicorn configuration: gthread workers, 4 per instance.
            env = {
                **self.env,
                "GUNICORN_BIND": f"127.0.0.1:{port}",
                "WEB_CONCURRENCY": "4",
                "GUNICORN_THREADS": "4",
                "GUNICORN_GRACEFUL_TIMEOUT": "5",
                # Each instance stands for a host: its own metrics directory.
                "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir(name)),
            }
            master = self.spawn(name, [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py"], env=env)
            url = f"http://127.0.0.1:{port}"
            self.web.append((url, master))
        for url, _ in self.web:
            wait_until(
                lambda u=url: requests.get(u + "/healthz", timeout=2).status_code == 200,
                timeout=60,
                what=url,
            )

    def metrics_dir(self, name: str) -> Path:
        return self.tmp / f"metrics-{name}"

    def flask(
        self, *args: str, check: bool = True, env: dict | None = None
    ) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [str(BIN / "flask"), "--app", "wsgi", *args],
            cwd=ROOT,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check:
            assert result.returncode == 0, result.stdout + result.stderr
        return result

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        self.engine.dispose()
        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)'))
        admin.dispose()

    # -- data ---------------------------------------------------------------------------

    def create_customers(self, count: int, balance: str) -> list[dict]:
        """Accounts made in this process through the same services the CLI uses."""
        from reseller import create_app
        from reseller.extensions import db
        from reseller.money import parse_amount
        from reseller.services import accounts, wallet

        config = TestConfig()
        config.SECRET_KEY = SECRET
        config.SQLALCHEMY_DATABASE_URI = self.db_url
        app = create_app(config)
        customers = []
        with app.app_context():
            for i in range(count):
                email = f"c{i}-{random.randrange(10**6)}@example.com"
                user = accounts.create_user(email, "password123")
                wallet.adjust(user.id, parse_amount(balance), note="cluster test")
                customers.append({"email": email, "key": accounts.reveal_api_key(user)})
            db.session.remove()
            db.engine.dispose()
        return customers

    def query(self, sql: str, **params):
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).all()

    def close_breakers(self) -> None:
        """Start a test with every provider's breaker closed: the tests share the cluster,
        and an earlier test's overloaded upstream (cancels timing out under the storm) may
        have opened one for BREAKER_COOLDOWN seconds."""
        with self.engine.begin() as conn:
            conn.execute(text("UPDATE providers SET failures = 0, open_until = NULL"))

    def fake_calls(self) -> list:
        return requests.get(self.fake_url + "/_fake/calls", timeout=5).json()

    def worker_pids(self, master: subprocess.Popen) -> list[int]:
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                if ppid == master.pid:
                    pids.append(int(entry.name))
        return pids


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if not ON_POSTGRES:
        pytest.skip("needs PostgreSQL")
    cluster = Cluster(tmp_path_factory.mktemp("cluster"))
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


def call(session: requests.Session, base: str, key: str, **params) -> str:
    response = session.get(
        base + "/stubs/handler_api.php", params={"api_key": key, **params}, timeout=30
    )
    assert response.status_code == 200, (response.status_code, response.text[:200])
    return response.text


def test_storm_through_two_instances(cluster):
    customers = cluster.create_customers(CUSTOMERS, f"{float(PRICE) * ALLOWED:.2f}")
    bases = [url for url, _ in cluster.web]
    local = threading.local()
    requests_by_key: Counter = Counter()
    lock = threading.Lock()

    def session() -> requests.Session:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        return local.session

    def api(key: str, **params) -> str:
        with lock:
            requests_by_key[key] += 1
        return call(session(), random.choice(bases), key, **params)

    # Phase 1: 250 purchases interleaved with polls, through both instances at once.
    bought: dict[str, list[str]] = defaultdict(list)
    answers: dict[str, Counter] = defaultdict(Counter)

    def purchase(customer: dict) -> None:
        body = api(customer["key"], action="getNumber", service="tg", country="12")
        if body.startswith("ACCESS_NUMBER:"):
            activation_id = body.split(":")[1]
            with lock:
                bought[customer["email"]].append(activation_id)
            assert api(customer["key"], action="getStatus", id=activation_id) == "STATUS_WAIT_CODE"
            answers[customer["email"]]["ACCESS_NUMBER"] += 1
        else:
            answers[customer["email"]][body] += 1

    jobs = [c for c in customers for _ in range(PURCHASES_EACH)]
    random.shuffle(jobs)
    with ThreadPoolExecutor(max_workers=32) as pool:
        list(pool.map(purchase, jobs))
    for customer in customers:
        got = answers[customer["email"]]
        expected = {"ACCESS_NUMBER": ALLOWED, "NO_BALANCE": PURCHASES_EACH - ALLOWED}
        assert got == Counter(expected), got
    negative = cluster.query("SELECT count(*) FROM users WHERE balance < 0")[0][0]
    assert negative == 0

    # Phase 2: 50 clients poll every activation as fast as they can.
    all_ids = [(c["key"], i) for c in customers for i in bought[c["email"]]]
    calls_before = Counter(
        params.get("id") for action, params in cluster.fake_calls() if action == "getStatus"
    )
    started = time.monotonic()
    stop_at = started + 5

    def poller(_):
        count = 0
        while time.monotonic() < stop_at:
            key, activation_id = random.choice(all_ids)
            assert api(key, action="getStatus", id=activation_id) == "STATUS_WAIT_CODE"
            count += 1
        return count

    with ThreadPoolExecutor(max_workers=50) as pool:
        polls = sum(pool.map(poller, range(50)))
    elapsed = time.monotonic() - started
    calls_after = Counter(
        params.get("id") for action, params in cluster.fake_calls() if action == "getStatus"
    )
    upstream_ids = dict(cluster.query("SELECT upstream_id, id FROM activations"))
    cap = int(elapsed / POLL_INTERVAL) + 2
    worst = max(calls_after[u] - calls_before[u] for u in upstream_ids)
    print(f"{polls} polls in {elapsed:.1f}s; at most {worst} upstream getStatus per activation")
    assert polls > len(all_ids)  # far more customer polls than upstream calls
    assert worst <= cap, (worst, cap)

    # Phase 3: every activation cancelled three times at once, through both instances.
    def cancel(item) -> str:
        key, activation_id = item
        return api(key, action="setStatus", id=activation_id, status="8")

    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(cancel, all_ids * 3))
    # An overloaded upstream may time out a cancel: that answers ERROR_SQL and changes
    # nothing, and the client's retry finishes the job (the upstream then says
    # ALREADY_CANCEL if the first attempt did reach it). Anything else is a failure.
    assert set(results) <= {"ACCESS_CANCEL", "ERROR_SQL"}, Counter(results)
    for item, answer in zip(all_ids * 3, results, strict=True):
        for _ in range(5):
            if answer == "ACCESS_CANCEL":
                break
            time.sleep(0.5)
            answer = cancel(item)
        assert answer == "ACCESS_CANCEL", (item, answer)
    refunds = cluster.query(
        "SELECT activation_id, count(*) FROM ledger_entries WHERE kind = 'refund' "
        "GROUP BY activation_id"
    )
    assert len(refunds) == CUSTOMERS * ALLOWED
    assert all(count == 1 for _, count in refunds)
    balances = cluster.query(
        "SELECT balance FROM users WHERE email = ANY(:emails)",
        emails=[c["email"] for c in customers],
    )
    assert {b for (b,) in balances} == {int(float(PRICE) * ALLOWED * 10_000)}

    # The books balance, checked by the operator command.
    result = cluster.flask("ledger", "verify")
    assert "ledger OK" in result.stdout

    # Rate-limit counters live in Redis, shared by both instances: each customer's hits
    # there add up to every request it made, whichever instance served it.
    from reseller import create_app
    from reseller.services import accounts

    config = TestConfig()
    config.SECRET_KEY = SECRET
    with create_app(config).app_context():
        for customer in customers[:3]:
            digest = accounts.api_key_digest(customer["key"])[:32]
            keys = cluster.redis.keys(f"*{digest}*")
            assert keys, "no rate-limit counter in redis"
            hits = sum(int(cluster.redis.get(k) or 0) for k in keys)
            assert hits == requests_by_key[customer["key"]]


def test_worker_killed_mid_purchase_loses_nothing(cluster):
    cluster.close_breakers()
    (customer,) = cluster.create_customers(1, "1.00")
    url, master = cluster.web[0]
    requests.post(
        cluster.fake_url + "/_fake/script",
        json={"action": "getNumberV2", "answers": ["slow"], "process": True},
        timeout=5,
    )
    outcome: dict = {}

    def buy():
        try:
            outcome["body"] = call(
                requests.Session(),
                url,
                customer["key"],
                action="getNumber",
                service="tg",
                country="12",
            )
        except requests.RequestException as exc:
            outcome["error"] = type(exc).__name__

    thread = threading.Thread(target=buy)
    thread.start()
    user_id = cluster.query("SELECT id FROM users WHERE email = :e", e=customer["email"])[0][0]

    def held():
        rows = cluster.query("SELECT status FROM activations WHERE user_id = :u", u=user_id)
        return rows and rows[0][0] == "pending"

    try:
        wait_until(held, timeout=10, interval=0.05, what="the hold")
    except AssertionError:
        thread.join(5)
        raise AssertionError(f"no hold; the purchase answered {outcome}") from None
    # The hold is committed and the upstream is holding its answer: kill the workers.
    for pid in cluster.worker_pids(master):
        os.kill(pid, signal.SIGKILL)
    thread.join(30)
    assert "error" in outcome or outcome.get("body") != "", outcome
    # The master starts new workers; the instance serves again without a restart by hand.
    wait_until(
        lambda: requests.get(url + "/healthz", timeout=2).status_code == 200,
        timeout=60,
        what="restarted workers",
    )
    balance = cluster.query("SELECT balance FROM users WHERE id = :u", u=user_id)[0][0]
    assert balance == 10_000 - 3_900  # still held: the outcome is unknown
    status = cluster.query("SELECT status FROM activations WHERE user_id = :u", u=user_id)[0][0]
    assert status == "pending"

    # The worker settles it: refund now, then release the number bought upstream.
    time.sleep(3.5)
    first = cluster.flask("worker", "--once", check=False)
    assert "settled 1" in first.stdout, first.stdout + first.stderr
    time.sleep(3.5)
    second = cluster.flask("worker", "--once", check=False)
    assert "orphans cancelled 1" in second.stdout, second.stdout + second.stderr
    balance = cluster.query("SELECT balance FROM users WHERE id = :u", u=user_id)[0][0]
    assert balance == 10_000
    # The number bought for the killed purchase was tied to it and released upstream.
    state = requests.get(cluster.fake_url + "/_fake/state", timeout=5).json()
    (tied,) = cluster.query("SELECT upstream_id FROM activations WHERE user_id = :u", u=user_id)[0]
    assert tied and state["activations"][tied]["state"] == "cancelled", (tied, state)
    assert "ledger OK" in cluster.flask("ledger", "verify").stdout


def test_two_providers_one_failing_half_way(cluster):
    """A backup provider (its own fake process) at priority 2. Half-way through a purchase
    storm the primary starts refusing purchases (HTTP 503): every order still sells, at the
    same price, through the backup; the breaker, shared through the database, soon stops the
    instances asking the primary; every later action goes to the provider that sold."""
    cluster.close_breakers()
    port = free_port()
    cluster.spawn(
        "backup",
        [
            sys.executable,
            "tests/fake_grizzly.py",
            "--port",
            str(port),
            "--code-delay",
            "-1",
            "--early-cancel-seconds",
            "0",
            "--balance",
            "100000.00",
            "--first-id",
            "900000001",
        ],
    )
    backup_url = f"http://127.0.0.1:{port}"
    wait_until(lambda: requests.get(backup_url + "/_fake/state", timeout=1).ok, what="backup")
    cluster.flask(
        "providers", "add", "backup", "--protocol", "sms-activate", "--priority", "2",
        "--url", backup_url + "/stubs/handler_api.php", "--api-key", "test-key",
    )  # fmt: skip
    cluster.flask("prices", "sync")
    each = 8
    customers = cluster.create_customers(5, f"{float(PRICE) * each:.2f}")
    bases = [url for url, _ in cluster.web]

    def buy(customer) -> str:
        body = call(requests.Session(), random.choice(bases), customer["key"],
                    action="getNumber", service="tg", country="12")  # fmt: skip
        assert body.startswith("ACCESS_NUMBER:"), body
        return body.split(":")[1]

    def storm(per_customer: int) -> list[str]:
        jobs = [c for c in customers for _ in range(per_customer)]
        with ThreadPoolExecutor(max_workers=16) as pool:
            return list(pool.map(buy, jobs))

    first = storm(3)
    primary_before = sum(1 for action, _ in cluster.fake_calls() if action == "getNumberV2")
    down = {"body": "Service Unavailable", "status": 503}
    requests.post(
        cluster.fake_url + "/_fake/script",
        json={"action": "getNumberV2", "answers": [down] * 100},
        timeout=5,
    )
    second = storm(3)

    sellers = dict(cluster.query("SELECT id::text, upstream_name FROM activations"))
    assert {sellers[i] for i in first} == {"grizzly"}
    assert {sellers[i] for i in second} == {"backup"}
    sold = cluster.query(
        "SELECT DISTINCT price FROM activations WHERE id::text = ANY(:ids)", ids=first + second
    )
    prices = {p for (p,) in sold}
    assert prices == {int(float(PRICE) * 10_000)}  # the quote, whoever sold
    asked = sum(1 for action, _ in cluster.fake_calls() if action == "getNumberV2")
    assert asked - primary_before >= 3  # refused at least BREAKER_FAILURES times
    breaker = cluster.query("SELECT failures, open_until FROM providers WHERE name = 'grizzly'")
    assert breaker[0][0] >= 3 and breaker[0][1] is not None
    # The breaker is open for every process: the next orders never ask the primary.
    third = storm(2)
    assert sum(1 for action, _ in cluster.fake_calls() if action == "getNumberV2") == asked
    sellers = dict(cluster.query("SELECT id::text, upstream_name FROM activations"))
    assert {sellers[i] for i in third} == {"backup"}
    second += third

    # Cancel everything: each cancel reaches the provider that sold the number.
    keys = {c["email"]: c["key"] for c in customers}
    owners = dict(
        cluster.query(
            "SELECT a.id::text, u.email FROM activations a JOIN users u ON u.id = a.user_id "
            "WHERE a.id::text = ANY(:ids)",
            ids=first + second,
        )
    )
    for activation_id in first + second:
        key = keys[owners[activation_id]]
        answer = call(requests.Session(), random.choice(bases), key,
                      action="setStatus", id=activation_id, status="8")  # fmt: skip
        assert answer == "ACCESS_CANCEL", (activation_id, answer)
    upstream = dict(cluster.query("SELECT id::text, upstream_id FROM activations"))
    primary_cancels = {
        p["id"] for a, p in cluster.fake_calls() if a == "setStatus" and p.get("status") == "8"
    }
    backup_calls = requests.get(backup_url + "/_fake/calls", timeout=5).json()
    backup_cancels = {p["id"] for a, p in backup_calls if a == "setStatus"}
    assert {upstream[i] for i in first} <= primary_cancels
    assert {upstream[i] for i in second} == backup_cancels
    assert not backup_cancels & primary_cancels
    balances = cluster.query(
        "SELECT balance FROM users WHERE email = ANY(:emails)", emails=list(keys)
    )
    assert {b for (b,) in balances} == {int(float(PRICE) * each * 10_000)}
    assert "ledger OK" in cluster.flask("ledger", "verify").stdout
    listing = cluster.flask("providers", "list").stdout
    assert "backup" in listing and "grizzly" in listing


def test_duplicate_payment_notifications_across_instances_credit_once(cluster):
    """20 copies of one signed "paid" notification, at once, through both instances (eight
    gunicorn workers): one credit, and the books agree."""
    import hashlib
    import hmac
    import json

    from reseller import create_app
    from reseller.extensions import db
    from reseller.money import parse_amount
    from reseller.services import accounts, payments

    (customer,) = cluster.create_customers(1, "1.00")
    config = TestConfig()
    config.SECRET_KEY = SECRET
    config.SQLALCHEMY_DATABASE_URI = cluster.db_url
    with create_app(config).app_context():
        user = accounts.user_by_email(customer["email"])
        urls = payments.Urls(callback="http://x/cb", back="http://x/back", site="http://x/")
        payment = payments.start_topup(user, parse_amount("42.00"), "sandbox", urls)
        payment_id, invoice_id, user_id = payment.id, payment.invoice_id, user.id
        db.session.remove()
        db.engine.dispose()

    # The sandbox's scheme: hex HMAC-SHA256 of the body, keyed with HMAC-SHA256(SECRET_KEY,
    # "sandbox-payments").
    body = json.dumps(
        {
            "invoice_id": invoice_id,
            "status": "paid",
            "amount": "42.00",
            "currency": "USD",
            "order_id": f"topup-{payment_id}",
        }
    ).encode()
    key = hmac.new(SECRET.encode(), b"sandbox-payments", hashlib.sha256).digest()
    headers = {
        "Content-Type": "application/json",
        "X-Sandbox-Signature": hmac.new(key, body, hashlib.sha256).hexdigest(),
    }
    bases = [url for url, _ in cluster.web]
    barrier = threading.Barrier(20)

    def deliver(i: int) -> int:
        barrier.wait()
        url = bases[i % 2] + "/payments/sandbox/webhook"
        return requests.post(url, data=body, headers=headers, timeout=30).status_code

    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(deliver, range(20)))
    assert statuses == [200] * 20
    rows = cluster.query(
        "SELECT kind, amount FROM ledger_entries WHERE payment_id = :p", p=payment_id
    )
    assert rows == [("payment", 420_000)]
    assert (
        cluster.query("SELECT balance FROM users WHERE id = :u", u=user_id)[0][0]
        == 10_000 + 420_000
    )
    assert cluster.query("SELECT status FROM payments WHERE id = :p", p=payment_id)[0][0] == "paid"
    forged = dict(headers, **{"X-Sandbox-Signature": "0" * 64})
    assert (
        requests.post(
            bases[0] + "/payments/sandbox/webhook", data=body, headers=forged, timeout=30
        ).status_code
        == 401
    )
    assert "ledger OK" in cluster.flask("ledger", "verify").stdout
