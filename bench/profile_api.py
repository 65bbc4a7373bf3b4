"""Profile customer API calls in one process: CPU per call, then (optionally) where it goes.

Usage (from the repository root):

    .venv/bin/python bench/profile_api.py [--database URL] [--ratelimit URI] [-n 400]
        [--action getBalance | --action cycle] [--pause-ms 3] [--cprofile]

Builds the production app on the given database (a scratch SQLite file by default; a
PostgreSQL database given here is emptied first), creates a customer, then replays calls
through the WSGI app with no HTTP in between:

* getBalance (or another action that needs no parameters), on the sandbox upstream;
* getStatus: one number bought from the sandbox (a service that never gets an SMS), then
  polled while its upstream poll is not due — hot polling's common answer;
* `baseline`: the bare Flask app of bench/baseline_app.py through the same harness, to
  tell this machine's speed (the issue's figures come from a machine where it cost 0.28 ms);
* `cycle`: getNumber then setStatus 8, against tests/fake_grizzly.py started in this
  process with no latency. Only the calling thread's CPU is counted, not the fake's;
* `floor-cycle`: the same cycle through bench/floor_cycle_app.py (the purchase floor).

The best of `--rounds` rounds is printed. bench/run.py runs it to compare a call's cost in
one process with its cost in the servers; `--set NAME=VALUE` tries a configuration change.
"""

from __future__ import annotations

import argparse
import ast
import cProfile
import io
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

