#!/usr/bin/env python3
"""`make run`: the development site in one command.

    scripts/run.py --port 5000             migrate, seed the demo accounts, sync prices, then
                                           run the web server, the worker and (when
                                           TELEGRAM_BOT_TOKEN is set) the Telegram bot
    scripts/run.py --port 5000 --check-port   only say whether the port is free

The processes' output is interleaved, each line prefixed with the process's name. One Ctrl-C
stops them all; when one of them ends, the others are stopped and the run exits with its code.

A small supervisor rather than a process runner such as honcho: the bot runs only when a token
is configured (a Procfile has no conditional line), the port is checked before anything starts,
and the whole thing needs nothing but the standard library.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLASK = [str(ROOT / ".venv" / "bin" / "flask"), "--app", "wsgi"]
STOP_GRACE = 5.0  # seconds a process gets to end after SIGTERM


def port_problem(port: int) -> str | None:
    """A one-line reason when 127.0.0.1:port cannot be served, else None."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the web server binds: a socket in TIME_WAIT does not make the port taken.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except PermissionError:
            return f"port {port} needs privileges: choose another, e.g. make run PORT=5001"
        except OSError:
            return (
                f"port {port} is taken (is another `make run` going?): stop it, or choose "
                f"another port, e.g. make run PORT={port + 1}"
            )
    return None


def development_environment(port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(RESELLER_ENV="development", FLASK_APP="wsgi", PYTHONUNBUFFERED="1", PORT=str(port))
    try:  # the same .env the application reads (python-dotenv is one of its dependencies)
        from dotenv import dotenv_values
    except ImportError:
        return env
    for name, value in dotenv_values(ROOT / ".env").items():
        env.setdefault(name, value or "")
    return env


def prepare(env: dict[str, str]) -> None:
    """Migrate, create (or name) the demo accounts, read the sandbox's prices: before the
    servers start, each step's failure stops the run with its own output."""
    (ROOT / "instance").mkdir(exist_ok=True)
    for args in (["db", "upgrade"], ["seed-demo"], ["prices", "sync"]):
        done = subprocess.run(FLASK + args, cwd=ROOT, env=env)
        if done.returncode:
            sys.exit(done.returncode)


class Supervisor:
    """Processes started together and stopped together."""

    def __init__(self) -> None:
        self.processes: dict[str, subprocess.Popen] = {}
        self.print_lock = threading.Lock()
        self.width = 0

    def say(self, name: str, line: str) -> None:
        with self.print_lock:
            sys.stdout.write(f"{name:<{self.width}} | {line}")
            if not line.endswith("\n"):
                sys.stdout.write("\n")
            sys.stdout.flush()

    def start(self, commands: dict[str, list[str]], env: dict[str, str]) -> None:
        self.width = max(len(name) for name in commands)
        for name, command in commands.items():
            # Each in its own session: the terminal's Ctrl-C reaches only this supervisor,
            # which stops them in order (no KeyboardInterrupt tracebacks from the children).
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                start_new_session=True,
            )
            self.processes[name] = process
            threading.Thread(target=self._relay, args=(name, process), daemon=True).start()

    def _relay(self, name: str, process: subprocess.Popen) -> None:
        for line in process.stdout:
            self.say(name, line)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for process in self.processes.values():
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        time.sleep(0.1)  # let the relays print the last lines


def announce_when_serving(supervisor: Supervisor, port: int, names: list[str]) -> None:
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.1)
    else:
        return
    supervisor.say("run", f"serving {url} — Ctrl-C stops {', '.join(names)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--check-port", action="store_true")
    args = parser.parse_args()
    problem = port_problem(args.port)
    if problem:
        print(problem, file=sys.stderr)
        return 1
    if args.check_port:
        return 0

    env = development_environment(args.port)
    prepare(env)
    return supervise(commands_for(env, args.port), env, args.port)


def commands_for(env: dict[str, str], port: int) -> dict[str, list[str]]:
    """The processes of a run: the web server and the worker, and the bot with a token."""
    commands = {
        "web": FLASK + ["run", "--host", "127.0.0.1", "--port", str(port), "--with-threads"],
        "worker": FLASK + ["worker"],
    }
    if env.get("TELEGRAM_BOT_TOKEN"):
        commands["bot"] = FLASK + ["telegram", "poll"]
    return commands


def supervise(commands: dict[str, list[str]], env: dict[str, str], port: int | None) -> int:
    """Run `commands` until Ctrl-C (or SIGTERM), or until one of them ends: then stop the
    others and answer the exit code (a process that ends by itself fails the run)."""
    supervisor = Supervisor()
    stopping = threading.Event()

    def on_signal(signum, frame):  # noqa: ARG001
        stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    supervisor.start(commands, env)
    if port is not None:
        threading.Thread(
            target=announce_when_serving, args=(supervisor, port, list(commands)), daemon=True
        ).start()

    code = 0
    while not stopping.is_set():
        ended = [(n, p.poll()) for n, p in supervisor.processes.items() if p.poll() is not None]
        if ended:
            name, code = ended[0]
            supervisor.say("run", f"{name} exited with code {code}: stopping the others")
            code = code or 1
            break
        stopping.wait(0.2)
    else:
        supervisor.say("run", "stopping")
    supervisor.stop()
    for sig, handler in previous.items():
        signal.signal(sig, handler)
    return code


if __name__ == "__main__":
    sys.exit(main())
