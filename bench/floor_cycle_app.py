"""The purchase floor: the least a getNumber and a setStatus 8 can do and keep the product's
guarantees, as a bare Flask app under the same gunicorn configuration (`gunicorn -c
gunicorn.conf.py --pythonpath bench floor_cycle_app:app`, with the app's DATABASE_URL,
SECRET_KEY, RATELIMIT_STORAGE_URI, API_RATE_LIMIT, GRIZZLY_API_URL and GRIZZLY_API_KEY, on
a database the app has migrated and stocked).

Per call it does only what the product's money path must, statement for statement, straight
through the driver on a pooled connection (autocommit, with explicit BEGIN … COMMIT around
the transactions; BEGIN IMMEDIATE on SQLite, as the app):

* getNumber: the key's digest and one hit on the shared rate-limit counter; the account by
  the digest; the pair's price and stock; the providers able to serve; then the hold in one
  transaction (the pending activation, the guarded debit, its ledger row, the cap's count,
  the history row), the upstream's getNumberV2 through requests as the product sends it, and
  the allocation in a second transaction (the guarded move, its history row).
* setStatus 8: the digest and the counter; the account and the activation in one read; the
  upstream's setStatus 8; then one transaction: the guarded move, its history row, the
  credit and its ledger row.

No hooks, no session, no CSRF, no security headers, no request id, no ORM or SQLAlchemy
execution, no error handling beyond the answers the bench's client expects, no webhooks, no
markup rules, no routing policy. bench/run.py measures its overhead beside the app's at the
same concurrency: what the app spends above it is what trimming our code could still gain;
the floor's own overhead is what no trimming can.
"""

import datetime as dt
import os
import threading

from flask import Flask, request
from floor_common import PARAM, counter, engine, limit

from reseller import keyring
from reseller.upstream import transport

app = Flask(__name__)
app.config["SECRET_KEY"] = os.environ["SECRET_KEY"]
_sqlite = engine.dialect.name == "sqlite"
_upstream_url = os.environ["GRIZZLY_API_URL"]
_upstream_key = os.environ["GRIZZLY_API_KEY"]
_sessions = threading.local()  # requests' sessions are not shared between threads


def _sql(text: str) -> str:
    return text.replace("?", PARAM)


_BEGIN = "BEGIN IMMEDIATE" if _sqlite else "BEGIN"
_ACCOUNT = _sql("SELECT id, balance FROM users WHERE api_key_hash = ? AND active")
_OFFER = _sql(
    "SELECT cost, count FROM upstream_prices WHERE service = ? AND country_id = ? AND count > 0"
)
_PROVIDERS = _sql(
    "SELECT providers.name FROM providers JOIN provider_prices"
    " ON provider_prices.provider_id = providers.id"
    " WHERE providers.enabled AND provider_prices.service = ? AND provider_prices.country_id = ?"
    " AND provider_prices.count > 0 ORDER BY providers.priority"
)
_NEW_ACTIVATION = _sql(
    "INSERT INTO activations (user_id, service, country_id, status, price, upstream_name,"
    " created_at) VALUES (?, ?, ?, 'pending', ?, ?, ?) RETURNING id"
)
_DEBIT = _sql(
    "UPDATE users SET balance = balance - ?, updated_at = ? WHERE id = ? AND balance >= ?"
    " RETURNING balance"
)
_CREDIT = _sql(
    "UPDATE users SET balance = balance + ?, updated_at = ? WHERE id = ? RETURNING balance"
)
_ENTRY = _sql(
    "INSERT INTO ledger_entries (user_id, amount, kind, reference, activation_id,"
    " balance_after, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id"
)
_ACTIVE = _sql(
    "SELECT count(*) FROM activations WHERE user_id = ? AND status IN"
    " ('pending', 'unknown', 'allocated', 'code_received', 'retry_wait')"
)
_EVENT = _sql(
    "INSERT INTO activation_events (activation_id, from_status, to_status, note, actor,"
    " created_at) VALUES (?, ?, ?, ?, ?, ?)"
)
_ALLOCATE = _sql(
    "UPDATE activations SET status = 'allocated', upstream_id = ?, phone = ?, allocated_at = ?,"
    " expires_at = ?, next_poll_at = ? WHERE id = ? AND status = 'pending'"
)
_ACCOUNT_AND_ACTIVATION = _sql(
    "SELECT users.id, activations.status, activations.upstream_id, activations.price"
    " FROM users LEFT OUTER JOIN activations ON activations.id = ?"
    " AND activations.user_id = users.id WHERE users.api_key_hash = ? AND users.active"
)
_CANCEL = _sql(
    "UPDATE activations SET status = 'cancelled', closed_at = ?"
    " WHERE id = ? AND status = 'allocated' RETURNING price"
)


