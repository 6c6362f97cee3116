"""Helpers to build a billcore app, users and payment methods in tests, without pytest.

They mirror billcore's own ``tests/conftest.py`` so a module's tests run the same way inside and outside
the billcore source tree. ``BILLCORE_TEST_DATABASE_URL`` (a PostgreSQL URL) adds PostgreSQL to SQLite.
"""
from __future__ import annotations

import atexit
import html
import os
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from flask import Flask, g, request_started
from flask_babel import refresh
from sqlalchemy import create_engine, text
from werkzeug.routing import Rule

from alembic import command

from billcore import create_app, migrate
from billcore.config import normalise_database_url
from billcore.db import db
from billcore.i18n import compile_catalogs
from billcore.models import PaymentMethod
from billcore.paymethods import store_settings
from billcore.plugins import get_registry

PG_URL = os.environ.get("BILLCORE_TEST_DATABASE_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])

ADMIN = ("admin@test.example", "admin-pass-1")
CLIENT = ("client@test.example", "client-pass-1")
OTHER_CLIENT = ("other@test.example", "other-pass-1")
BASE_URL = "https://billing.example.com"


def _reuse_route_builders() -> None:
    """Compile each route's URL builder once per process instead of once per app.

    Werkzeug compiles two small Python functions (``url_for``'s builders) for every route of every new
    app: about 0.3 s of the 0.4 s an app takes to create, and the tests create one or two apps per test.
    The compiled function depends only on the rule's text and parsed parts (it reads everything else from
    the rule it is bound to), so apps with the same routes can share it. Rules with ``defaults`` (whose
    values are baked into the function) are compiled as usual. Does nothing if Werkzeug changes the
    private method this relies on.
    """
    original = getattr(Rule, "_compile_builder", None)
    if original is None or getattr(original, "_billcore_cached", False):
        return
    cache: dict[tuple[Any, ...], Any] = {}

    def compile_builder(self: Rule, append_unknown: bool = True) -> Any:
        if self.defaults:
            return original(self, append_unknown)
        key = (self.rule, tuple(self._trace), append_unknown)
        builder = cache.get(key)
        if builder is None:
            builder = cache[key] = original(self, append_unknown)
        return builder

    compile_builder._billcore_cached = True  # type: ignore[attr-defined]
    Rule._compile_builder = compile_builder


_reuse_route_builders()


_COMPILED_CATALOGS: list[Path] = []


def _seed_catalogs(instance_path: Path) -> None:
    """Put up-to-date compiled catalogues into a new instance folder, copied from one compiled per process.

    Every app compiles the ``.po`` catalogues into its instance folder unless a newer ``.mo`` is there;
    each test has a new instance folder, and compiling costs ~60 ms an app. The copy keeps the
    modification times, so the app's own check (still run) finds them current.
    """
    target = instance_path / "translations"
    if target.exists():
        return
    if not _COMPILED_CATALOGS:
        compiled = Path(tempfile.mkdtemp(prefix="billcore-catalogs-"))
        atexit.register(shutil.rmtree, compiled, ignore_errors=True)
        _COMPILED_CATALOGS.append(compiled)
    shutil.copytree(compile_catalogs(_COMPILED_CATALOGS[0]), target)


def make_app(tmp_path: Path, database_url: str, *, stamp: bool = False, **config: Any) -> Flask:
    """A testing app with its own instance folder and database (schema created from the models).

    ``config`` overrides settings, e.g. ``EXTRA_MODULES={"pmfoo": "pmfoo"}`` for a module not installed;
    ``stamp=True`` also stamps the schema at the migrations' head (for tests of ``init`` or ``demo``).
    """
    settings: dict[str, Any] = {
        "TESTING": True,
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "DATABASE_URL": database_url,
        "WTF_CSRF_ENABLED": False,
        "BASE_URL": BASE_URL,
        "SERVER_NAME": None,
        # Tests log in several times a second; the per-host cap on password checks has tests of its own.
        "LOGIN_HASH_RATE": None,
        # A one-round hash for the fixtures' users: scrypt costs ~50 ms per user and per login.
        "TEST_CHEAP_PASSWORD_HASH": True,
    }
    settings.update(config)
    if settings.get("INSTANCE_PATH"):
        _seed_catalogs(Path(settings["INSTANCE_PATH"]))
    app = create_app(settings)
    # Tests keep an app context pushed, and Flask reuses it for test-client requests, so ``g`` (where
    # Flask-Login caches the current user) would leak from one client to the next: forget it per request.
    request_started.connect(_forget_login_user, app, weak=False)
    with app.app_context():
        # create_all is much faster than running the migrations for every test. Stamping the schema as
        # current (for tests of ``init``/``demo``) costs half a second a test, so only on request.
        db.create_all()
        if stamp:
            command.stamp(migrate.alembic_config(), "head")
    return app


def _forget_login_user(sender: Flask, **extra: Any) -> None:
    g.pop("_login_user", None)
    # Flask-WTF caches the request's CSRF token in ``g`` too; a login starts a new session (and token)
    g.pop(sender.config.get("WTF_CSRF_FIELD_NAME", "csrf_token"), None)
    refresh()  # Flask-Babel caches the locale in the same context


def database_urls(backend: str, tmp_path: Path) -> Iterator[str]:
    """Yield a fresh, empty database URL for ``backend`` (a SQLite file, or a new PostgreSQL schema that
    is dropped when the generator is exhausted)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.sqlite'}"
        return
    schema = "t_" + uuid.uuid4().hex[:12]
    admin_engine = create_engine(normalise_database_url(PG_URL), isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        url = normalise_database_url(PG_URL)
        sep = "&" if "?" in url else "?"
        yield f"{url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin_engine.connect() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin_engine.dispose()


_CSRF_INPUT = re.compile(r'<input\b[^>]*\bname="csrf_token"[^>]*>')
_VALUE = re.compile(r'\bvalue="([^"]*)"')


def csrf_token(client, path: str) -> str:
    """The CSRF token of the form on the page at ``path``, as the browser of ``client`` gets it (the
    token belongs to that client's session)."""
    page = client.get(path)
    found = _CSRF_INPUT.search(page.get_data(as_text=True))
    value = _VALUE.search(found.group()) if found else None
    if value is None:
        raise AssertionError(f"no CSRF token on {path} (answered {page.status_code})")
    return html.unescape(value.group(1))


def login(client, email: str, password: str):
    """Log a test client in through the login form; returns the response (302 on success). With CSRF on
    (``WTF_CSRF_ENABLED``), the token of the login page is posted too, as a browser does."""
    data = {"email": email, "password": password}
    if client.application.config.get("WTF_CSRF_ENABLED", True):
        data["csrf_token"] = csrf_token(client, "/login")
    return client.post("/login", data=data, follow_redirects=False)


def add_paymethod(module: str, settings: dict[str, Any] | None = None, **fields: Any) -> PaymentMethod:
    """Store an active RUB payment method of ``module`` with ``settings`` (secrets encrypted), bypassing
    the wizard. ``fields`` override the method's columns (``currency``, ``allow_refund``, ``active`` ...)."""
    info = get_registry().info(module)
    if info is None:
        raise LookupError(f"payment module {module!r} is not loaded: {get_registry().errors.get(module, 'not found')}")
    values: dict[str, Any] = {"name": f"{module} test", "currency": "RUB", "active": True, "allow_refund": True,
                              "commission_amount": Decimal("0"), "commission_percent": Decimal("0")}
    values.update(fields)
    method = PaymentMethod(module=module, settings={}, **values)
    store_settings(method, info, settings or {})
    db.session.add(method)
    db.session.commit()
    return method


def run_together(app: Flask, calls: Sequence[Callable[[], Any]], timeout: float = 60) -> list[Any]:
    """Run each of ``calls`` in its own thread and app context (so on its own database connection), all
    released at once by a barrier, as several workers or hosts would; return, in order, what each call
    returned or the exception it raised (a race's loser may be refused on purpose)."""
    barrier = threading.Barrier(len(calls))
    outcomes: list[Any] = [None] * len(calls)

    def run(index: int, call: Callable[[], Any]) -> None:
        with app.app_context():
            try:
                barrier.wait()
                outcomes[index] = call()
            except BaseException as exc:  # noqa: BLE001 - handed back to the test
                outcomes[index] = exc
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    if any(thread.is_alive() for thread in threads):
        raise AssertionError(f"a call did not finish within {timeout} s")
    return outcomes
