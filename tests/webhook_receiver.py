"""A webhook receiver on 127.0.0.1 for tests: answers 200, 500, hangs past the client's
timeout, redirects, or trickles its answer a byte a second, and records every request it got
(path, headers, raw body) and how many of one event it served at once."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _hung_up(connection: socket.socket, wait: float = 0) -> bool:
    """Whether the client closed its side (a read would see the end of the stream), waiting
    up to `wait` seconds for it."""
    readable, _, _ = select.select([connection], [], [], wait)
    if not readable:
        return False
    try:
        return connection.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """`with Receiver() as receiver:`; set `receiver.mode` to "ok", "error", "hang",
    "redirect" or "trickle" (a 200 whose head comes a byte every `trickle_every` seconds for
    `trickle_seconds`); `receiver.delay` slows every answer (seconds)."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.delay = 0.0
        self.hang_seconds = 3.0
        self.trickle_seconds = 8.0
        self.trickle_every = 1.0
        self.received: list[Received] = []
        self.in_flight: dict[str, int] = {}  # X-Webhook-Id → requests being served now
        self.most_at_once: dict[str, int] = {}  # X-Webhook-Id → the most served at once
        self.finished: list[tuple[str, float]] = []  # (X-Webhook-Id, when the answer ended)
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                event = self.headers.get("X-Webhook-Id") or ""
                with receiver._lock:
                    receiver.in_flight[event] = receiver.in_flight.get(event, 0) + 1
                    receiver.most_at_once[event] = max(
                        receiver.most_at_once.get(event, 0), receiver.in_flight[event]
                    )
                try:
                    self.answer()
                finally:
                    with receiver._lock:
                        receiver.in_flight[event] -= 1
                        receiver.finished.append((event, time.monotonic()))

            def answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.received.append(
                        Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                if receiver.delay:
                    time.sleep(receiver.delay)
                mode = receiver.mode
                if mode == "hang":
                    time.sleep(receiver.hang_seconds)
                    return
                if mode == "trickle":
                    self.trickle()
                    return
                if mode == "redirect":
                    self.send_response(302)
                    self.send_header("Location", "/elsewhere")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 200 if mode == "ok" else 500
                payload = b"ok" if status == 200 else b"boom" * 5000  # a long error page
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                with contextlib.suppress(OSError):  # the client read what it wanted, closed
                    self.wfile.write(payload)

            def trickle(self):
                with contextlib.suppress(OSError):  # the client gave up: that is the point
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                    self.wfile.flush()
                    end = time.monotonic() + receiver.trickle_seconds
                    while time.monotonic() < end:
                        # The pause between two bytes ends early when the client hangs up:
                        # from then on the event is no longer in flight here.
                        paused = time.monotonic()
                        if _hung_up(self.connection, wait=receiver.trickle_every):
                            return
                        time.sleep(max(0.0, paused + receiver.trickle_every - time.monotonic()))
                        self.wfile.write(b"a")
                        self.wfile.flush()
                    self.wfile.write(b"\r\nContent-Length: 2\r\n\r\nok")
                self.close_connection = True

            do_GET = do_POST  # noqa: N815 - a followed redirect would arrive as GET

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

    def paths(self) -> list[str]:
        with self._lock:
            return [r.path for r in self.received]
