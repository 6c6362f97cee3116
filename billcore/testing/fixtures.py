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
import sqlite3
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from flask import Flask, g, request_started
from flask_babel import refresh
from jinja2 import BytecodeCache
from jinja2.bccache import Bucket
from sqlalchemy import create_engine, text
from werkzeug.routing import Rule

from alembic import command

from billcore import create_app, i18n, migrate
from billcore.config import normalise_database_url
from billcore.db import db
from billcore.models import PaymentMethod
from billcore.paymethods import store_settings
from billcore.plugins import get_registry

PG_URL = os.environ.get("BILLCORE_TEST_DATABASE_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])

ADMIN = ("admin@test.example", "admin-pass-1")
CLIENT = ("client@test.example", "client-pass-1")
OTHER_CLIENT = ("other@test.example", "other-pass-1")
BASE_URL = "https://billing.example.com"
# ``serve_forever`` arguments for test servers run in a thread: ``shutdown()`` waits for the serving loop
# to notice, which polls every 0.5 s by default, so every test with a server lost ~0.25-0.5 s stopping it.
FAST_SHUTDOWN: dict[str, float] = {"poll_interval": 0.02}


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
_compile_catalogs = i18n.compile_catalogs
_SEEDING = threading.local()


def _compile_catalogs_once(target: Path) -> Path:
    """``compile_catalogs`` for apps made by :func:`make_app`: copy the catalogues compiled once per
    process into the new instance folder, then let the real function check them.

    Every app compiles the ``.po`` catalogues into its instance folder unless a newer ``.mo`` is there;
    each test has a new instance folder, and compiling costs ~60 ms an app. The copy keeps the
    modification times, so the app's own check finds them current. It runs where the app would compile,
    after the app made its instance folder (private, as the tests of the app's files check). Other apps
    (``create_app`` called directly) compile as usual.
    """
    if getattr(_SEEDING, "active", False) and not target.exists():
        if not _COMPILED_CATALOGS:
            compiled = Path(tempfile.mkdtemp(prefix="billcore-catalogs-"))
            atexit.register(shutil.rmtree, compiled, ignore_errors=True)
            # a folder the real function creates (with its modes, which the copy keeps)
            _COMPILED_CATALOGS.append(compiled / "translations")
        shutil.copytree(_compile_catalogs(_COMPILED_CATALOGS[0]), target)
    return _compile_catalogs(target)


i18n.compile_catalogs = _compile_catalogs_once


class _SharedTemplateCode(BytecodeCache):
    """Jinja's compiled templates, kept in memory for every app :func:`make_app` creates in this process.

    Each app has its own Jinja environment, which compiles a template the first time the app renders it:
    tens of milliseconds a template, and each test renders several on a new app. Jinja checks the
    source's checksum before using the stored code, so an edited template is compiled again. The apps
    share one configuration (filters, globals, extensions), which is what the compiled code relies on.
    """

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: Bucket) -> None:
        code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: Bucket) -> None:
        self._code[bucket.key] = bucket.bytecode_to_string()


_TEMPLATE_CODE = _SharedTemplateCode()


