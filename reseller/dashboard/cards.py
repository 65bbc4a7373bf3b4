"""An activation as the dashboard shows it: one dict for the page and for the JSON feed, so
a reload and the live refresh always tell the same story."""

from __future__ import annotations

import math

from ..models import Activation, utcnow
from ..models import ActivationStatus as S
from ..money import format_amount
from ..services import activations, catalog, history

STATUS_LABELS: dict[S, str] = {
    S.PENDING: "Buying…",
    S.UNKNOWN: "Being checked",
    S.ALLOCATED: "Waiting for the SMS",
    S.CODE_RECEIVED: "Code received",
    S.RETRY_WAIT: "Waiting for another SMS",
    S.COMPLETED: "Completed",
    S.CANCELLED: "Cancelled, refunded",
    S.EXPIRED: "Expired without a code, refunded",
    S.FAILED: "Failed, refunded",
}

# Badge colour per status, for people who scan the list.
STATUS_TONES: dict[S, str] = {
    S.CODE_RECEIVED: "ok",
    S.COMPLETED: "ok",
    S.FAILED: "bad",
}


def duration(seconds: int | float) -> str:
    """`117` → `"1 min 57 s"`; the same wording as dashboard.js."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def service_name(code: str) -> str:
    service = catalog.service(code)
    return service.name if service is not None else code


def country_name(country_id: int) -> str:
    country = catalog.country(country_id)
    return country.name if country is not None else f"country {country_id}"


def cards(rows) -> list[dict]:
    """`card` of each activation, their SMS read with one query."""
    rows = list(rows)
    received = history.messages_received(a.id for a in rows)
    return [card(a, received.get(a.id, [])) for a in rows]


def card(activation: Activation, messages=None) -> dict:
    """What the page and the JSON feed show about one activation. `messages`: its SMS,
    oldest first (read here when not given)."""
    if messages is None:
        messages = history.messages_received([activation.id]).get(activation.id, [])
    status = S(activation.status)
    cancel_at = activations.cancel_available_at(activation)
    cancel_in = 0
    if cancel_at is not None:
        cancel_in = max(0, math.ceil((cancel_at - utcnow()).total_seconds()))
    has_code = status in activations.HAS_CODE_STATES and activation.code is not None
    return {
        "id": activation.id,
        "status": status.value,
        "status_label": STATUS_LABELS[status],
        "tone": STATUS_TONES.get(status, ""),
        "open": status in activations.ACTIVE_STATES,
        "service": activation.service,
        "service_name": service_name(activation.service),
        "country_id": activation.country_id,
        "country_name": country_name(activation.country_id),
        "phone": f"+{activation.phone}" if activation.phone else None,
        "price": format_amount(activation.price),
        "code": activation.code if has_code else None,
        "sms_text": activation.sms_text if has_code else None,
        # Every SMS received, oldest first: its code and, when the provider sent it, the text.
        "messages": [{"code": m.code, "text": m.text} for m in messages],
        "lifetime_left": activations.lifetime_left(activation)
        if status in activations.ACTIVE_STATES
        else 0,
        "cancel_in": cancel_in,
        "can_cancel": status == S.ALLOCATED,
        "can_retry": status == S.CODE_RECEIVED,
        "can_complete": status in (S.CODE_RECEIVED, S.RETRY_WAIT),
        "created_at": activation.created_at,
        "closed_at": activation.closed_at,
    }
