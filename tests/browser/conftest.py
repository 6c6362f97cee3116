"""Browser-test fixtures: a live billcore server on SQLite (CSRF on) in a background thread, Debian's
chromium driven by Playwright, a fresh page per test and a folder for screenshots.

Other tests reuse them: ``live_server`` (``.url``, ``.app``, ``.make_app_context()``), ``browser``,
``page`` and ``artifacts`` (``test-artifacts/<test name>/`` under the repository root). Add your own
payment modules with ``@pytest.mark.live_server_config(EXTRA_MODULES={...})``.
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.serving import make_server

from billcore.accounts import create_admin, create_client
from billcore.db import db
from billcore.testing.fixtures import FAST_SHUTDOWN
from tests.conftest import ADMIN, CLIENT, make_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS_ROOT = REPO_ROOT / "test-artifacts"


def pytest_configure(config):
    config.addinivalue_line("markers", "live_server_config(**config): extra app config for live_server")


@dataclass
class LiveServer:
    """A running billcore: its base URL (no trailing slash) and its Flask app."""

    url: str
    app: Flask

    def app_context(self):
        """An app context of the served app, for preparing or checking data from the test."""
        return self.app.app_context()


@pytest.fixture
def live_server(tmp_path, request):
    """billcore served on 127.0.0.1 (a free port) with CSRF enabled and ``BASE_URL`` set to the server's
    URL; the demo users ``ADMIN`` (admin) and ``CLIENT`` (client with a RUB account) exist."""
    marker = request.node.get_closest_marker("live_server_config")
    extra = dict(marker.kwargs) if marker else {}
    # The port is known only once the socket is bound, so bind first, then build the app with that URL.
    server = make_server("127.0.0.1", 0, Flask("placeholder"), threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    config = {"WTF_CSRF_ENABLED": True, "BASE_URL": url, "LOG_DIR": str(tmp_path / "logs")}
    config.update(extra)
    app = make_app(tmp_path, f"sqlite:///{tmp_path / 'live.sqlite'}", **config)
    server.app = app
    with app.app_context():
        create_admin(*ADMIN)
        create_client(*CLIENT, currency="RUB")
        db.session.remove()
    thread = threading.Thread(target=server.serve_forever, kwargs=FAST_SHUTDOWN, name="live-server", daemon=True)
    thread.start()
    try:
        yield LiveServer(url=url, app=app)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        with app.app_context():
            db.engine.dispose()


# One Playwright and one chromium per test process: Playwright's sync API refuses a second instance in
# the same thread, and other test modules import the ``browser`` fixture (a second fixture definition).
_SHARED: dict = {"playwright": None, "browser": None, "users": 0}


@pytest.fixture(scope="session")
def browser():
    """Debian's chromium driven by Playwright (never a downloaded browser), shared by the session."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    if _SHARED["browser"] is None:
        _SHARED["playwright"] = sync_playwright().start()
        _SHARED["browser"] = _SHARED["playwright"].chromium.launch(executable_path=str(CHROMIUM),
                                                                     args=CHROMIUM_ARGS)
    _SHARED["users"] += 1
    try:
        yield _SHARED["browser"]
    finally:
        _SHARED["users"] -= 1
        if _SHARED["users"] == 0:
            _SHARED["browser"].close()
            _SHARED["playwright"].stop()
            _SHARED.update(playwright=None, browser=None)


@pytest.fixture
def page(browser):
    """A new browser context and page per test (no cookies shared between tests)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    context.set_default_timeout(10_000)
    pg = context.new_page()
    try:
        yield pg
    finally:
        context.close()


@pytest.fixture
def artifacts(request) -> Path:
    """``test-artifacts/<test name>/`` under the repository root, emptied for this test."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    folder = ARTIFACTS_ROOT / name
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    return folder


def log_in(page, server: LiveServer, email: str, password: str) -> None:
    """Log in through the login form."""
    page.goto(f"{server.url}/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_load_state()


def add_test_card(server: LiveServer, settings: dict, **fields) -> int:
    """A "Test card" method of the fake gateway (pmtemplate) on ``server``: commission 1.00 + 3 %, amounts
    10.00-5000.00, named in both languages; ``fields`` override. Returns its id."""
    from decimal import Decimal

    from billcore.db import db
    from billcore.testing.fixtures import add_paymethod

    values = {"name": "Test card", "name_ru": "Тестовая карта", "description": "Pay with the fake gateway",
              "commission_amount": Decimal("1.00"), "commission_percent": Decimal("3"),
              "min_amount": Decimal("10.00"), "max_amount": Decimal("5000.00"), **fields}
    with server.app_context():
        method_id = add_paymethod("pmtemplate", dict(settings), **values).id
        db.session.remove()
    return method_id
