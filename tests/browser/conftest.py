"""Browser fixtures: the app served for real by werkzeug, and Debian's Chromium driven by
Playwright (never a downloaded browser)."""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from reseller import create_app
from reseller.extensions import db
from reseller.services import accounts, catalog
from reseller.services.provider import upstream
from tests.conftest import make_config, reset_database

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"

ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "admin-password"

# What a production Content-Security-Policy will allow: our own files only, nothing inline.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


@pytest.fixture(scope="module")
def browser():
    """Chromium for one test module. Playwright's sync API keeps an asyncio loop running in
    this thread while it is open: held for the whole session it would make every later
    module's asyncio.run / anyio.run fail ("cannot be called from a running event loop")."""
    if not os.access(CHROMIUM, os.X_OK):
        message = f"{CHROMIUM} is missing: install Debian's chromium (make system-packages)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()


@dataclass
class LiveServer:
    app: object
    url: str
    admin: tuple[str, str] = (ADMIN_EMAIL, ADMIN_PASSWORD)  # an admin account, email and password

    def __call__(self, path: str = "/") -> str:
        return self.url + path


@pytest.fixture
def live_overrides():
    """Override in a test module to change the live server's settings: return a dict."""
    return {}


@contextlib.contextmanager
def serving(tmp_path, overrides=None):
    """The app on 127.0.0.1 (a free port) with tiny time windows: the code arrives 2 s after
    purchase, cancelling opens after 3 s, the upstream is polled at most once a second."""
    app = create_app(
        make_config(
            tmp_path,
            SANDBOX_CODE_DELAY=2,
            EARLY_CANCEL_WINDOW=3,
            UPSTREAM_POLL_INTERVAL=1,
            WTF_CSRF_ENABLED=True,
            **(overrides or {}),
        )
    )

    @app.after_request
    def content_security_policy(response):
        response.headers["Content-Security-Policy"] = CSP
        return response

    with app.app_context():
        reset_database()
        catalog.refresh(upstream())
        accounts.create_user(ADMIN_EMAIL, ADMIN_PASSWORD, is_admin=True)
        db.session.remove()

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield LiveServer(app, f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        thread.join(timeout=10)
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def live_server(tmp_path, live_overrides):
    """A fresh app and database for one test (see `serving`)."""
    with serving(tmp_path, live_overrides) as live:
        yield live


@pytest.fixture(scope="module")
def module_live_server(tmp_path_factory):
    """One app and database for a whole test module, whose tests build on each other's
    data: fewer database resets and server starts on a small machine."""
    with serving(tmp_path_factory.mktemp("live")) as live:
        yield live


@pytest.fixture
def screenshot():
    """`screenshot(page, "name")` saves test-artifacts/screenshots/name.png (full page)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
