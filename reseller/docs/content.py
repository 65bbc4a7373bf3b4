"""What the API docs page documents: the actions, their parameters and example answers.

The error table is not here: it is rendered from `reseller.api.errors.ERROR_TABLE`, the same
table the endpoint answers from.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ActionDoc:
    anchor: str
    title: str
    action: str
    summary: str
    # Texts may name {default_country} (the operator's setting) and an example country from
    # the live catalogue, {country_id}, {country_name}, {country_iso}, with more ids and codes
    # in {some_ids} and {some_isos}: the docs view fills them in (`docs.routes.fill`).
    params: dict[str, str] = field(default_factory=dict)
    json_answer: str | None = None  # format=json
    classic_answer: str | None = None  # the SMS-Activate plain dialect
    notes: tuple[str, ...] = ()


# The five sections of the product's API page, in its order.
MAIN_ACTIONS = (
    ActionDoc(
        "get-balance",
        "Get balance",
        "getBalance",
        "Your wallet balance.",
        json_answer='{"balance": 25.40}',
        classic_answer="ACCESS_BALANCE:25.40",
    ),
    ActionDoc(
        "request-number",
        "Request number",
        "getNumber",
        "Buy a number for a service in a country. The price is taken from your balance at once "
        "and given back in full if you cancel before any SMS or the number expires without one.",
        params={
            "service": "service code, e.g. tg (Telegram), wa (WhatsApp) — see getServicesList",
            "country": "ISO 3166 alpha-2 code ({some_isos}…) or the numeric country id "
            "({some_ids}…); when left out or empty: {default_country}, this site's default",
            "maxPrice": "optional: the most you accept to pay; a higher price answers "
            "WRONG_MAX_PRICE with our price",
        },
        json_answer='{"status": "ACCESS_NUMBER", "activationId": 12345, "phone": "+15551234567"}',
        classic_answer="ACCESS_NUMBER:12345:15551234567",
    ),
    ActionDoc(
        "get-status",
        "Get status",
        "getStatus",
        "Whether the code has arrived. Poll every few seconds; we answer from our own records.",
        params={"id": "the activationId from Request number"},
        json_answer='{"status": "STATUS_OK", "code": "123456"}',
        classic_answer="STATUS_OK:123456",
        notes=(
            'Waiting: {"status": "STATUS_WAIT_CODE"} / STATUS_WAIT_CODE.',
            "After status 3, until the next SMS: STATUS_WAIT_RETRY:<last code>.",
            "Cancelled or expired: STATUS_CANCEL.",
        ),
    ),
    ActionDoc(
        "set-status",
        "Set status",
        "setStatus",
        "Tell us what to do with the activation.",
        params={
            "id": "the activationId",
            "status": "1 = number ready (SMS sent) · 3 = request another SMS on the same number · "
            "6 = complete the activation · 8 = cancel (refund; -1 is accepted too)",
        },
        json_answer='{"status": "ACCESS_CANCEL", "activationStatus": "cancelled"}',
        classic_answer="ACCESS_CANCEL",
        notes=(
            "Classic answers: 1 → ACCESS_READY, 3 → ACCESS_RETRY_GET, 6 → ACCESS_ACTIVATION, "
            "8 → ACCESS_CANCEL.",
            "Cancel is refused with EARLY_CANCEL_DENIED during the first minutes after purchase, "
            "and with BAD_STATUS once a code has arrived (finish with 6 instead).",
            "A cancel is refunded only once our provider confirms it. When the provider refuses "
            "or does not confirm it, the answer is BAD_STATUS and nothing changes: check "
            "getStatus (a code may have arrived) and cancel again later; ERROR_SQL means the "
            "provider could not be reached, so try again.",
        ),
    ),
    ActionDoc(
        "active-activations",
        "Active activations",
        "getActiveActivations",
        "Your activations that are still running.",
        json_answer='{"activations": [{"id": 12345, "status": "allocated", '
        '"phone_number": "+15551234567", "service_code": "tg", "country": {country_id}, '
        '"price": 0.35, "code": null, "expires_at": "2026-11-25 14:50:57"}]}',
        classic_answer='{"status": "success", "activeActivations": [{"activationId": "12345", '
        '"serviceCode": "tg", "phoneNumber": "15551234567", "activationCost": 0.35, '
        '"activationStatus": "4", "smsCode": ["123456"], "smsText": "Your code is 123456", '
        '"activationTime": "2026-11-25 14:30:57", "countryCode": "{country_id}", '
        '"countryName": "{country_name}", '
        '"canGetAnotherSms": "1", "currency": 840}]}',
        notes=(
            "Classic answer: smsCode is the list of codes received so far, oldest first, or "
            "null before the first (as SMS-Activate sends it); with format=json, code is the "
            "latest code or null.",
            'Classic answer with nothing running: {"status": "error", "error": "NO_ACTIVATIONS"}.',
        ),
    ),
)

MORE_ACTIONS = (
    ActionDoc(
        "get-number-v2",
        "Request number (V2)",
        "getNumberV2",
        "Like getNumber, with a JSON answer; orderId makes the request idempotent.",
        params={
            "service": "service code",
            "country": "alpha-2 code or numeric id; when left out: {default_country}",
            "maxPrice": "optional",
            "orderId": "optional: your own unique id; a repeat answers ORDER_ALREADY_EXISTS",
        },
        classic_answer='{"activationId": 12345, "phoneNumber": "15551234567", '
        '"activationCost": 0.35, "currency": 840, "countryCode": "{country_id}", '
        '"canGetAnotherSms": "1", "activationTime": "2026-11-25 14:30:57", '
        '"activationOperator": "any"}',
    ),
    ActionDoc(
        "get-status-v2",
        "Get status (V2)",
        "getStatusV2",
        "The status as JSON, with the SMS text.",
        params={"id": "the activationId"},
        classic_answer='{"verificationType": 0, "sms": {"dateTime": "2026-11-25 14:31:40", '
        '"code": "123456", "text": "Your code is 123456"}, "call": null}',
    ),
    ActionDoc(
        "get-full-sms",
        "Full SMS",
        "getFullSms",
        "The full text of the latest SMS (its code where the provider sent no text).",
        params={"id": "the activationId"},
        json_answer='{"status": "FULL_SMS", "text": "Your code is 123456"}',
        classic_answer="FULL_SMS:Your code is 123456",
        notes=(
            "Before any SMS: STATUS_WAIT_CODE; a cancelled or expired activation: "
            'STATUS_CANCEL (format=json: {"status": "STATUS_WAIT_CODE"} and '
            '{"status": "STATUS_CANCEL"}).',
        ),
    ),
    ActionDoc(
        "get-prices",
        "Prices",
        "getPrices",
        "Our prices and stock, by country id and service (only what can be bought).",
        params={"service": "optional filter", "country": "optional filter"},
        classic_answer='{"{country_id}": {"tg": {"cost": 0.35, "count": 120}}}',
    ),
    ActionDoc(
        "get-countries",
        "Countries",
        "getCountries",
        "The countries on sale, keyed by numeric id, with the alpha-2 code we accept.",
        classic_answer='{"{country_id}": {"id": {country_id}, "eng": "{country_name}", '
        '"iso": "{country_iso}", "visible": 1}}',
    ),
    ActionDoc(
        "get-services",
        "Services",
        "getServicesList",
        "The services on sale.",
        classic_answer='{"status": "success", "services": [{"code": "tg", "name": "Telegram"}]}',
    ),
    ActionDoc(
        "get-top-countries",
        "Best countries for a service",
        "getTopCountriesByService",
        "The countries selling a service now, cheapest first (then the most numbers).",
        params={"service": "service code", "freePrice": "accepted and ignored"},
        classic_answer='{"0": {"country": 12, "count": 120, "price": 0.35, "retail_price": 0.35}}',
    ),
    ActionDoc(
        "get-numbers-status",
        "Numbers per service",
        "getNumbersStatus",
        "How many numbers each service has in one country.",
        params={"country": "alpha-2 code or numeric id; when left out: {default_country}"},
        classic_answer='{"tg_0": 120, "wa_0": 80}',
    ),
    ActionDoc(
        "get-operators",
        "Operators",
        "getOperators",
        "The operators you may ask for, per country: we route by provider, not by operator, so "
        "every country lists any.",
        params={"country": "optional filter"},
        classic_answer='{"status": "success", "countryOperators": {"12": ["any"]}}',
    ),
    ActionDoc(
        "get-balance-cashback",
        "Balance (with cashback)",
        "getBalanceAndCashBack",
        "The balance, as getBalance answers it: there is no cashback here.",
        classic_answer="ACCESS_BALANCE:25.40",
    ),
    ActionDoc(
        "get-history",
        "History",
        "getHistory",
        "Your activations, newest first, with their SMS (at most 100 a call).",
        params={
            "start": "optional: from this time (unix seconds)",
            "end": "optional: up to this time (unix seconds)",
            "offset": "optional: skip this many",
            "limit": "optional: at most this many (100 at most)",
        },
        classic_answer='[{"id": 12345, "date": "2026-11-25 14:30:57", "phone": "15551234567", '
        '"sms": ["Your code is 123456"], "cost": 0.35, "status": "completed", "currency": 840}]',
    ),
)

# The rent family: a number for hours or days that receives every SMS sent to it. JSON
# whatever `format` says, as SMS-Activate answers it.
RENT_ACTIONS = (
    ActionDoc(
        "rent-offers",
        "Rent prices",
        "getRentServicesAndCountries",
        "What renting a number costs in a country for a length, per service.",
        params={
            "rent_time": "hours: 2 to 1344, whole days from 24 hours up (also sent as time or "
            "duration); 4 when left out",
            "country": "alpha-2 code or numeric id; when left out: {default_country}",
            "operator": "optional",
        },
        classic_answer='{"countries": {"0": 12}, "operators": {"0": "any"}, '
        '"services": {"tg": {"cost": 1.04, "quant": 25}}, "currency": 840}',
    ),
    ActionDoc(
        "rent-number",
        "Rent a number",
        "getRentNumber",
        "Rent a number. The price is taken from your balance at once.",
        params={
            "service": "service code",
            "rent_time": "hours, as for the prices",
            "country": "alpha-2 code or numeric id",
            "url": "accepted and ignored: every SMS goes to your account's webhook (rent_sms)",
        },
        classic_answer='{"status": "success", "phone": {"id": 1234, '
        '"endDate": "2026-11-25T18:30:57", "number": "15551234567"}}',
    ),
    ActionDoc(
        "rent-status",
        "Rented number's SMS",
        "getRentStatus",
        "Every SMS the number received, newest first.",
        params={"id": "the rent id", "page": "optional, from 0", "size": "optional, at most 100"},
        classic_answer='{"status": "success", "quantity": "1", "values": {"0": {"phoneFrom": '
        '"Telegram", "text": "Your code is 12345", "service": "tg", '
        '"date": "2026-11-25 14:40:02"}}}',
        notes=(
            'No SMS yet: {"status": "error", "message": "STATUS_WAIT_CODE"}; ended without SMS: '
            "STATUS_FINISH; cancelled: STATUS_CANCEL.",
        ),
    ),
    ActionDoc(
        "rent-set-status",
        "Finish or cancel a rent",
        "setRentStatus",
        "1 finishes the rent now (nothing is refunded); 2 cancels it and refunds its price, "
        "only before any SMS and within the provider's window (about 20 minutes).",
        params={"id": "the rent id", "status": "1 or 2"},
        classic_answer='{"status": "success"}',
    ),
    ActionDoc(
        "rent-list",
        "Your rented numbers",
        "getRentList",
        "Your rented numbers still running.",
        classic_answer='{"status": "success", "values": {"0": {"id": "1234", '
        '"phone": "15551234567"}}}',
    ),
    ActionDoc(
        "rent-continue",
        "Extend a rent",
        "continueRentNumber",
        "Extend a running rent; the price of the extension is taken from your balance.",
        params={"id": "the rent id", "rent_time": "hours, as for the prices; 4 when left out"},
        classic_answer='{"status": "success", "phone": {"id": 1234, '
        '"endDate": "2026-11-26T18:30:57", "number": "15551234567"}}',
        notes=("An ended rent cannot be extended: RENT_DIE.",),
    ),
    ActionDoc(
        "rent-continue-price",
        "Price of an extension",
        "getContinueRentPriceNumber",
        "What extending the rent would cost (continueRentInfo answers the same with the hours "
        "and the rent's periods so far; it takes hours instead of rent_time).",
        params={"id": "the rent id", "rent_time": "hours; 4 when left out"},
        classic_answer='{"status": "success", "price": 1.04, "currency": 840}',
    ),
)

# Actions of SMS-Activate's protocol we do not serve: they answer BAD_ACTION.
NOT_SERVED = (
    "getMultiServiceNumber",
    "getAdditionalService",
    "getIncomingCallStatus",
    "createTaskForCall",
    "getOutgoingCalls",
    "getQiwiRequisites",
    "getAllSms",  # HeroSMS's own rent API (its getRentNumber with duration is served)
    "prolong",
)


# --- webhooks --------------------------------------------------------------------------------

WEBHOOK_EVENTS = (
    ("sms", "An SMS arrived: the first code, and each code after “another SMS”."),
    ("cancelled", "You cancelled the activation; its price is back on your balance."),
    ("expired", "The number's lifetime ended without a code; its price is back on your balance."),
    ("test", "Sent by “Send test event” on the Account page."),
    ("rent_sms", "A rented number received an SMS (every SMS, each once)."),
)

# A receiver's check, shown on the docs page and run by the tests against real deliveries.
WEBHOOK_VERIFY_EXAMPLE = '''import hashlib, hmac, time

def verify(secret: str, headers, body: bytes, tolerance: int = 300) -> bool:
    """True when the request is ours: `body` is the raw request body, unparsed."""
    timestamp = headers["X-Webhook-Timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance:
        return False  # too old: a replay
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body,
                        hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers["X-Webhook-Signature"], "sha256=" + expected)
'''


def webhook_examples(country_id: int = 187) -> dict[str, str]:
    """Example bodies, made by the code that makes the real ones."""
    import datetime as dt
    import json

    from ..models import Activation, Rental, WebhookEvent
    from ..services import webhooks

    moment = dt.datetime(2026, 1, 15, 9, 30, 12)
    activation = Activation(id=123456, service="tg", country_id=country_id)
    examples = {}
    for kind, code in (("sms", "54321"), ("cancelled", None)):
        event = WebhookEvent(
            kind=kind, activation_id=activation.id, code=code, text=None, occurred_at=moment
        )
        examples[kind] = json.dumps(webhooks.payload(event, activation), indent=2)
    rental = Rental(id=1234, service="tg", country_id=12, phone="15551234567")
    event = WebhookEvent(
        kind=webhooks.RENT_SMS_EVENT, code="Telegram", text="Your code is 12345", occurred_at=moment
    )
    examples["rent_sms"] = json.dumps(webhooks.rent_payload(event, rental), indent=2)
    return examples
