"""A webhook receiver on 127.0.0.1 for tests: answers 200, 500, hangs past the client's
timeout, or redirects, and records every request it got (path, headers, raw body)."""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """`with Receiver() as receiver:`; set `receiver.mode` to "ok", "error", "hang" or
    "redirect"; `receiver.delay` slows every answer (seconds)."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.delay = 0.0
        self.hang_seconds = 3.0
        self.received: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
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
