"""The Telegram bot: a storefront door on the same core as the dashboard and the API.

`actions` are its views (synchronous, run in threads with an app context), `replies` what
they answer, `runtime` the async side on aiogram 3 (polling, webhook updates, sending),
`push` the worker's sender for the bot's outbox, `routes` the webhook endpoint and `cli`
the `flask telegram …` commands. The rules live in reseller.services.telegram.
"""

from flask import Blueprint

bp = Blueprint("telegram", __name__, url_prefix="/telegram")

from . import routes  # noqa: E402,F401
