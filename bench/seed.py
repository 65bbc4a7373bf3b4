"""Fast bulk rows for the benchmark: closed (historical) and open activations.

PostgreSQL gets COPY, SQLite one transaction of `executemany`; both straight through the
driver, without the ORM, because a million ORM objects would take longer than the whole
benchmark.
"""

from __future__ import annotations

import datetime as dt
import io
import random
import sqlite3
from collections.abc import Iterator

COLUMNS = (
    "user_id",
    "service",
    "country_id",
    "status",
    "price",
    "upstream_cost",
    "upstream_name",
    "upstream_id",
    "phone",
    "code",
    "created_at",
    "allocated_at",
    "expires_at",
    "code_at",
    "closed_at",
)
# How a long-running shop's history looks: mostly completed, some refunded.
CLOSED_MIX = (("completed", 60), ("cancelled", 20), ("expired", 15), ("failed", 5))
SERVICES = ("tg", "wa", "go", "ds")
COUNTRIES = (0, 12, 16, 187)


def _stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def history_rows(user_id: int, count: int, now: dt.datetime, *, seed: int = 7) -> Iterator[tuple]:
    """`count` closed activations of one user over the past year, oldest first."""
    rng = random.Random(seed)
    statuses = [s for s, weight in CLOSED_MIX for _ in range(weight)]
    span = 365 * 24 * 3600
    for n in range(count):
        created = now - dt.timedelta(seconds=span * (count - n) / count)
        status = rng.choice(statuses)
        allocated = None if status == "failed" else created
        has_code = status == "completed"
        yield (
            user_id,
            rng.choice(SERVICES),
            rng.choice(COUNTRIES),
            status,
            3900,
            3000,
            "grizzly",
            None if allocated is None else str(100_000_000 + n),
            None if allocated is None else f"1555{n:07d}",
            f"{rng.randrange(1_000_000):06d}" if has_code else None,
            _stamp(created),
            None if allocated is None else _stamp(allocated),
            None if allocated is None else _stamp(created + dt.timedelta(minutes=20)),
            _stamp(created + dt.timedelta(seconds=40)) if has_code else None,
            _stamp(created + dt.timedelta(minutes=2)),
        )


def open_rows(user_id: int, count: int, now: dt.datetime) -> list[tuple]:
    """`count` open activations whose code has arrived (so pages never poll upstream)."""
    return [
        (
            user_id,
            SERVICES[n % len(SERVICES)],
            12,
            "code_received",
            3900,
            3000,
            "grizzly",
            str(900_000_000 + n),
            f"1666{n:07d}",
            f"{n:06d}",
            _stamp(now),
            _stamp(now),
            _stamp(now + dt.timedelta(hours=12)),
            _stamp(now),
            None,
        )
        for n in range(count)
    ]


def _sqlite_path(url: str) -> str:
    return url.removeprefix("sqlite:///")


def insert(url: str, rows) -> None:
    """Insert activation rows (tuples in COLUMNS order) into the database at `url`."""
    if url.startswith("sqlite"):
        connection = sqlite3.connect(_sqlite_path(url), timeout=60)
        try:
            with connection:  # one transaction
                connection.executemany(
                    f"INSERT INTO activations ({', '.join(COLUMNS)}) "
                    f"VALUES ({', '.join('?' * len(COLUMNS))})",
                    rows,
                )
        finally:
            connection.close()
        return
    import psycopg

    statement = f"COPY activations ({', '.join(COLUMNS)}) FROM STDIN"
    with (
        psycopg.connect(url) as connection,
        connection.cursor() as cursor,
        cursor.copy(statement) as copy,
    ):
        buffer = io.StringIO()
        for n, row in enumerate(rows, 1):
            buffer.write("\t".join(r"\N" if v is None else str(v) for v in row))
            buffer.write("\n")
            if n % 50_000 == 0:
                copy.write(buffer.getvalue())
                buffer = io.StringIO()
        copy.write(buffer.getvalue())


def execute(url: str, *statements: str) -> None:
    """Run SQL statements outside a transaction (VACUUM/ANALYZE need that on PostgreSQL)."""
    if url.startswith("sqlite"):
        connection = sqlite3.connect(_sqlite_path(url), timeout=60, isolation_level=None)
        try:
            for statement in statements:
                connection.execute(statement)
        finally:
            connection.close()
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        for statement in statements:
            connection.execute(statement)


def scalar(url: str, query: str, params: tuple = ()):
    if url.startswith("sqlite"):
        connection = sqlite3.connect(_sqlite_path(url), timeout=60)
        try:
            return connection.execute(query, params).fetchone()[0]
        finally:
            connection.close()
    import psycopg

    with psycopg.connect(url) as connection:
        return connection.execute(query.replace("?", "%s"), params).fetchone()[0]