class _SqliteTemplates:
    """An empty SQLite database with the models' tables, made once per process and copied for each new
    app :func:`make_app` creates on a SQLite file, instead of creating the tables again.

    ``create_all`` on a new SQLite file costs ~17 ms of CPU and several synced writes a test; copying the
    file ~1 ms. The copy is taken (with SQLite's backup API, so the WAL's pages are in it) right after
    ``create_all`` made the tables in a new file, so it holds exactly what ``create_all`` writes. It is
    used only for a file that does not exist yet, and only while the models declare the same tables as
    when it was taken (a module imported later may add some): otherwise the tables are created as usual.
    """

    def __init__(self) -> None:
        self.folder: Path | None = None
        self.files: dict[tuple[Any, ...], Path] = {}

    @staticmethod
    def key() -> tuple[Any, ...]:
        """What the tables ``create_all`` makes depend on: the models' tables, their columns and indexes."""
        return tuple((name, id(table), len(table.columns), len(table.indexes), len(table.constraints))
                     for name, table in db.metadata.tables.items())

    @staticmethod
    def path_of(database_url: str) -> Path | None:
        """The file of a plain ``sqlite:///FILE`` URL (None for anything else)."""
        prefix = "sqlite:///"
        if not database_url.startswith(prefix) or "?" in database_url or database_url == prefix + ":memory:":
            return None
        return Path(database_url[len(prefix):])

    def copy_to(self, target: Path) -> bool:
        """Copy the template into ``target`` (which must not exist yet); False if there is none for the
        models as they are now."""
        template = self.files.get(self.key())
        if template is None or target.exists():
            return False
        shutil.copyfile(template, target)
        return True

    def keep(self, source: Path) -> None:
        """Keep ``source`` (tables just created in a new file, no rows) as the template."""
        key = self.key()
        if key in self.files:
            return
        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix="billcore-sqlite-"))
            atexit.register(shutil.rmtree, self.folder, ignore_errors=True)
        template = self.folder / f"{len(self.files)}.sqlite"
        with sqlite3.connect(source) as src, sqlite3.connect(template) as dst:
            src.backup(dst)
        src.close()
        dst.close()
        self.files[key] = template


_SQLITE_TEMPLATES = _SqliteTemplates()


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
    # a SQLite file this app is about to create: its tables may come from the process's template
    new_sqlite_file = _SqliteTemplates.path_of(database_url)
    if new_sqlite_file is not None and new_sqlite_file.exists():
        new_sqlite_file = None
    _SEEDING.active = True
    try:
        app = create_app(settings)
    finally:
        _SEEDING.active = False
    app.jinja_env.bytecode_cache = _TEMPLATE_CODE
    # Tests keep an app context pushed, and Flask reuses it for test-client requests, so ``g`` (where
    # Flask-Login caches the current user) would leak from one client to the next: forget it per request.
    request_started.connect(_forget_login_user, app, weak=False)
    with app.app_context():
        # create_all is much faster than running the migrations for every test (and copying the tables
        # made by an earlier create_all faster still). Stamping the schema as current (for tests of
        # ``init``/``demo``) costs half a second a test, so only on request. The reused PostgreSQL schema,
        # just emptied, holds every table already: create_all would query the catalogue about each
        # (~7 ms a test), unless a module loaded by this app declared one more.
        copied = new_sqlite_file is not None and _SQLITE_TEMPLATES.copy_to(new_sqlite_file)
        if not copied and not _REUSED_SCHEMA.holds_every_table(database_url):
            db.create_all()
            if new_sqlite_file is not None:
                _SQLITE_TEMPLATES.keep(new_sqlite_file)
        if stamp:
            command.stamp(migrate.alembic_config(), "head")
    return app


def _forget_login_user(sender: Flask, **extra: Any) -> None:
    g.pop("_login_user", None)
    # Flask-WTF caches the request's CSRF token in ``g`` too; a login starts a new session (and token)
    g.pop(sender.config.get("WTF_CSRF_FIELD_NAME", "csrf_token"), None)
    refresh()  # Flask-Babel caches the locale in the same context


def _schema_url(schema: str) -> str:
    """The test database's URL with ``schema`` as the connections' search path, committing without
    waiting for the WAL flush (``synchronous_commit=off``).

    A test database need not survive a crash of the PostgreSQL server, and every commit otherwise waits
    for an fsync. Nothing else changes: a commit is still visible at once to every other connection,
    locks and isolation are the same, and a test process killed mid-test loses only what it had not
    committed, as with the setting on.
    """
    url = normalise_database_url(PG_URL or "")
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}%20-csynchronous_commit%3Doff"


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
        yield _schema_url(schema)
    finally:
        with admin_engine.connect() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin_engine.dispose()


