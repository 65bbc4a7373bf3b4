"""HTTP plumbing shared by the protocol clients: sessions, failure descriptions, Retry-After.

Descriptions never carry a URL or a key; "connection failed" means nothing was sent.
"""

from __future__ import annotations

import datetime as dt
import email.utils

import requests
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError


def session_for(url: str) -> requests.Session:
    """A keep-alive session that has read the environment (HTTPS_PROXY, NO_PROXY,
    REQUESTS_CA_BUNDLE…) once, here, instead of on every call as requests does by default
    (a scan of os.environ per request)."""
    session = requests.Session()
    found = session.merge_environment_settings(url, {}, None, None, None)
    session.proxies.update(found["proxies"])
    session.verify = found["verify"]
    session.trust_env = False
    return session


def get(
    session: requests.Session,
    url: str,
    *,
    params: dict[str, str] | None,
    timeout: tuple[float, float],
    headers: dict[str, str] | None = None,
) -> requests.Response:
    """`session.get(url, params=…, headers=…, timeout=…)` for the protocol clients, minus
    the per-call merging they never need: `Session.request` folds the session's cookie jar,
    auth, hooks and environment into every request (a fifth of an upstream call's CPU).
    These sessions read the environment once (`session_for`) and the upstream APIs
    authenticate by key, not by cookie. Proxies, TLS verification, the session's headers and
    redirects are as `session.get` would have them."""
    request = requests.PreparedRequest()
    request.prepare(
        method="GET",
        url=url,
        params=params,
        headers={**session.headers, **headers} if headers else session.headers,
    )
    return session.send(request, timeout=timeout)


def describe_failure(exc: requests.RequestException) -> str:
    """A key-free description; "connection failed" means nothing was sent."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connection failed"
    if isinstance(exc, requests.ConnectionError) and not isinstance(
        exc, requests.exceptions.ProxyError | requests.exceptions.SSLError
    ):
        reason = exc.args[0] if exc.args else None
        if isinstance(reason, MaxRetryError):
            reason = reason.reason
        if isinstance(reason, NewConnectionError | ConnectTimeoutError):
            return "connection failed"
    if isinstance(exc, requests.Timeout):
        return "read timeout"
    if isinstance(exc, requests.ConnectionError):
        return "connection lost before the answer"
    return f"unreadable answer ({type(exc).__name__})"


def retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())
