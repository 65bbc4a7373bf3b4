"""The first run (issue 29): `make run` (scripts/run.py), and CLI commands without a
production configuration."""

import importlib.util
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLASK = str(ROOT / ".venv" / "bin" / "flask")


def load_run_script():
    spec = importlib.util.spec_from_file_location("run_script", ROOT / "scripts" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def production_environment():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RESELLER_", "TEST_"))}
    # Set empty rather than removed: a developer's .env must not fill them in (python-dotenv
    # never overrides a variable that is set).
    env.update(RESELLER_ENV="production", SECRET_KEY="", DATABASE_URL="")
    return env


def test_a_cli_command_without_production_configuration_says_one_line():
    for args in (["users", "list"], ["worker", "--once"], ["db", "upgrade"]):
        done = subprocess.run(
            [FLASK, "--app", "wsgi", *args],
            cwd=ROOT,
            env=production_environment(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode != 0
        assert done.stdout == ""
        (line,) = done.stderr.splitlines()
        assert "SECRET_KEY is not set" in line
        assert "RESELLER_ENV=development" in line
        assert "Traceback" not in done.stderr


def test_a_taken_port_is_said_in_one_line_before_anything_runs():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            ["make", "--no-print-directory", "run", f"PORT={port}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode != 0
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert f"port {port} is taken" in line and f"PORT={port + 1}" in line


def test_one_process_ending_stops_the_others_with_its_error(capfd):
    run = load_run_script()
    python = sys.executable
    started = time.monotonic()
    code = run.supervise(
        {
            "web": [python, "-c", "import time; print('serving', flush=True); time.sleep(60)"],
            "worker": [
                python,
                "-c",
                "import sys, time; time.sleep(0.5); sys.exit('worker: the database is gone')",
            ],
        },
        dict(os.environ),
        None,
    )
    assert time.monotonic() - started < 10  # web did not run its minute out
    assert code == 1
    out = capfd.readouterr().out
    assert "web    | serving" in out
    assert "worker | worker: the database is gone" in out
    assert "run    | worker exited with code 1: stopping the others" in out


def test_a_process_ending_cleanly_still_stops_the_run(capfd):
    run = load_run_script()
    python = sys.executable
    code = run.supervise(
        {"a": [python, "-c", "import time; time.sleep(60)"], "b": [python, "-c", "pass"]},
        dict(os.environ),
        None,
    )
    assert code == 1
    assert "b exited with code 0" in capfd.readouterr().out


def test_the_bot_runs_only_with_a_token():
    run = load_run_script()
    assert list(run.commands_for({}, 5001)) == ["web", "worker"]
    with_token = run.commands_for({"TELEGRAM_BOT_TOKEN": "123456:ABC"}, 5001)
    assert list(with_token) == ["web", "worker", "bot"]
    assert with_token["bot"][-2:] == ["telegram", "poll"]
    assert "5001" in with_token["web"]


def test_a_bad_value_in_development_is_one_line_without_the_development_hint():
    env = production_environment()
    env.update(RESELLER_ENV="development", ACTIVATION_LIFETIME="nan")
    done = subprocess.run(
        [FLASK, "--app", "wsgi", "users", "list"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    (line,) = done.stderr.splitlines()
    assert "ACTIVATION_LIFETIME" in line and "RESELLER_ENV" not in line
