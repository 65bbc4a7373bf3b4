"""The webhook Telegram POSTs updates to, once `flask telegram set-webhook` registered it.

Every web instance may answer it; an update is processed at most once (its id is claimed in
the database). Requests without our secret in X-Telegram-Bot-Api-Secret-Token are refused
before the body is read.
"""

from __future__ import annotations

import hmac
import json

from flask import abort, current_app, request

from ..extensions import csrf
from . import bp

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_BODY = 256 * 1024


@bp.post("/webhook")
@csrf.exempt
def webhook():
    config = current_app.config
    secret = config.get("TELEGRAM_WEBHOOK_SECRET")
    if not config.get("TELEGRAM_BOT_TOKEN") or not secret:
        abort(404)
    given = request.headers.get(SECRET_HEADER)
    if given is None:
        abort(401)
    if not hmac.compare_digest(given.encode(), secret.encode()):
        abort(403)
    body = request.stream.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        abort(413)
    try:
        data = json.loads(body)
    except ValueError:
        abort(400)
    if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
        abort(400)
    from .runtime import process_webhook_update  # aiogram loads only where the bot runs

    process_webhook_update(current_app._get_current_object(), data)
    return "", 200
