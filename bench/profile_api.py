"""Profile one API request in one process: CPU per request, then where it goes.

Usage (from the repository root):

    .venv/bin/python bench/profile_api.py [--database URL] [--ratelimit URI] [-n 2000]
        [--action getBalance] [--cprofile]

Builds the production app (sandbox upstream) on the given database, creates a customer,
then replays the same request through the WSGI app with no network in between. This is the
tool behind the "profiled" notes in bench/latest.md.
"""

from __future__ import annotations

import argparse
import ast
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", default="")
    parser.add_argument("--ratelimit", default="memory://")
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--action", default="getBalance")
    parser.add_argument("--cprofile", action="store_true")
    parser.add_argument(
        "--pause-ms", type=float, default=0.0,
        help="sleep between requests, as a server between clients' calls (cold caches)",
    )
    parser.add_argument("--rounds", type=int, default=5, help="report the best round")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=PYTHON",
        help="override a config value, e.g. --set RATELIMIT_HEADERS_ENABLED=False",
    )
    args = parser.parse_args()

    scratch = tempfile.mkdtemp(prefix="reseller-profile-")
    os.environ.update(
        RESELLER_ENV="production",
        SECRET_KEY="profile-secret-key-0123456789abcdef",
        DATABASE_URL=args.database or f"sqlite:///{scratch}/profile.db",
        UPSTREAM="sandbox",
        API_RATE_LIMIT="1000000 per second",
        RATELIMIT_STORAGE_URI=args.ratelimit,
        LOG_LEVEL="WARNING",
    )
    from flask_migrate import upgrade
    from werkzeug.test import EnvironBuilder

    from config import config_from_env
    from reseller import create_app
    from reseller.extensions import db
    from reseller.services import accounts, wallet

    config = config_from_env()
    for item in args.set:
        name, _, value = item.partition("=")
        setattr(config, name, ast.literal_eval(value))
    app = create_app(config)
    with app.app_context():
        if args.database:
            db.drop_all()
            db.session.execute(db.text("DROP TABLE IF EXISTS alembic_version"))
            db.session.commit()
        upgrade(directory=str(ROOT / "migrations"))
        user = accounts.create_user("profile@example.com", "profile-password")
        wallet.adjust(user.id, 10_000_000, note="profile credit")
        key = accounts.reveal_api_key(user)

    environ = EnvironBuilder(
        path="/stubs/handler_api.php",
        query_string={"api_key": key, "action": args.action},
        environ_base={"REMOTE_ADDR": "127.0.0.1"},
    ).get_environ()

    def one() -> bytes:
        out = []
        body = app.wsgi_app(dict(environ), lambda status, headers, exc=None: out.append(status))
        data = b"".join(body)
        if hasattr(body, "close"):
            body.close()
        return data

    print("answer:", one().decode()[:80])
    for _ in range(200):
        one()
    best_wall = best_cpu = float("inf")
    for _ in range(args.rounds):
        started, cpu = time.perf_counter(), time.process_time()
        for _ in range(args.n):
            one()
            if args.pause_ms:
                time.sleep(args.pause_ms / 1000)
        best_wall = min(best_wall, time.perf_counter() - started)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    print(
        f"{args.action}: {best_wall / args.n * 1000:.3f} ms wall, "
        f"{best_cpu / args.n * 1000:.3f} ms CPU per request (best of {args.rounds})"
    )
    if args.cprofile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(args.n):
            one()
        profiler.disable()
        stream = io.StringIO()
        pstats.Stats(profiler, stream=stream).sort_stats("cumulative").print_stats(45)
        print(stream.getvalue())


if __name__ == "__main__":
    main()
