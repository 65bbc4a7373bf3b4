"""What the metrics cost getBalance (issue 29): the parts of bench/run.py's
`measure_metrics_cost` that are not the driver's — the environment with metrics on, pooling
two runs, reading the count back from /metrics, the table's cell.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

from loadgen import Result

TOKEN = "bench-metrics-token-0123456789"
TOKEN_SETTING = f"METRICS_TOKEN={TOKEN!r}"  # for bench/profile_api.py --set
EXACT_CALLS = 300
BALANCE_COUNT = 'reseller_api_requests_total{action="getBalance",answer="ACCESS_BALANCE"}'


def pooled(first: Result, second: Result) -> Result:
    """Two runs as one: their requests and seconds summed, their CPU per request averaged
    by requests, the worse p99."""
    requests = first.requests + second.requests
    cpu = (first.extra["cpu_ms"] * first.requests + second.extra["cpu_ms"] * second.requests) / max(
        1, requests
    )
    return Result(
        requests=requests,
        seconds=first.seconds + second.seconds,
        p50=(first.p50 + second.p50) / 2,
        p99=max(first.p99, second.p99),
        failures=first.failures + second.failures,
        extra={"cpu_ms": cpu, "rps_each": [first.rps, second.rps]},
    )


def scrape_count(url: str) -> float:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - loopback
        text = answer.read().decode()
    for line in text.splitlines():
        if line.startswith(BALANCE_COUNT + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def metrics_env(env: dict[str, str], bind: str, directory: Path) -> dict[str, str]:
    """The app's environment with the metrics on, listening on `bind` (gunicorn)."""
    directory.mkdir(exist_ok=True)
    return {
        **env,
        "GUNICORN_BIND": bind,
        "METRICS_TOKEN": TOKEN,
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
    }


def call(url: str, times: int) -> None:
    """GET `url` `times` times, each on a new connection (any worker may answer)."""
    for _ in range(times):
        with urllib.request.urlopen(url, timeout=30) as answer:  # noqa: S310 - loopback
            answer.read()


def cpu_ratio(d: dict) -> float | None:
    """On ÷ off in CPU per getBalance: in one process when measured there (steadier than
    the servers on a shared machine), else in the servers."""
    one = d.get("in_process") or {}
    if one.get("metrics_on") and one.get("hot"):
        return one["metrics_on"] / one["hot"]
    m = d.get("metrics")
    if m:
        return m["on"].extra["cpu_ms"] / m["off"].extra["cpu_ms"]
    return None


def cell(d: dict) -> str:
    """The table's cell: on ÷ off in the servers (req/s, CPU per request) and in one
    process, and how many of a known number of calls the scrape counted."""
    m = d.get("metrics")
    if not m:
        return "not measured"
    off, on = m["off"], m["on"]
    text = (
        f"servers: {on.rps:.0f} / {off.rps:.0f} req/s = {on.rps / off.rps:.2f}, CPU "
        f"{on.extra['cpu_ms']:.3f} / {off.extra['cpu_ms']:.3f} ms = "
        f"{on.extra['cpu_ms'] / off.extra['cpu_ms']:.2f}"
    )
    one = d.get("in_process") or {}
    if one.get("metrics_on") and one.get("hot"):
        text += (
            f"; one process: {one['metrics_on']:.3f} / {one['hot']:.3f} ms CPU = "
            f"{one['metrics_on'] / one['hot']:.2f}"
        )
    return text + f"; counted {m['counted']:.0f} of {m['sent']} calls"