UPSTREAM_KEY = "profile-upstream-key"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", default="")
    parser.add_argument("--ratelimit", default="memory://")
    parser.add_argument("-n", type=int, default=400, help="calls (or cycles) per round")
    parser.add_argument("--rounds", type=int, default=5, help="report the best round")
    parser.add_argument(
        "--action",
        default="getBalance",
        help="an API action, 'cycle', 'baseline', 'floor' or 'floor-cycle'",
    )
    parser.add_argument(
        "--pause-ms",
        type=float,
        default=0.0,
        help="sleep between calls, as a server between clients' calls (cold caches)",
    )
    parser.add_argument("--cprofile", action="store_true")
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="CPU per call by layer (Flask, SQLAlchemy, the driver, requests, Redis, ours…)",
    )
    parser.add_argument("--sort", default="cumulative", help="cProfile order (tottime…)")
    parser.add_argument("--top", type=int, default=45, help="cProfile rows printed")
    parser.add_argument("--dump", default="", help="also write the cProfile stats to this file")
    parser.add_argument(
        "--without-hooks",
        action="store_true",
        help="the experiment: no before/after-request hooks, no security-headers middleware "
        "and no session (what the product's per-request obligations cost)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=PYTHON",
        help="override a config value, e.g. --set RATELIMIT_ENABLED=False",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    cycle = args.action in ("cycle", "floor-cycle")
    fake = None
    scratch = tempfile.mkdtemp(prefix="reseller-profile-")
    os.environ.update(
        RESELLER_ENV="production",
        SECRET_KEY="profile-secret-key-0123456789abcdef",
        DATABASE_URL=args.database or f"sqlite:///{scratch}/profile.db",
        UPSTREAM="sandbox",
        API_RATE_LIMIT="1000000 per second",
        RATELIMIT_STORAGE_URI=args.ratelimit,
        MAX_ACTIVE_ACTIVATIONS="10000",
        EARLY_CANCEL_WINDOW="0",
        LOG_LEVEL="WARNING",
    )
    if cycle:
        from tests.fake_grizzly import FakeGrizzly

        fake = FakeGrizzly(api_key=UPSTREAM_KEY, balance="10000000.00", code_delay=None)
        fake.start()
        os.environ.update(
            UPSTREAM="grizzly", GRIZZLY_API_URL=fake.url, GRIZZLY_API_KEY=UPSTREAM_KEY
        )

    from flask_migrate import upgrade
    from werkzeug.test import EnvironBuilder

    from config import config_from_env
    from reseller import create_app
    from reseller.extensions import db
    from reseller.services import accounts, catalog, wallet
    from reseller.services.provider import upstream

    config = config_from_env()
    for item in args.set:
        name, _, value = item.partition("=")
        setattr(config, name, ast.literal_eval(value))
    app = create_app(config)
    if args.without_hooks:
        _strip(app)
    with app.app_context():
        if args.database:
            db.drop_all()
            db.session.execute(db.text("DROP TABLE IF EXISTS alembic_version"))
            db.session.commit()
        upgrade(directory=str(ROOT / "migrations"))
        catalog.refresh(upstream())
        user = accounts.create_user("profile@example.com", "profile-password")
        wallet.adjust(user.id, 10_000_000_000, note="profile credit")
        key = accounts.reveal_api_key(user)

    def call(**params: str) -> str:
        environ = EnvironBuilder(
            path="/stubs/handler_api.php",
            query_string={"api_key": key, **params},
            environ_base={"REMOTE_ADDR": "127.0.0.1"},
        ).get_environ()
        body = app.wsgi_app(environ, lambda status, headers, exc=None: None)
        data = b"".join(body)
        if hasattr(body, "close"):
            body.close()
        return data.decode()

    extra: dict[str, str] = {}
    if args.action in ("getStatus", "getStatusV2"):  # a number that never gets an SMS,
        bought = call(action="getNumber", service="ot", country="0")  # its poll not due
        if not bought.startswith("ACCESS_NUMBER:"):
            raise SystemExit(f"getNumber answered {bought!r}")
        extra["id"] = bought.split(":")[1]
    if args.action == "baseline":  # bench/baseline_app.py through the same harness
        sys.path.insert(0, str(ROOT / "bench"))
        from baseline_app import app  # noqa: F811 (measured in place of ours)
    if args.action == "floor":  # bench/floor_app.py: getBalance's least, on the same data
        sys.path.insert(0, str(ROOT / "bench"))
        from floor_app import app  # noqa: F811 (measured in place of ours)

        args.action = "getBalance"
    if args.action == "floor-cycle":  # bench/floor_cycle_app.py: the purchase's least
        sys.path.insert(0, str(ROOT / "bench"))
        from floor_cycle_app import app  # noqa: F811 (measured in place of ours)

    def one() -> str:
        if not cycle:
            return call(action=args.action, **extra)
        bought = call(action="getNumber", service="tg", country="0")
        if not bought.startswith("ACCESS_NUMBER:"):
            raise SystemExit(f"getNumber answered {bought!r}")
        cancelled = call(action="setStatus", id=bought.split(":")[1], status="8")
        if cancelled != "ACCESS_CANCEL":
            raise SystemExit(f"setStatus 8 answered {cancelled!r}")
        return f"{bought} then {cancelled}"

    print("answer:", one()[:80])
    for _ in range(min(100, args.n)):
        one()
    best_wall = best_cpu = float("inf")
    for _ in range(args.rounds):
        started, cpu = time.perf_counter(), time.thread_time()
        for _ in range(args.n):
            one()
            if args.pause_ms:
                time.sleep(args.pause_ms / 1000)
        best_cpu = min(best_cpu, time.thread_time() - cpu)
        best_wall = min(best_wall, time.perf_counter() - started - args.n * args.pause_ms / 1000)
    unit = "cycle (getNumber + setStatus 8)" if cycle else "request"
    print(
        f"{args.action}: {best_wall / args.n * 1000:.3f} ms wall, "
        f"{best_cpu / args.n * 1000:.3f} ms CPU per {unit} (best of {args.rounds})"
    )
    if args.cprofile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(args.n):
            one()
        profiler.disable()
        if args.dump:
            profiler.dump_stats(args.dump)
        stream = io.StringIO()
        stats = pstats.Stats(profiler, stream=stream)
        stats.sort_stats(args.sort).print_stats(args.top)
        print(stream.getvalue())
    if args.breakdown:
        print(breakdown(one, args.n))
    if fake is not None:
        fake.stop()


def _strip(app) -> None:
    """An experiment, never the product: the app without what every request carries beyond
    its view — the before/after-request hooks (CSRF, request id, settings, input guard,
    remember-me cookie, Retry-After, security headers) and the session."""
    from flask.sessions import NullSession, SessionInterface

    from reseller.security import SecurityHeaders

    class NoSession(SessionInterface):
        def open_session(self, app, request):
            return NullSession()

        def save_session(self, app, session, response):
            pass

    app.before_request_funcs.clear()
    app.after_request_funcs.clear()
    app.session_interface = NoSession()
    wrapped = app.wsgi_app
    while isinstance(wrapped, SecurityHeaders):
        wrapped = wrapped.wsgi_app
    app.wsgi_app = wrapped


# Where a call's CPU goes, by the code that spends it: py-spy samples this process while it
# holds the GIL (Python running, or C code that keeps the GIL, such as SQLite's). A sample
# inside the harness, the rate-limit counter or the upstream HTTP client belongs to it
# whatever it called; any other sample goes to the innermost frame that is ours or a
# library's (the standard library's time goes to whoever called it). A sampler, unlike
# cProfile, does not inflate code that makes many small calls; waits with the GIL released
# (sockets) are not CPU and not counted.
WHOLE = (
    ("the harness (werkzeug's EnvironBuilder; no server pays it)", ("werkzeug/test.py",)),
    ("rate-limit counter (limits, redis-py)", ("(limits/", "(redis/")),
    ("upstream HTTP client (requests, urllib3, http.client)", ("(requests/", "(urllib3/")),
)
INNERMOST = (
    ("database driver (psycopg)", ("(psycopg",)),
    ("SQLAlchemy (Core, ORM, pool) and SQLite", ("(sqlalchemy/",)),
    (
        "Flask, Werkzeug and their extensions",
        ("(flask/", "(werkzeug/", "(flask_login/", "(flask_wtf/", "(flask_sqlalchemy/"),
    ),
    ("our code (reseller/)", ("(reseller/",)),
)
OTHER = "the standard library and the rest"


def _layer(frames: list[str]) -> str:
    for label, marks in WHOLE:
        if any(mark in frame for frame in frames for mark in marks):
            return label
    for frame in reversed(frames):
        for label, marks in INNERMOST:
            if any(mark in frame for mark in marks):
                return label
    return OTHER


def breakdown(one, n: int) -> str:
    """Run `n` calls under py-spy; the share of sampled CPU by layer."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        return "CPU by layer: not measured (py-spy is not installed: pip install py-spy)"
    scratch = Path(tempfile.mkdtemp(prefix="reseller-spy-"))
    out = scratch / "samples.txt"
    argv = [py_spy, "record", "--pid", str(os.getpid()), "--gil", "--rate", "2000"]
    spy = subprocess.Popen(
        [*argv, "--format", "raw", "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.5)  # attached
    for _ in range(n):
        one()
    spy.send_signal(signal.SIGINT)
    spy.wait(timeout=60)
    samples = out.read_text().splitlines() if out.exists() else []
    shutil.rmtree(scratch, ignore_errors=True)
    booked: dict[str, int] = {}
    for line in samples:
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not any(".one (profile_api.py" in frame for frame in frames):
            continue  # not one of the measured calls
        label = _layer(frames)
        booked[label] = booked.get(label, 0) + int(count)
    total = sum(booked.values())
    if not total:
        return "CPU by layer: not measured (py-spy took no samples; it needs ptrace rights)"
    lines = [f"CPU by layer (py-spy, {total} samples while the GIL was held):"]
    for label, count in sorted(booked.items(), key=lambda item: -item[1]):
        lines.append(f"  {count / total:6.1%}  {label}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
