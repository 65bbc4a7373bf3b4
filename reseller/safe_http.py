"""Outbound HTTP to addresses customers choose (webhook receivers), safe from request forgery.

A customer's URL must not reach our own network: unless private targets are allowed
(development, tests), every address its host resolves to must be a public unicast address,
and the connection goes to the address that was checked (no second lookup an attacker's DNS
could answer differently). For https the certificate is still verified against the host name
and SNI carries it (an internationalised host name goes out in its IDNA form, in SNI, `Host`
and to the resolver). Only ports 80, 443 and 1024–65535; no redirects followed; no proxy; the
answer body is read only up to a small limit. A delivery's whole time — the look-up,
connecting, TLS, sending, the answer — is bounded by one deadline: httpx's timeouts bound
only each wait, and a receiver sending a byte a second never reaches them, so the exchange
runs inside anyio's cancel scope.

This module speaks the wire and knows nothing of our models.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

import anyio
import httpx
import idna
from requests.utils import requote_uri

from . import special_addresses

MAX_URL_LENGTH = 500
NAT64 = ipaddress.ip_network("64:ff9b::/96")
DNS_TIMEOUT = 2.0  # seconds a host name's look-up may take (the customer's DNS answers)


class TargetRefused(ValueError):
    """The URL may not be called; the message is for people (the customer)."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # lower-cased, without brackets; an internationalised name in IDNA form
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
    if not host.isascii():  # an internationalised name: its IDNA (punycode) form on the wire
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError:
            raise TargetRefused("The host name is not a valid domain name.") from None
    if port is None:
        port = 443 if scheme == "https" else 80
    if not allowed_port(port):
        raise TargetRefused("Use port 80, 443 or one from 1024 to 65535.")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    path = requote_uri(path)  # non-ASCII characters percent-encoded, as browsers send them
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


def lookup(host: str, port: int, *, timeout: float) -> list[str]:
    """`resolve` within `timeout` seconds. getaddrinfo has no timeout of its own, and the
    customer chooses the DNS server that answers; past the bound the look-up is left to
    finish in its daemon thread (the system resolver's own timeouts end it).
    Raises TimeoutError, or what `resolve` raised."""
    result: dict = {}

    def run() -> None:
        try:
            result["addresses"] = resolve(host, port)
        except Exception as exc:
            result["error"] = exc

    thread = threading.Thread(target=run, name="webhook-dns", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"{host} did not resolve within {timeout:g} s")
    if "error" in result:
        raise result["error"]
    return result["addresses"]


def checked_addresses(
    target: Target, *, allow_private: bool, timeout: float = DNS_TIMEOUT
) -> list[str]:
    """The addresses to connect to. Raises TargetRefused when the host does not resolve
    (within `timeout` seconds) or, unless `allow_private`, when ANY of its addresses is not
    public."""
    try:
        addresses = lookup(target.host, target.port, timeout=timeout)
    except TimeoutError:
        raise TargetRefused(
            f"The host name {target.host} did not resolve within {timeout:g} s."
        ) from None
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


class _Clock:
    """A delivery's deadline, started before the host name's look-up."""

    def __init__(self, seconds: float) -> None:
        self.started = time.monotonic()
        self.until = self.started + seconds

    def left(self) -> float:
        left = self.until - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline passed")
        return left

    def elapsed_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)


def _tls_context(verify: bool | str) -> ssl.SSLContext:
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)


async def _exchange(
    target: Target,
    address: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout: tuple[float, float],
    body_limit: int,
    verify: bool | str,
) -> int:
    """POST to the checked `address` with the host name in `Host` and SNI (the certificate is
    verified against it); the answer's status code. The body is read up to `body_limit` only
    to let the receiver finish writing, and not kept."""
    connect, read = timeout
    literal = f"[{address}]" if ":" in address else address
    async with httpx.AsyncClient(
        verify=_tls_context(verify),
        timeout=httpx.Timeout(read, connect=connect),
        follow_redirects=False,
        trust_env=False,  # no proxy, no .netrc
    ) as client:
        request = client.build_request(
            "POST",
            f"{target.scheme}://{literal}:{target.port}{target.path}",
            content=body,
            headers={**headers, "Host": target.host_header},
            extensions={"sni_hostname": target.host},
        )
        response = await client.send(request, stream=True)
        try:
            received = 0
            async for chunk in response.aiter_raw():
                received += len(chunk)
                if received >= body_limit:
                    break
        except httpx.HTTPError:  # the status is what counts
            pass
        finally:
            await response.aclose()
        return response.status_code


def _run_async(function):
    """anyio.run(function), in a thread of its own when this thread already runs an event loop
    (a caller inside async code), where a second loop cannot start."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return anyio.run(function)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="webhook-post") as pool:
        return pool.submit(anyio.run, function).result()


def _tls_failure(exc: BaseException) -> bool:
    while exc is not None:
        if isinstance(exc, ssl.SSLError | ssl.CertificateError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout: tuple[float, float],
    deadline: float,
    allow_private: bool,
    body_limit: int = 4096,
    verify: bool | str = True,
) -> Outcome:
    """POST `body` to `url` and read the answer, all within `deadline` seconds (the host
    name's look-up, connecting, TLS, sending, the answer's head and its first `body_limit`
    bytes); `timeout` is (connect, read): the longest wait to connect and between two reads.
    httpx's timeouts bound each wait only, so the whole exchange runs under anyio's
    cancel scope (`fail_after`). Never raises for the receiver's, the network's or DNS's
    faults."""
    clock = _Clock(deadline)

    def done(status: int | None, error: str | None) -> Outcome:
        return Outcome(status, error, clock.elapsed_ms())

    try:
        target = parse_target(url)
        address = checked_addresses(
            target, allow_private=allow_private, timeout=min(DNS_TIMEOUT, clock.left())
        )[0]
    except TargetRefused as exc:
        return done(None, f"refused: {exc}"[:200])
    except TimeoutError:  # the deadline passed before the look-up could start
        return done(None, "timed out")

    async def bounded() -> int:
        with anyio.fail_after(clock.left()):
            return await _exchange(
                target,
                address,
                body,
                headers,
                timeout=timeout,
                body_limit=body_limit,
                verify=verify,
            )

    try:
        status = _run_async(bounded)
    except (TimeoutError, httpx.TimeoutException):
        return done(None, "timed out")
    except (httpx.RemoteProtocolError, httpx.DecodingError) as exc:
        return done(None, f"invalid HTTP answer ({type(exc).__name__})")
    except (httpx.HTTPError, OSError) as exc:
        if _tls_failure(exc):
            return done(None, "TLS error (certificate or handshake)")
        return done(None, "connection failed")
    if 200 <= status < 300:
        return done(status, None)
    if 300 <= status < 400:
        return done(status, f"HTTP {status} redirect (not followed)")
    return done(status, f"HTTP {status}")
