"""Outbound HTTP to addresses customers choose (webhook receivers), safe from request forgery.

A customer's URL must not reach our own network: unless private targets are allowed
(development, tests), every address its host resolves to must be a public unicast address,
and the connection goes to the address that was checked (no second lookup an attacker's DNS
could answer differently). For https the certificate is still verified against the host name
and SNI carries it (an internationalised host name goes out in its IDNA form, in SNI, `Host`
and to the resolver). Only ports 80, 443 and 1024–65535; no redirects followed; no proxy; the
answer body is read only up to a small limit. A delivery's whole time — the look-up,
connecting, TLS, sending, the answer — is bounded by one deadline: `requests`' timeouts bound
only each wait, and a receiver sending a byte a second never reaches them.

This module speaks the wire and knows nothing of our models.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import idna
from requests.utils import requote_uri

from . import special_addresses

MAX_URL_LENGTH = 500
NAT64 = ipaddress.ip_network("64:ff9b::/96")
DNS_TIMEOUT = 2.0  # seconds a host name's look-up may take (the customer's DNS answers)
HEADER_LIMIT = 16384  # bytes of an answer's status line and headers


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
    """A delivery's deadline: every wait (look-up, connect, handshake, send, each read) gets
    the smaller of its own timeout and the time left, so no receiver, however it trickles,
    holds a delivery past the deadline."""

    def __init__(self, seconds: float) -> None:
        self.started = time.monotonic()
        self.until = self.started + seconds

    def within(self, cap: float) -> float:
        left = self.until - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline passed")
        return min(cap, left)

    def elapsed_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)


def _tls_context(verify: bool | str) -> ssl.SSLContext:
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)


def _request_bytes(target: Target, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {target.path} HTTP/1.1", f"Host: {target.host_header}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1") + body


_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-5][0-9][0-9])(?: |\r?$)")


def _read_answer(sock: socket.socket, clock: _Clock, read: float, body_limit: int) -> int:
    """The answer's status code; reads at most HEADER_LIMIT bytes of head and `body_limit`
    of body (not kept). Raises TimeoutError, OSError, ValueError (not HTTP)."""
    buffer = b""
    while True:
        while b"\r\n\r\n" not in buffer:
            if len(buffer) > HEADER_LIMIT:
                raise ValueError("answer head too long")
            sock.settimeout(clock.within(read))
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed before an answer")
            buffer += chunk
        head, buffer = buffer.split(b"\r\n\r\n", 1)
        match = _STATUS_LINE.match(head.split(b"\r\n", 1)[0])
        if match is None:
            raise ValueError("not an HTTP answer")
        status = int(match.group(1))
        if status >= 200:  # 1xx: an interim answer, the real one follows
            break
    # The body is read only to let the receiver finish writing; a slow one is cut off.
    length = re.search(rb"(?im)^content-length:[ \t]*([0-9]{1,12})[ \t]*$", head)
    wanted = min(body_limit, int(length.group(1)) if length else body_limit)
    try:
        while len(buffer) < wanted:
            sock.settimeout(clock.within(read))
            chunk = sock.recv(min(4096, wanted - len(buffer)))
            if not chunk:
                break
            buffer += chunk
    except OSError:  # TimeoutError included: the status is what counts
        pass
    return status


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
    Never raises for the receiver's, the network's or DNS's faults."""
    clock = _Clock(deadline)

    def done(status: int | None, error: str | None) -> Outcome:
        return Outcome(status, error, clock.elapsed_ms())

    connect, read = timeout
    try:
        target = parse_target(url)
        address = checked_addresses(
            target, allow_private=allow_private, timeout=clock.within(DNS_TIMEOUT)
        )[0]
    except TargetRefused as exc:
        return done(None, f"refused: {exc}"[:200])
    except TimeoutError:  # the deadline passed before the look-up could start
        return done(None, "timed out")
    sock = None
    try:
        sock = socket.create_connection((address, target.port), timeout=clock.within(connect))
        if target.scheme == "https":
            sock.settimeout(clock.within(connect))  # the handshake's whole wait (ssl's own)
            sock = _tls_context(verify).wrap_socket(sock, server_hostname=target.host)
        sock.settimeout(clock.within(read))
        sock.sendall(_request_bytes(target, body, headers))  # one bound for all of it
        status = _read_answer(sock, clock, read, body_limit)
    except TimeoutError:
        return done(None, "timed out")
    except (ssl.SSLError, ssl.CertificateError):
        return done(None, "TLS error (certificate or handshake)")
    except ValueError as exc:
        return done(None, f"invalid HTTP answer ({exc})")
    except OSError:
        return done(None, "connection failed")
    finally:
        if sock is not None:
            sock.close()
    if 200 <= status < 300:
        return done(status, None)
    if 300 <= status < 400:
        return done(status, f"HTTP {status} redirect (not followed)")
    return done(status, f"HTTP {status}")