# What a schema holds besides rows: its tables, sequences and indexes with their columns, constraints,
# triggers, functions and types. Rows aside, a reused schema must still match this exactly. (Read from
# the catalogues as stored: the pretty-printed definitions would cost ~0.1 s a test.)
_SCHEMA_FINGERPRINT = text("""
SELECT 'r', c.relname, c.relkind::text, c.relnatts::text,
       (SELECT string_agg(concat_ws(':', a.attname, a.atttypid, a.atttypmod, a.attnotnull, a.atthasdef), ','
                          ORDER BY a.attnum)
          FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)
  FROM pg_class c WHERE c.relnamespace = CAST(:schema AS regnamespace)
UNION ALL
SELECT 'c', conname, contype::text, conrelid::text, conkey::text
  FROM pg_constraint WHERE connamespace = CAST(:schema AS regnamespace)
UNION ALL
SELECT 't', t.tgname, t.tgrelid::text, t.tgenabled::text, ''
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE c.relnamespace = CAST(:schema AS regnamespace) AND NOT t.tgisinternal
UNION ALL
SELECT 'f', proname, oid::text, md5(prosrc), '' FROM pg_proc WHERE pronamespace = CAST(:schema AS regnamespace)
UNION ALL
SELECT 'y', typname, typtype::text, oid::text, ''
  FROM pg_type WHERE typnamespace = CAST(:schema AS regnamespace) AND typtype IN ('e', 'd')
ORDER BY 1, 2, 3
""")


_SEQUENCE_STARTS = text("""
SELECT c.relname, s.seqstart FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
 WHERE c.relnamespace = CAST(:schema AS regnamespace) ORDER BY 1
""")


def _model_tables() -> tuple[str, ...]:
    """The names of the models' tables, parents first."""
    return tuple(t.name for t in db.metadata.sorted_tables)


