"""The protocols we speak: the stored `Provider.protocol` → the client class.

Services ask `client_class(protocol)` and never branch on the protocol themselves.
"""

from __future__ import annotations

from .base import Upstream
from .fivesim import FiveSimClient
from .sandbox import SandboxUpstream
from .sms_activate import SmsActivateClient

PROTOCOLS: dict[str, type[Upstream]] = {
    "sms-activate": SmsActivateClient,
    "5sim": FiveSimClient,
    "sandbox": SandboxUpstream,
}

# Known base URLs, offered when adding a provider.
PRESETS: dict[str, tuple[str, str]] = {
    "grizzly": ("sms-activate", "https://api.grizzlysms.com/stubs/handler_api.php"),
    "herosms": ("sms-activate", "https://hero-sms.com/stubs/handler_api.php"),
    "smsbower": ("sms-activate", "https://smsbower.online/stubs/handler_api.php"),
    "smshub": ("sms-activate", "https://smshub.org/stubs/handler_api.php"),
    "5sim": ("5sim", "https://5sim.net/v1"),
}


class UnknownProtocol(ValueError):
    pass


def client_class(protocol: str) -> type[Upstream]:
    try:
        return PROTOCOLS[protocol]
    except KeyError:
        raise UnknownProtocol(f"unknown protocol {protocol!r}") from None
