"""The deployment files, exercised: gunicorn starts from gunicorn.conf.py and serves the app
(a real process on a migrated SQLite database, set up with the operator commands); the
systemd units, the nginx site and the environment example say what the guide says.

The migration check (upgrade from empty, then no model change left without a migration) is
tests/test_migrations.py, run on SQLite and on PostgreSQL by `make test`.
"""

from __future__ import annotations

import configparser
import datetime as dt
import logging
import os
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from flask import request

from config import ConfigError, ProductionConfig
from reseller import create_app
from reseller.services import accounts
from tests.conftest import make_config, reset_database

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent
SECRET = "deploy-test-secret-key-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def production_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RESELLER_", "TEST_"))}
    env.update(
        RESELLER_ENV="production",
        SECRET_KEY=SECRET,
        DATABASE_URL=database_url,
        UPSTREAM="sandbox",
        RATELIMIT_STORAGE_URI="memory://",
        **extra,
    )
    return env


def flask_cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [str(BIN / "flask"), "--app", "wsgi", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


# --- gunicorn from gunicorn.conf.py ---------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """gunicorn -c gunicorn.conf.py on a free port, on a database set up like the guide says."""
    directory = tmp_path_factory.mktemp("deployed")
    port = free_port()
    env = production_env(
        f"sqlite:///{directory / 'reseller.sqlite'}",
        GUNICORN_BIND=f"127.0.0.1:{port}",
        WEB_CONCURRENCY="2",
        GUNICORN_THREADS="2",
    )
    flask_cli(env, "db", "upgrade")
    flask_cli(env, "prices", "sync")
    flask_cli(env, "users", "create", "customer@example.com", "--password", "password123")
    flask_cli(env, "users", "credit", "customer@example.com", "25")
    key = flask_cli(env, "users", "api-key", "customer@example.com").splitlines()[-1]

    log_path = directory / "gunicorn.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(BIN / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py")],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log_path.read_text()
            try:
                if get(f"{base}/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "gunicorn did not answer /healthz"
            time.sleep(0.2)
        yield {"base": base, "key": key, "log": log_path, "process": process}
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.multiprocess
def test_gunicorn_serves_healthz_with_the_database_ok(served):
    import json

    status, body = get(f"{served['base']}/healthz")
    assert status == 200
    report = json.loads(body)
    assert report["database"] == "ok"
    assert report["status"] == "ok"


@pytest.mark.multiprocess
def test_gunicorn_serves_the_api(served):
    api = f"{served['base']}/stubs/handler_api.php?api_key={served['key']}"
    assert get(f"{api}&action=getBalance") == (200, "ACCESS_BALANCE:25.00")
    status, body = get(f"{api}&action=getNumber&service=tg&country=us")
    assert status == 200
    assert re.fullmatch(r"ACCESS_NUMBER:\d+:\d+", body), body
    assert get(f"{api}&action=getStatus&id={body.split(':')[1]}") == (200, "STATUS_WAIT_CODE")


@pytest.mark.multiprocess
def test_access_log_records_paths_but_never_api_keys(served):
    api = f"{served['base']}/api/customer?api_key={served['key']}&action=getBalance&format=json"
    assert get(api)[0] == 200
    time.sleep(0.5)  # gunicorn writes the access line after the answer
    log = served["log"].read_text()
    assert re.search(r'"GET /api/customer HTTP/1\.1" 200 ', log), log[-2000:]
    assert served["key"] not in log
    assert "api_key=" not in log.replace("api_key=***", "")


def test_gunicorn_error_log_redacts_api_keys():
    config = _gunicorn_settings({})
    record = logging.LogRecord(
        "gunicorn.error",
        logging.ERROR,
        __file__,
        1,
        "Error handling request %s",
        ("/stubs/handler_api.php?api_key=SeCrEt-KeY_123&action=getNumber",),
        None,
    )
    config["_RedactApiKeys"]().filter(record)
    assert "SeCrEt-KeY_123" not in record.getMessage()
    assert "api_key=***&action=getNumber" in record.getMessage()


def test_the_access_log_line_is_what_gunicorn_would_write():
    """RedactingLogger computes only the header and environ atoms the format names; for any
    format, the line must be the one gunicorn's own atoms give."""
    import datetime as dt
    import runpy
    from types import SimpleNamespace

    from gunicorn.config import Config
    from gunicorn.glogging import Logger, SafeAtoms

    settings = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    formats = [
        settings["access_log_format"],
        '%(h)s %(l)s %(u)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(D)s %(L)s %(T)s %(B)s',
        "%(m)s %(U)s %(q)s %(H)s {%({X-Request-ID}o)s} %({user-agent}i)s %({Missing}o)s",
        "%({x-forwarded-for}i)s %({wsgi.url_scheme}e)s %({NO_SUCH}e)s %({content-type}o)s",
    ]
    environ = {
        "REMOTE_ADDR": "203.0.113.5",
        "REQUEST_METHOD": "GET",
        "RAW_URI": "/api/customer?api_key=k&action=getBalance",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "PATH_INFO": "/api/customer",
        "QUERY_STRING": "api_key=k&action=getBalance",
        "HTTP_USER_AGENT": 'curl/8 "quoted"',
        "HTTP_AUTHORIZATION": "Basic dXNlcjpwYXNz",
        "wsgi.url_scheme": "https",
        "werkzeug.request": object(),
    }
    request = SimpleNamespace(
        headers=[("USER-AGENT", 'curl/8 "quoted"'), ("X-FORWARDED-FOR", "198.51.100.1")]
    )
    response = SimpleNamespace(
        status="200 OK",
        sent=1234,
        headers=[("Content-Type", "text/plain"), ("X-Request-ID", "abc123def456")],
    )
    took = dt.timedelta(seconds=1, microseconds=234567)
    for fmt in formats:
        config = Config()
        config.set("access_log_format", fmt)
        ours, theirs = settings["RedactingLogger"](config), Logger(config)
        ours.now = theirs.now = lambda: "[02/Dec/2026:10:00:00 +0000]"
        line = fmt % SafeAtoms(ours.atoms(response, request, environ, took))
        assert line == fmt % SafeAtoms(theirs.atoms(response, request, environ, took)), fmt


# --- gunicorn.conf.py -----------------------------------------------------------------


def _gunicorn_settings(env: dict[str, str]) -> dict:
    """gunicorn.conf.py's settings under `env`, read in a clean interpreter."""
    script = (
        "import json, runpy, sys\n"
        "s = runpy.run_path('gunicorn.conf.py')\n"
        "out = {k: v for k, v in s.items() if isinstance(v, (str, int, list, type(None)))}\n"
        "out['app_imported'] = any(m == 'reseller' or m.startswith('reseller.') "
        "for m in sys.modules)\n"
        "print(json.dumps(out))\n"
    )
    import json
    import runpy

    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GUNICORN_", "WEB_"))}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    settings = json.loads(done.stdout)
    settings.update(
        {k: v for k, v in runpy.run_path(str(ROOT / "gunicorn.conf.py")).items() if k[0] == "_"}
    )
    return settings


def test_gunicorn_config_defaults_and_environment():
    defaults = _gunicorn_settings({})
    assert defaults["app_imported"] is False  # the master must not import the app
    assert defaults["wsgi_app"] == "wsgi:app"
    assert defaults["bind"] == ["127.0.0.1:8000"]
    assert defaults["workers"] == 2 * (os.cpu_count() or 1)
    assert defaults["threads"] >= 2 and defaults["worker_class"] == "gthread"
    assert defaults["accesslog"] == "-" and defaults["errorlog"] == "-"
    assert defaults["forwarded_allow_ips"] == "127.0.0.1,::1"
    assert defaults["timeout"] >= 30

    tuned = _gunicorn_settings(
        {
            "GUNICORN_BIND": "unix:/run/reseller/web.sock,127.0.0.1:9000",
            "WEB_CONCURRENCY": "3",
            "GUNICORN_THREADS": "16",
            "GUNICORN_TIMEOUT": "90",
            "FORWARDED_ALLOW_IPS": "10.0.0.2",
        }
    )
    assert tuned["bind"] == ["unix:/run/reseller/web.sock", "127.0.0.1:9000"]
    assert (tuned["workers"], tuned["threads"], tuned["timeout"]) == (3, 16, 90)
    assert tuned["forwarded_allow_ips"] == "10.0.0.2"


def test_access_log_format_leaves_the_query_string_out():
    fmt = _gunicorn_settings({})["access_log_format"]
    assert "%(U)s" in fmt
    for atom in ("%(r)s", "%(q)s", "%(f)s", "{raw_uri}", "{query_string}"):
        assert atom not in fmt.lower()


# --- the app behind a proxy, and without Redis ------------------------------------------


def test_trusted_proxy_headers_give_the_clients_address_and_scheme(tmp_path):
    app = create_app(make_config(tmp_path, TRUSTED_PROXIES=1))

    @app.get("/_seen")
    def seen():
        return {"addr": request.remote_addr, "scheme": request.scheme}

    client = app.test_client()
    headers = {"X-Forwarded-For": "198.51.100.7, 203.0.113.9", "X-Forwarded-Proto": "https"}
    assert client.get("/_seen", headers=headers).get_json() == {
        "addr": "203.0.113.9",  # the address our one proxy appended, not the client's claim
        "scheme": "https",
    }

    untrusting = create_app(make_config(tmp_path))
    untrusting.add_url_rule("/_seen", view_func=seen)
    assert untrusting.test_client().get("/_seen", headers=headers).get_json() == {
        "addr": "127.0.0.1",
        "scheme": "http",
    }


def test_the_api_keeps_answering_when_the_rate_limit_store_is_down(tmp_path):
    closed = free_port()  # nothing listens here
    app = create_app(
        make_config(
            tmp_path,
            RATELIMIT_ENABLED=True,
            RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{closed}/0",
        )
    )
    with app.app_context():
        reset_database()
        key = accounts.reveal_api_key(accounts.create_user("c@example.com", "password123"))
    logging.getLogger("reseller.rate_limits").disabled = True  # the swallowed error is logged
    try:
        answer = app.test_client().get(
            "/stubs/handler_api.php", query_string={"api_key": key, "action": "getBalance"}
        )
    finally:
        logging.getLogger("reseller.rate_limits").disabled = False
    assert answer.status_code == 200
    assert answer.get_data(as_text=True) == "ACCESS_BALANCE:0.00"


# --- systemd units ----------------------------------------------------------------------


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string((DEPLOY / name).read_text())
    return parser


@pytest.mark.parametrize(
    "name", ["reseller-web.service", "reseller-worker.service", "reseller-telegram.service"]
)
def test_units_run_as_the_service_user_with_the_environment_file(name):
    service = _unit(name)["Service"]
    assert service["User"] == "reseller"
    assert service["EnvironmentFile"] == "/etc/reseller/reseller.env"
    program = shlex.split(service["ExecStart"])[0]
    assert program.startswith(service["WorkingDirectory"] + "/.venv/bin/")
    assert _unit(name)["Install"]["WantedBy"] == "multi-user.target"


def test_web_unit_starts_gunicorn_with_the_production_config():
    service = _unit("reseller-web.service")["Service"]
    argv = shlex.split(service["ExecStart"])
    assert Path(argv[0]).name == "gunicorn"
    assert argv[1:] == ["-c", service["WorkingDirectory"] + "/gunicorn.conf.py"]
    assert service["Type"] == "notify"  # gunicorn tells systemd when it is ready
    assert "HUP" in service["ExecReload"]


def test_worker_unit_runs_flask_worker():
    service = _unit("reseller-worker.service")["Service"]
    argv = shlex.split(service["ExecStart"])
    assert Path(argv[0]).name == "flask"
    assert argv[1:] == ["--app", "wsgi", "worker"]
    assert service["Restart"] == "always"


def test_telegram_unit_polls_with_the_bot_command():
    service = _unit("reseller-telegram.service")["Service"]
    argv = shlex.split(service["ExecStart"])
    assert Path(argv[0]).name == "flask"
    assert argv[1:] == ["--app", "wsgi", "telegram", "poll"]
    assert service["Restart"] == "always"


# --- nginx --------------------------------------------------------------------------------


def _nginx() -> str:
    return (DEPLOY / "nginx-reseller.conf").read_text()


def test_nginx_proxies_to_gunicorn_with_forwarded_headers():
    site = _nginx()
    assert re.search(r"upstream reseller_web \{\s*server 127\.0\.0\.1:8000;", site)
    assert "proxy_pass http://reseller_web;" in site
    for header in (
        "proxy_set_header Host $host;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
    ):
        assert header in site
    assert re.search(r"listen 443 ssl", site)
    assert re.search(r"ssl_certificate \S+fullchain\.pem;", site)
    assert re.search(r"return 301 https://\$host\$request_uri;", site)


def test_nginx_logs_never_include_query_strings():
    site = _nginx()
    formats = dict(re.findall(r"log_format (\w+)((?:\s+'[^']*')+);", site))
    assert formats, "the site defines its own log format"
    for body in formats.values():
        assert not re.search(r"\$(request|request_uri|args|query_string|arg_\w+)\b", body)
    access_logs = re.findall(r"access_log (\S+)(?: (\w+))?;", site)
    assert access_logs
    for target, fmt in access_logs:
        assert target == "off" or fmt in formats, f"access_log {target} uses a format with keys"


def test_nginx_logs_mailed_link_paths_without_their_tokens():
    site = _nginx()
    [body] = re.findall(r"log_format reseller_nokeys((?:\s+'[^']*')+);", site)
    assert "$reseller_logged_uri" in body and "$uri" not in body.replace("_logged_uri", "")
    mapping = re.search(r"map \$uri \$reseller_logged_uri \{(.*?)\}", site, re.S).group(1)
    for path in ("/password/reset/", "/email/verify/", "/email/change/"):
        assert path in mapping


def test_nginx_accepts_the_site(tmp_path):
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if nginx is None:
        pytest.skip("nginx is not installed")
    cert, key = _self_signed(tmp_path)
    site = (
        _nginx()
        .replace("/etc/letsencrypt/live/sms.example.com/fullchain.pem", str(cert))
        .replace("/etc/letsencrypt/live/sms.example.com/privkey.pem", str(key))
        .replace("/var/log/nginx", str(tmp_path))
    )
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
        f"events {{}}\nhttp {{ include {tmp_path}/site.conf; }}\n"
    )
    done = subprocess.run(
        [nginx, "-t", "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


def _self_signed(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sms.example.com")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "fullchain.pem", directory / "privkey.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


# --- the environment file ---------------------------------------------------------------


def _env_example() -> dict[str, str]:
    values = {}
    for line in (DEPLOY / "reseller.env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value.strip('"')
    return values


def test_env_example_names_only_settings_that_exist():
    known = (ROOT / "config.py").read_text() + (ROOT / "gunicorn.conf.py").read_text()
    for name in _env_example():
        assert f'"{name}"' in known, f"{name} is read by neither config.py nor gunicorn.conf.py"


def test_env_example_is_a_valid_production_configuration(monkeypatch):
    values = _env_example()
    for required in ("SECRET_KEY", "DATABASE_URL", "GRIZZLY_API_KEY"):
        assert required in values
    assert values["RESELLER_ENV"] == "production"
    assert values["RATELIMIT_STORAGE_URI"].startswith("redis://")
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    # The example's SECRET_KEY is a placeholder, refused until the operator generates one.
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        ProductionConfig().validate()
    monkeypatch.setenv("SECRET_KEY", secrets.token_urlsafe(48))  # as the comment says
    config = ProductionConfig()
    config.validate()
    assert config.TRUSTED_PROXIES == 1
    assert config.SQLALCHEMY_ENGINE_OPTIONS["pool_size"] >= int(values["GUNICORN_THREADS"])


def test_setup_cfg_declares_every_runtime_dependency_in_its_options():
    """An option in the wrong section is silently ignored by setuptools: install_requires
    under [options.package_data] installed none of the app's dependencies on a new machine."""
    parser = configparser.ConfigParser()
    parser.read(Path(__file__).resolve().parent.parent / "setup.cfg")
    required = {
        re.split(r"[<>=\[]", line.strip())[0].lower()
        for line in parser["options"].get("install_requires", "").splitlines()
        if line.strip()
    }
    imported = {"flask", "flask-login", "flask-sqlalchemy", "flask-migrate", "flask-wtf"}
    imported |= {"requests", "httpx", "anyio", "idna", "flask-babel", "aiogram", "gunicorn"}
    assert imported <= required, sorted(imported - required)
    assert parser["options"].get("python_requires") == ">=3.11"
    for section in parser.sections():
        if section.startswith("options."):
            assert "install_requires" not in parser[section], section
