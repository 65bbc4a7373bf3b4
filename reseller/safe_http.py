"""Outbound HTTP to addresses customers choose (webhook receivers), safe from request forgery.

A customer's URL must not reach our own network: unless private targets are allowed
(development, tests), every address its host resolves to must be a public unicast address,
and the connection goes to the address that was checked (no second lookup an attacker's DNS
could answer differently). For https the certificate is still verified against the host name
and SNI carries it. Only ports 80, 443 and 1024–65535; no redirects followed; no proxy from
the environment; the answer body is read only up to a small limit.

This module speaks the wire and knows nothing of our models.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from . import special_addresses

MAX_URL_LENGTH = 500
NAT64 = ipaddress.ip_network("64:ff9b::/96")


class TargetRefused(ValueError):
    """The URL may not be called; the message is for people (the customer)."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as written (lower-cased), without brackets
    port: int
    path: str  # path and query

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def parse_target(url: str) -> Target:
    """The parts of an http(s) URL we may call. Raises TargetRefused."""
    url = (url or "").strip()
    if not url:
        raise TargetRefused("Enter a URL.")
    if len(url) > MAX_URL_LENGTH:
        raise TargetRefused(f"Use at most {MAX_URL_LENGTH} characters.")
    if any(ord(c) <= 32 or ord(c) == 127 for c in url):
        raise TargetRefused("The URL may not contain spaces or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise TargetRefused("This is not a valid URL.") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise TargetRefused("Use an http:// or https:// URL.")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("The URL may not contain a user name or password.")
    host = (parts.hostname or "").lower()
    if not host:
        raise TargetRefused("The URL has no host name.")
    if port is None:
        port = 443 if scheme == "https" else 80
    if not allowed_port(port):
        raise TargetRefused("Use port 80, 443 or one from 1024 to 65535.")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(scheme, host, port, path)


def allowed_port(port: int) -> bool:
    return port in (80, 443) or 1024 <= port <= 65535


def public_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """A globally reachable unicast address by IANA's registries (`special_addresses`),
    also for the IPv4 address inside an IPv6 one."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if ip.teredo:
            embedded = ip.teredo[1]
        if ip in NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None and not public_address(embedded):
            return False
    return special_addresses.globally_reachable(ip)


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (tests replace this with a stub)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def checked_addresses(target: Target, *, allow_private: bool) -> list[str]:
    """The addresses to connect to. Raises TargetRefused when the host does not resolve or,
    unless `allow_private`, when ANY of its addresses is not public."""
    try:
        addresses = resolve(target.host, target.port)
    except (OSError, UnicodeError):
        raise TargetRefused(f"The host name {target.host} cannot be resolved.") from None
    if not addresses:
        raise TargetRefused(f"The host name {target.host} cannot be resolved.")
    parsed = []
    for address in addresses:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            raise TargetRefused(f"The host name {target.host} cannot be resolved.") from None
        if not allow_private and not public_address(ip):
            raise TargetRefused(
                "The URL points to a private, local or reserved network address; "
                "use an address reachable on the public internet."
            )
        parsed.append(str(ip))
    return parsed


def check_url(url: str, *, allow_private: bool) -> Target:
    """Check a URL as it is saved. Raises TargetRefused."""
    target = parse_target(url)
    checked_addresses(target, allow_private=allow_private)
    return target


@dataclass(frozen=True)
class Outcome:
    status_code: int | None  # None: no HTTP answer
    error: str | None  # why it did not count as delivered, for people; None when 2xx
    duration_ms: int

    @property
    def delivered(self) -> bool:
        return self.error is None


class _PinnedAdapter(HTTPAdapter):
    """Connect to a literal address while TLS sends and verifies the real host name."""

    def __init__(self, host: str) -> None:
        self._host = host
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args, **kwargs):
        kwargs["server_hostname"] = self._host
        kwargs["assert_hostname"] = self._host
        super().init_poolmanager(*args, **kwargs)


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout: tuple[float, float],
    allow_private: bool,
    body_limit: int = 4096,
    verify: bool | str = True,
) -> Outcome:
    """POST `body` to `url`; never raises for the receiver's or the network's faults."""
    started = time.monotonic()

    def done(status: int | None, error: str | None) -> Outcome:
        return Outcome(status, error, int((time.monotonic() - started) * 1000))

    try:
        target = parse_target(url)
        address = checked_addresses(target, allow_private=allow_private)[0]
    except TargetRefused as exc:
        return done(None, f"refused: {exc}"[:200])
    literal = f"[{address}]" if ":" in address else address
    pinned = f"{target.scheme}://{literal}:{target.port}{target.path}"
    session = requests.Session()
    session.trust_env = False  # no proxy or .netrc from the environment
    session.mount("https://", _PinnedAdapter(target.host))
    session.mount("http://", HTTPAdapter(max_retries=0))
    try:
        response = session.post(
            pinned,
            data=body,
            headers={**headers, "Host": target.host_header},
            timeout=timeout,
            allow_redirects=False,
            stream=True,
            verify=verify,
        )
        try:
            response.raw.read(body_limit, decode_content=False)  # the answer is not kept
        finally:
            response.close()
    except requests.Timeout:
        return done(None, "timed out")
    except requests.exceptions.SSLError:
        return done(None, "TLS error (certificate or handshake)")
    except requests.ConnectionError:
        return done(None, "connection failed")
    except requests.RequestException as exc:
        return done(None, f"request failed ({type(exc).__name__})")
    finally:
        session.close()
    status = response.status_code
    if 200 <= status < 300:
        return done(status, None)
    if 300 <= status < 400:
        return done(status, f"HTTP {status} redirect (not followed)")
    return done(status, f"HTTP {status}")
