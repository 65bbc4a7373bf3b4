"""HTTP plumbing shared by the protocol clients: sessions, failure descriptions, Retry-After.

Descriptions never carry a URL's path, query or key, only its host and port (the operator
reads them on the Providers page); `nothing_sent` says which ones mean no request left.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import socket
from urllib.parse import urlsplit

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


# How descriptions of failures where nothing was sent begin (see `describe_failure`).
NOTHING_SENT = (
    "connection refused at ",
    "connect timeout at ",
    "cannot connect to ",
    "unknown host ",
)


def _address(exc: requests.RequestException) -> str:
    """`host:port` of the request that failed: never its path or query (the key may be
    there) nor any user:password of the URL."""
    url = getattr(exc.request, "url", None) or ""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return "the provider"
    if not host:
        return "the provider"
    port = port or {"https": 443, "http": 80}.get(parts.scheme)
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{port}" if port else host


def describe_failure(exc: requests.RequestException) -> str:
    """A key-free description in words ("connection refused at 127.0.0.1:5999", "read
    timeout"); `nothing_sent(description)` tells whether the request never left."""
    address = _address(exc)
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return f"connect timeout at {address}"
    if isinstance(exc, requests.ConnectionError) and not isinstance(
        exc, requests.exceptions.ProxyError | requests.exceptions.SSLError
    ):
        reason = exc.args[0] if exc.args else None
        if isinstance(reason, MaxRetryError):
            reason = reason.reason
        if isinstance(reason, ConnectTimeoutError) and not isinstance(reason, NewConnectionError):
            return f"connect timeout at {address}"
        if isinstance(reason, NewConnectionError):
            cause = reason.__cause__ or reason.__context__
            if isinstance(cause, ConnectionRefusedError):
                return f"connection refused at {address}"
            if isinstance(cause, socket.gaierror):
                return f"unknown host {address.rsplit(':', 1)[0]}"
            if isinstance(cause, TimeoutError | socket.timeout):
                return f"connect timeout at {address}"
            return f"cannot connect to {address}"
    if isinstance(exc, requests.Timeout):
        return f"read timeout from {address}"
    if isinstance(exc, requests.exceptions.SSLError):
        return f"TLS failure with {address}"
    if isinstance(exc, requests.ConnectionError):
        return f"connection to {address} lost before the answer"
    return f"unreadable answer from {address} ({type(exc).__name__})"


def nothing_sent(description: str) -> bool:
    """Whether a `describe_failure` description means the request never reached the server."""
    return description.startswith(NOTHING_SENT)


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
