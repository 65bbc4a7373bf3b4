"""The README is the newcomer's page (issue 29): short, every link in it and in docs/
resolves, and its "Try the API" runs as pasted against a live `make run`."""

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def prose(path: Path):
    """The lines of a Markdown file outside fenced code blocks."""
    fenced = False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            yield line


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(line.lstrip("#")) for line in prose(path) if re.match(r"#{1,6} ", line)}


def test_the_readme_is_a_few_screens():
    assert len(README.read_text().splitlines()) < 250


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    broken = []
    for line in prose(page):
        for target in LINK.findall(line):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            if not resolved.exists():
                broken.append(f"{target}: no file {resolved.relative_to(ROOT)}")
            elif anchor and anchor not in anchors(resolved):
                broken.append(f"{target}: no heading #{anchor}")
    assert not broken, broken


def test_the_read_on_list_links_every_docs_page():
    linked = set(LINK.findall(README.read_text()))
    for page in PAGES[1:]:
        assert f"docs/{page.name}" in linked, page.name


def try_the_api_block() -> str:
    text = README.read_text()
    section = text.split("\n## Try the API\n", 1)[1]
    return section.split("```sh\n", 1)[1].split("\n```", 1)[0]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, "make run ended before serving"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"make run did not serve on {port} within {seconds} s")


def test_try_the_api_runs_as_pasted_against_make_run(tmp_path):
    port = free_port()
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("RESELLER_", "TEST_", "MAKE", "MFLAGS", "TELEGRAM_"))
    }
    # A database of its own (the developer's instance/ is left alone); a quicker sandbox code.
    env.update(DATABASE_URL=f"sqlite:///{tmp_path}/reseller.sqlite", SANDBOX_CODE_DELAY="3")
    with open(tmp_path / "make-run.log", "w+") as log:
        server = subprocess.Popen(
            ["make", "--no-print-directory", "run", f"PORT={port}"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the Ctrl-C below reaches only it
        )
        try:
            wait_for_port(port, server, 60)
            # The block sets RESELLER_ENV itself; a second terminal shares only PORT (and here
            # the test's database).
            done = subprocess.run(
                ["bash", "-e", "-c", try_the_api_block()],
                cwd=ROOT,
                env={**env, "PORT": str(port)},
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            out = done.stdout
            for expected in (
                "ACCESS_BALANCE:25.00",
                "ACCESS_NUMBER:",
                "STATUS_WAIT_CODE",
                "STATUS_OK:",
                "ACCESS_ACTIVATION",
                '{"status":"STATUS_OK","code":',
                "ledger OK",
            ):
                assert expected in out, out + done.stderr
        finally:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGINT)  # one Ctrl-C
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                raise
        log.seek(0)
        output = log.read()
    # One Ctrl-C stopped the web server and the worker: the port is free again.
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
    assert "customer@example.com / customer-password" in output
    assert f"serving http://127.0.0.1:{port} — Ctrl-C stops web, worker" in output
    assert "run    | stopping" in output