def _upstream(params: dict[str, str]) -> str:
    session = getattr(_sessions, "session", None)
    if session is None:
        session = _sessions.session = transport.session_for(_upstream_url)
    query = {"api_key": _upstream_key, **params}
    response = transport.get(session, _upstream_url, params=query, timeout=(5.0, 30.0))
    return response.text


@app.get("/stubs/handler_api.php")
def handler():
    args = request.args
    digest = keyring.fingerprint(b"lookup", args.get("api_key", ""), length=64)
    if not counter.hit(limit, "api:" + digest[:32], "floor"):
        return "ERROR_TOO_MANY_REQUESTS", 429
    action = args.get("action")
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        if action == "getNumber":
            return _get_number(cursor, digest, args["service"], int(args["country"]))
        if action == "setStatus" and args.get("status") == "8":
            return _cancel(cursor, digest, int(args["id"]))
        return "BAD_ACTION"
    finally:
        connection.close()


def _get_number(cursor, digest: str, service: str, country_id: int) -> str:
    now = dt.datetime.utcnow()
    cursor.execute(_ACCOUNT, (digest,))
    account = cursor.fetchone()
    if account is None:
        return "BAD_KEY"
    cursor.execute(_OFFER, (service, country_id))
    offer = cursor.fetchone()
    if offer is None:
        return "NO_NUMBERS"
    price = offer[0]
    cursor.execute(_PROVIDERS, (service, country_id))
    providers = cursor.fetchall()
    if not providers:
        return "NO_NUMBERS"
    user_id = account[0]
    cursor.execute(_BEGIN)
    cursor.execute(_NEW_ACTIVATION, (user_id, service, country_id, price, providers[0][0], now))
    activation_id = cursor.fetchone()[0]
    cursor.execute(_DEBIT, (price, now, user_id, price))
    balance = cursor.fetchone()
    if balance is None:
        cursor.execute("ROLLBACK")
        return "NO_BALANCE"
    reference = f"activation:{activation_id}"
    cursor.execute(_ENTRY, (user_id, -price, "purchase", reference, activation_id, balance[0], now))
    cursor.fetchone()
    cursor.execute(_ACTIVE, (user_id,))
    cursor.fetchone()
    cursor.execute(_EVENT, (activation_id, None, "pending", "charged", "customer", now))
    cursor.execute("COMMIT")
    answer = _upstream({"action": "getNumberV2", "service": service, "country": str(country_id)})
    if not answer.startswith("{"):
        return "NO_NUMBERS"
    bought = _number(answer)
    now = dt.datetime.utcnow()
    cursor.execute(_BEGIN)
    cursor.execute(
        _ALLOCATE,
        (
            bought[0],
            bought[1],
            now,
            now + dt.timedelta(minutes=20),
            now + dt.timedelta(seconds=3),
            activation_id,
        ),
    )
    cursor.execute(_EVENT, (activation_id, "pending", "allocated", bought[0], "system", now))
    cursor.execute("COMMIT")
    return f"ACCESS_NUMBER:{activation_id}:{bought[1]}"


def _number(answer: str) -> tuple[str, str]:
    import json

    data = json.loads(answer)
    return str(data["activationId"]), str(data["phoneNumber"])


def _cancel(cursor, digest: str, activation_id: int) -> str:
    cursor.execute(_ACCOUNT_AND_ACTIVATION, (activation_id, digest))
    row = cursor.fetchone()
    if row is None:
        return "BAD_KEY"
    user_id, status, upstream_id, _price = row
    if status != "allocated":
        return "NO_ACTIVATION"
    answer = _upstream({"action": "setStatus", "id": upstream_id, "status": "8"})
    if not answer.startswith("ACCESS_CANCEL"):
        return "EARLY_CANCEL_DENIED"
    now = dt.datetime.utcnow()
    cursor.execute(_BEGIN)
    cursor.execute(_CANCEL, (now, activation_id))
    moved = cursor.fetchone()
    if moved is None:
        cursor.execute("ROLLBACK")
        return "NO_ACTIVATION"
    cursor.execute(_EVENT, (activation_id, "allocated", "cancelled", None, "customer", now))
    cursor.execute(_CREDIT, (moved[0], now, user_id))
    balance = cursor.fetchone()[0]
    reference = f"activation:{activation_id}"
    cursor.execute(_ENTRY, (user_id, moved[0], "refund", reference, activation_id, balance, now))
    cursor.fetchone()
    cursor.execute("COMMIT")
    return "ACCESS_CANCEL"