class _ReusedSchema:
    """This process's PostgreSQL schema for the ``app`` fixture: created (with the models' tables) once,
    emptied before each test instead of dropped and created again.

    Creating the tables on PostgreSQL costs ~0.2-0.4 s a test; emptying them (DELETE, sequences set back)
    ~10 ms. A test sees exactly what a new schema would hold: no rows, sequences at their start. When the
    schema differs in anything but rows from the one created (a test added a table, e.g. ``alembic_version``
    by stamping, or altered one), or cannot be emptied, a new schema replaces it.
    """

    def __init__(self) -> None:
        self.schema: str | None = None
        self.fingerprint: list[tuple[Any, ...]] = []
        self.tables: tuple[str, ...] = ()
        self.emptying_script = ""  # what empties the schema (see _emptying_script), made with it
        self.in_use = False
        self.engine = None

    def _admin(self):
        if self.engine is None:
            self.engine = create_engine(normalise_database_url(PG_URL or ""))
        return self.engine

    def _fingerprint(self, conn) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in conn.execute(_SCHEMA_FINGERPRINT, {"schema": self.schema})]

    def _create(self) -> None:
        self._vacuum()
        self.schema = f"t_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        with self._admin().begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {self.schema}"))
            conn.execute(text(f"SET LOCAL search_path TO {self.schema}"))
            db.metadata.create_all(conn)
            self.fingerprint = self._fingerprint(conn)
            starts = [tuple(row) for row in conn.execute(_SEQUENCE_STARTS, {"schema": self.schema})]
        self.tables = _model_tables()
        self.emptying_script = self._emptying_script(starts)

    def _vacuum(self) -> None:
        """VACUUM the test database, system catalogues included, before a schema is made. Every schema
        made and dropped (earlier runs', other processes' and tests' own) leaves dead rows in the
        catalogues, which the fingerprint and the tests' own catalogue lookups then read through; a
        server with autovacuum off keeps them for ever (on one, 88,000 dead rows in ``pg_class`` made 80
        PostgreSQL tests take 13.0 s instead of 9.8 s). Catalogues the user may not vacuum are skipped
        by PostgreSQL with a warning. ``SKIP_LOCKED`` passes over a table another process holds locked
        (another test process's test, in the middle of a lock it takes on purpose), instead of waiting for
        it: a plain VACUUM waited 16 s so in one parallel run, before that process's first test."""
        try:
            with self._admin().connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM (SKIP_LOCKED)"))
        except Exception:  # noqa: BLE001 - only a speed-up: a server that refuses it still runs the tests
            pass

    def _empty(self) -> bool:
        """Delete every row and set every sequence back to its start (one transaction); False, with
        nothing changed, if the schema is no longer as created."""
        if self.tables != _model_tables():
            return False  # the models gained a table since (a module imported later)
        with self._admin().begin() as conn:
            # a connection left open by the last test must not hang the run: give up and start anew
            conn.execute(text("SET LOCAL lock_timeout = '5s'"))
            if self._fingerprint(conn) != self.fingerprint:
                return False
            # every DELETE and sequence reset in one round trip (a script without parameters), not one each
            conn.exec_driver_sql(self.emptying_script)
        return True

    def _emptying_script(self, sequence_starts: list[tuple[Any, ...]]) -> str:
        """The statements that delete every row (children first: the foreign keys) and set every sequence
        (``(name, first value)``) back to its start, as one script. ``setval(..., false)`` rather than
        ``ALTER SEQUENCE ... RESTART``, which gives the sequence a new file and so a new catalogue row (a
        dead one in ``pg_class`` per sequence and test)."""
        deletes = [f'DELETE FROM {self.schema}."{table.name}"' for table in reversed(db.metadata.sorted_tables)]
        resets = ", ".join(f"setval('{self.schema}.\"{name}\"', {start}, false)" for name, start in sequence_starts)
        return ";\n".join(deletes + ([f"SELECT {resets}"] if resets else []))

    def holds_every_table(self, url: str) -> bool:
        """True when ``url`` is this schema's checked-out URL and the schema holds every table of the
        models as they are now (a module loaded since may have declared one more)."""
        return (self.in_use and self.schema is not None and url == _schema_url(self.schema)
                and self.tables == _model_tables())

    def drop(self) -> None:
        """Drop the schema (at the end of the test session, or when it is replaced)."""
        schema, self.schema = self.schema, None
        if schema is not None:
            try:
                with self._admin().begin() as conn:
                    conn.execute(text("SET LOCAL lock_timeout = '5s'"))
                    conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            except Exception:  # noqa: BLE001 - left behind, as a crashed run would leave it
                pass
        if self.engine is not None:
            self.engine.dispose()
            self.engine = None

    def checkout(self) -> str:
        """The schema's URL, empty and as created."""
        ready = False
        if self.schema is not None:
            try:
                ready = self._empty()
            except Exception:  # noqa: BLE001 - locked or broken: replaced below
                ready = False
            if not ready:
                self.drop()
        if not ready:
            self._create()
        self.in_use = True
        assert self.schema is not None
        return _schema_url(self.schema)


_REUSED_SCHEMA = _ReusedSchema()


def reused_database_urls(backend: str, tmp_path: Path) -> Iterator[str]:
    """Like :func:`database_urls` (an empty database for ``backend``), but on PostgreSQL the process's
    one schema, emptied before use, rather than a new one per call (see ``_ReusedSchema``). Falls back to
    a new schema when the reused one is taken (two apps in one test)."""
    if backend != "postgresql" or _REUSED_SCHEMA.in_use:
        yield from database_urls(backend, tmp_path)
        return
    url = _REUSED_SCHEMA.checkout()
    try:
        yield url
    finally:
        _REUSED_SCHEMA.in_use = False


def drop_reused_schema() -> None:
    """Drop the process's reused PostgreSQL schema, if any (at the end of the session)."""
    _REUSED_SCHEMA.drop()


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
