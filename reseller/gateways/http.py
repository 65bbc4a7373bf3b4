"""JSON over HTTPS for the gateway modules: one session, timeouts, typed failures.

Gateway credentials travel in headers, never in URLs, so a `requests` exception carries no
secret; it is still reduced to a short description and never chained.
"""

from __future__ import annotations

import logging
from typing import Any

import requests

from .base import GatewayRefused, GatewayUnavailable

log = logging.getLogger(__name__)


class JsonClient:
    def __init__(self, base_url: str, *, connect_timeout: float, read_timeout: float):
        self.base_url = base_url.rstrip("/")
        self.timeout = (connect_timeout, read_timeout)
        self.session = requests.Session()

    def call(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str],
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
    ) -> Any:
        """The decoded JSON answer of a 2xx or 4xx; raises GatewayUnavailable for no usable
        answer (network, timeout, 5xx, not JSON) and GatewayRefused for a 4xx."""
        url = f"{self.base_url}/{path.lstrip('/')}"
        failure = ""
        try:
            response = self.session.request(
                method, url, headers=headers, params=params, json=json, timeout=self.timeout
            )
            data = response.json() if response.content else None
        except requests.Timeout:
            failure = "timeout"
        except requests.ConnectionError:
            failure = "connection failed"
        except (requests.RequestException, ValueError):
            failure = "unreadable answer"
        if failure:
            log.info("gateway %s %s: %s", method, path, failure)
            raise GatewayUnavailable(failure)
        if response.status_code >= 500:
            raise GatewayUnavailable(f"HTTP {response.status_code}")
        if response.status_code >= 400:
            raise GatewayRefused(f"HTTP {response.status_code}: {_short(data)}")
        return data


def _short(data: Any) -> str:
    text = str(data)
    return text if len(text) <= 200 else text[:200] + "…"
