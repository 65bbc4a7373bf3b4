"""Gunicorn settings for production: `gunicorn -c gunicorn.conf.py` (serves `wsgi:app`).

Every value comes from an environment variable with a default that suits a small server.
This file must not import the application: the master process reads it before forking.

    GUNICORN_BIND              address(es) to listen on, comma-separated; 127.0.0.1:8000
                               (a socket: unix:/run/reseller/web.sock)
    WEB_CONCURRENCY            worker processes; 2 x CPU cores
    GUNICORN_THREADS           threads per worker; 8
    GUNICORN_TIMEOUT           seconds a silent worker lives before it is replaced; 60
    GUNICORN_GRACEFUL_TIMEOUT  seconds to finish requests on stop or reload; 30
    GUNICORN_KEEPALIVE         seconds an idle client connection stays open; 5
    GUNICORN_MAX_REQUESTS      recycle a worker after this many requests (0: never); 0
    FORWARDED_ALLOW_IPS        proxies whose X-Forwarded-Proto is believed; 127.0.0.1,::1
    GUNICORN_ACCESS_LOG        access log file ("-": stdout, empty: off); -
    LOG_LEVEL                  gunicorn's log level (the app reads it too); info
    PROMETHEUS_MULTIPROC_DIR   with METRICS_TOKEN set: the directory where every worker
                               writes its metrics, summed by /metrics (docs/metrics.md);
                               a new temporary directory

Threads versus processes: a request that buys a number or polls a status waits 0.1–15 s on
GrizzlySMS, during which a thread costs almost nothing, so each worker runs several threads
(the `gthread` worker). Every thread may hold one database connection: keep
`WEB_CONCURRENCY × GUNICORN_THREADS` (per host, summed over hosts) below PostgreSQL's
`max_connections`.

Behind a reverse proxy: gunicorn itself only uses `forwarded_allow_ips` to decide whether
`X-Forwarded-Proto: https` makes the request secure. The client's address
(`X-Forwarded-For`, used by the rate limits) is applied by the app's ProxyFix when
`TRUSTED_PROXIES` is set; see docs/deployment.md.

The API key travels in the query string, so the access log records the path without the
query (`%(U)s`, never `%(r)s` or `%(q)s`), and no referrer; the error log redacts
`api_key=` from the request lines gunicorn prints when a request fails.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile

from gunicorn.glogging import Logger as _GunicornLogger


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a whole number, got {raw!r}") from None


wsgi_app = "wsgi:app"
proc_name = "reseller-web"

bind = [address.strip() for address in _env("GUNICORN_BIND", "127.0.0.1:8000").split(",")]
workers = max(1, _env_int("WEB_CONCURRENCY", 2 * (os.cpu_count() or 1)))
threads = max(1, _env_int("GUNICORN_THREADS", 8))
worker_class = "gthread"

timeout = _env_int("GUNICORN_TIMEOUT", 60)
graceful_timeout = _env_int("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = _env_int("GUNICORN_KEEPALIVE", 5)
max_requests = _env_int("GUNICORN_MAX_REQUESTS", 0)
max_requests_jitter = max_requests // 10

forwarded_allow_ips = _env("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# Heartbeat files in memory: a slow disk must not make the master kill healthy workers.
if os.path.isdir("/dev/shm"):  # noqa: S108 - gunicorn's own advice, not a temp file
    worker_tmp_dir = "/dev/shm"  # noqa: S108

accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-") or None
errorlog = "-"
loglevel = _env("LOG_LEVEL", "info").lower()
# Path only (%(U)s): the query string carries API keys. %(M)s is the duration in ms.
access_log_format = (
    '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms "%(a)s" request_id=%({x-request-id}o)s'
)


class _RedactApiKeys(logging.Filter):
    """Blank `api_key=…` in gunicorn's own messages ("Error handling request /…?api_key=…")."""

    _pattern = re.compile(r"(api_key=)[^&\s\"']+", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "api_key=" in message.lower():
            message = self._pattern.sub(r"\1***", message)
        record.msg, record.args = message, None  # formatted once: handlers reuse it
        return True


# What gunicorn's own atoms read from the environ (the rest of it is the app's business).
_ATOM_ENVIRON = (
    "REMOTE_ADDR",
    "REQUEST_METHOD",
    "RAW_URI",
    "SERVER_PROTOCOL",
    "PATH_INFO",
    "QUERY_STRING",
    "HTTP_REFERER",
    "HTTP_USER_AGENT",
    "HTTP_AUTHORIZATION",
)
_HEADER_ATOM = re.compile(r"%\(\{([^}]*)\}([ioe])\)")


class _Answer:
    """What gunicorn's atoms read of a response, without its headers."""

    def __init__(self, resp) -> None:
        self.status = resp.status
        self.sent = getattr(resp, "sent", None)
        self.headers: list = []


class _NoHeaders:
    headers: list = []  # noqa: RUF012 (read only)


class RedactingLogger(_GunicornLogger):
    def setup(self, cfg) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            if not any(isinstance(f, _RedactApiKeys) for f in log.filters):
                log.addFilter(_RedactApiKeys())
        self._header_atoms = [
            (name.lower(), kind) for name, kind in _HEADER_ATOM.findall(cfg.access_log_format)
        ]

    def atoms(self, resp, req, environ, request_time):
        """gunicorn's atoms, but of the request and response headers and the environ only
        those the access-log format names: gunicorn makes an atom of every one of them (the
        app's environ holds dozens) on every request, then escapes each, for a line that
        uses one. A fifth of a getBalance's CPU in the worker went there."""
        slim = {name: environ[name] for name in _ATOM_ENVIRON if name in environ}
        atoms = super().atoms(_Answer(resp), _NoHeaders, slim, request_time)
        for name, kind in self._header_atoms:
            if kind == "e":
                found = [value for key, value in environ.items() if key.lower() == name]
            else:
                found = [
                    value
                    for key, value in (resp.headers if kind == "o" else _headers_of(req))
                    if key.lower() == name
                ]
            if found:
                atoms[f"{{{name}}}{kind}"] = found[-1]
        return atoms


def _headers_of(req) -> list:
    headers = req.headers if hasattr(req, "headers") else req
    return list(headers.items()) if hasattr(headers, "items") else list(headers)


logger_class = RedactingLogger


# --- metrics (docs/metrics.md) -------------------------------------------------------------

_METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"
_metrics: dict = {}  # the master's: prometheus_client.multiprocess once on_starting set it up


def on_starting(server) -> None:
    """With METRICS_TOKEN set, every worker counts into files of one directory
    (prometheus-client's multiprocess mode) and /metrics, on whichever worker answers, sums
    them: exact counts however requests are spread. The variable is set here, in the master
    before it forks, so that each worker has it before it imports prometheus_client."""
    path = os.environ.get(_METRICS_DIR, "").strip()
    if not path and not os.environ.get("METRICS_TOKEN", "").strip():
        return
    if not path:
        path = os.environ[_METRICS_DIR] = tempfile.mkdtemp(prefix="reseller-metrics-")
    os.makedirs(path, exist_ok=True)
    removed = clear_dead_processes_metrics(path)
    server.log.info("metrics in %s (%d files of stopped processes removed)", path, removed)
    # Imported here, once the variable is set (prometheus_client picks its mode on import;
    # the workers inherit the module), and not in child_exit: gunicorn runs that hook
    # inside its SIGCHLD handler, which re-enters when several workers die at once, and a
    # first import there, interrupted by itself, left the master hanging.
    from prometheus_client import multiprocess

    _metrics["multiprocess"] = multiprocess


def clear_dead_processes_metrics(path: str) -> int:
    """Remove the metric files of processes that are gone (a previous run's workers): the
    counts start again from zero, as a restarted process's would. A running process's
    files stay: `flask worker` and the bot may share the directory, and a file removed under
    a running process would lose its counts until it restarts."""
    removed = 0
    for name in os.listdir(path):
        stem, dot, extension = name.rpartition(".")
        pid = stem.rpartition("_")[2]
        if extension == "db" and dot and pid.isdigit() and not _running(int(pid)):
            os.unlink(os.path.join(path, name))
            removed += 1
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def child_exit(server, worker) -> None:
    """A worker ended (replaced, killed, recycled): its live gauges go; its counts stay
    in the sums (a counter never goes down)."""
    multiprocess = _metrics.get("multiprocess")
    if multiprocess is not None:
        multiprocess.mark_process_dead(worker.pid)
