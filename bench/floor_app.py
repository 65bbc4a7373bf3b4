"""The floor: the least a getBalance can do and keep the product's guarantees, as a bare
Flask app under the same gunicorn configuration (`gunicorn -c gunicorn.conf.py --pythonpath
bench floor_app:app`, with the app's DATABASE_URL, SECRET_KEY, RATELIMIT_STORAGE_URI and
API_RATE_LIMIT).

Per request it does only what getBalance must: the key's lookup digest (HMAC), one hit on
the shared rate-limit counter (the `limits` library on the same storage), one indexed read
of the account by that digest on a pooled connection, straight through the driver, and the
protocol's one-line answer. No hooks, no session, no CSRF, no security headers, no request
id, no error handling, no bookkeeping. bench/run.py measures it beside the baseline and the
real app: how close getBalance is to this floor says what is left to gain inside the
product's shape; how far the floor is from the baseline, what no trimming can gain."""

import os

from flask import Flask, request
from floor_common import PARAM, counter, engine, limit

from reseller import keyring
from reseller.money import format_amount

app = Flask(__name__)
app.config["SECRET_KEY"] = os.environ["SECRET_KEY"]
_READ = f"SELECT balance FROM users WHERE api_key_hash = {PARAM}"


@app.get("/stubs/handler_api.php")
def get_balance():
    # `floor=` leaves parts out, to measure what each costs under gunicorn: "counter,read"
    # (the default) is the floor; "counter", "read" or "none" keep only what they name.
    parts = request.args.get("floor", "counter,read")
    key = request.args.get("api_key", "")
    digest = keyring.fingerprint(b"lookup", key, length=64)
    if "counter" in parts and not counter.hit(limit, "api:" + digest[:32], "floor"):
        return "ERROR_TOO_MANY_REQUESTS", 429
    if "read" not in parts:
        return "ACCESS_BALANCE:0.00"
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        cursor.execute(_READ, (digest,))
        row = cursor.fetchone()
        cursor.close()
    finally:
        connection.close()
    if row is None:
        return "BAD_KEY"
    return f"ACCESS_BALANCE:{format_amount(row[0])}"
