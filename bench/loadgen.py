"""Load generators: wrk for plain request streams, a small asyncio client for flows.

wrk (C, one thread) drives every measurement where each request stands alone (baseline,
getBalance, getStatus polling, getActiveActivations, the dashboard): it costs the shared two
cores far less than any Python client, so the ratio to the baseline is not flattered.
Flows whose next request depends on the last answer (getNumber, then setStatus 8 on the id
it returned) use `Client`, an HTTP/1.1 keep-alive client on asyncio streams; they run at a
few hundred requests per second, where it keeps up easily (its CPU time is reported).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

USER_AGENT = "reseller-bench/1"


# --- statistics ---------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0–100) by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@dataclass
class Result:
    """One measurement: throughput and latency in milliseconds."""

    requests: int
    seconds: float
    p50: float
    p99: float
    failures: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


# --- wrk ----------------------------------------------------------------------------

_LUA = """
local paths = {%(paths)s}
local n = #paths
local i = 0
wrk.headers["User-Agent"] = "%(agent)s"
%(headers)s
request = function()
  i = i %% n + 1
  return wrk.format("GET", paths[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests": %%d, "duration_us": %%d, "non2xx": %%d, "socket_errors": %%d, '
    .. '"p50_us": %%d, "p99_us": %%d}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal here


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(
    base_url: str,
    paths: list[str],
    *,
    seconds: float,
    connections: int,
    workdir: Path,
    name: str,
    headers: dict[str, str] | None = None,
) -> Result:
    """Run wrk against `paths` (round-robin) and return its numbers."""
    header_lines = "\n".join(
        f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in (headers or {}).items()
    )
    script = workdir / f"{name}.lua"
    script.write_text(
        _LUA
        % {
            "paths": ", ".join(_lua_string(p) for p in paths),
            "agent": USER_AGENT,
            "headers": header_lines,
        }
    )
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "30s",
        "-s",
        str(script),
        base_url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    (workdir / f"{name}.wrk.txt").write_text(done.stdout + done.stderr)
    match = re.search(r"^WRK_RESULT (\{.*\})$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed for {name}: {done.stderr.strip() or done.stdout[-500:]}")
    data = json.loads(match.group(1))
    return Result(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50=data["p50_us"] / 1000,
        p99=data["p99_us"] / 1000,
        failures=data["non2xx"] + data["socket_errors"],
    )


# --- an asyncio HTTP/1.1 client -----------------------------------------------------


class HttpError(Exception):
    pass


class Client:
    """One keep-alive connection; reconnects when the server closes it."""

    def __init__(self, host: str, port: int, headers: dict[str, str] | None = None):
        self.host, self.port = host, port
        self.headers = {"User-Agent": USER_AGENT, **(headers or {})}
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
            self._reader = self._writer = None

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, list[str]], bytes]:
        for attempt in (1, 2):
            if self._writer is None:
                await self._connect()
            try:
                return await self._exchange(method, path, body, headers or {})
            except (ConnectionError, asyncio.IncompleteReadError, HttpError):
                await self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _exchange(self, method, path, body, headers):
        assert self._reader is not None and self._writer is not None
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        for name, value in {**self.headers, **headers}.items():
            lines.append(f"{name}: {value}")
        if body or method == "POST":
            lines.append(f"Content-Length: {len(body)}")
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await self._writer.drain()
        head = await self._reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        if not status_line.startswith("HTTP/1."):
            raise HttpError(f"bad status line {status_line!r}")
        status = int(status_line.split()[1])
        answer_headers: dict[str, list[str]] = {}
        for line in header_lines:
            if ":" in line:
                name, value = line.split(":", 1)
                answer_headers.setdefault(name.strip().lower(), []).append(value.strip())
        if "chunked" in ",".join(answer_headers.get("transfer-encoding", [])).lower():
            data = await self._read_chunked()
        else:
            length = int((answer_headers.get("content-length") or ["0"])[0])
            data = await self._reader.readexactly(length) if length else b""
        if "close" in ",".join(answer_headers.get("connection", [])).lower():
            await self.close()
        return status, answer_headers, data

    async def _read_chunked(self) -> bytes:
        assert self._reader is not None
        parts = []
        while True:
            size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self._reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await self._reader.readexactly(size))
            await self._reader.readexactly(2)

    async def get_text(self, path: str, headers: dict[str, str] | None = None) -> str:
        status, _, data = await self.request("GET", path, headers=headers)
        if status != 200:
            raise HttpError(f"GET {path.split('?')[0]} answered {status}")
        return data.decode()


async def timed(samples: list[float], coroutine):
    """Await `coroutine`, appending its duration in ms to `samples`."""
    started = time.perf_counter()
    try:
        return await coroutine
    finally:
        samples.append((time.perf_counter() - started) * 1000)
