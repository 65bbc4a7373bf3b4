"""What the two floors (bench/floor_app.py, bench/floor_cycle_app.py) share: the app's
database on a pooled engine in autocommit (no BEGIN/COMMIT round trips unless a floor sends
them itself) and the rate-limit counter on the app's storage, from the app's environment."""

import os

from limits import parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter
from sqlalchemy import create_engine

_url = os.environ["DATABASE_URL"]
if _url.startswith("postgresql://"):
    _url = "postgresql+psycopg://" + _url.removeprefix("postgresql://")
# the app's pool settings (config.ProductionConfig)
engine = create_engine(_url, pool_size=10, pool_use_lifo=True, isolation_level="AUTOCOMMIT")
counter = FixedWindowRateLimiter(storage_from_string(os.environ["RATELIMIT_STORAGE_URI"]))
limit = parse(os.environ.get("API_RATE_LIMIT", "60 per second").split(";")[0])
# the driver's placeholder: %s (psycopg) or ? (sqlite3)
PARAM = "%s" if engine.dialect.paramstyle in ("format", "pyformat") else "?"
