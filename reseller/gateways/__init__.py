"""The payment-gateway seam: one module per gateway, a registry from name to class.

Services ask `configured(config)` (or `reseller.services.payments.gateway(name)`) for an
instance and never branch on the kind; every gateway speaks `base.Gateway`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import Gateway
from .cryptopay import CryptoPay
from .nowpayments import NowPayments
from .sandbox import SandboxGateway
from .stars import TelegramStars

GATEWAYS: dict[str, type[Gateway]] = {
    CryptoPay.name: CryptoPay,
    NowPayments.name: NowPayments,
    SandboxGateway.name: SandboxGateway,
    TelegramStars.name: TelegramStars,
}


def named(config: Mapping[str, Any]) -> list[str] | None:
    """The gateways PAYMENT_GATEWAYS names, or None when it is unset."""
    raw = config.get("PAYMENT_GATEWAYS")
    if raw is None or not str(raw).strip():
        return None
    return [part.strip().lower() for part in str(raw).split(",") if part.strip()]


def configured(config: Mapping[str, Any]) -> dict[str, Gateway]:
    """Every gateway this configuration can run, by name.

    With PAYMENT_GATEWAYS set, exactly those it names (that have their settings); without
    it, every gateway whose settings are present — except, in production, those that run
    only when named (the sandbox).
    """
    names = named(config)
    production = config.get("ENV_NAME") == "production"
    found: dict[str, Gateway] = {}
    for name, cls in GATEWAYS.items():
        if names is not None and name not in names:
            continue
        if names is None and production and cls.named_only:
            continue
        gateway = cls.from_config(config)
        if gateway is not None:
            found[name] = gateway
    return found


def config_problem(config: Mapping[str, Any]) -> str | None:
    """Why PAYMENT_GATEWAYS cannot be honoured (unknown name, missing settings), or None."""
    for name in named(config) or []:
        cls = GATEWAYS.get(name)
        if cls is None:
            return f"PAYMENT_GATEWAYS names {name!r}; known gateways: {', '.join(GATEWAYS)}"
        missing = [key for key in cls.required_settings if not config.get(key)]
        if missing:
            return f"PAYMENT_GATEWAYS names {name} but {', '.join(missing)} is not set"
    return None
