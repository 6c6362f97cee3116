"""Shared fixtures: an app per test on SQLite (and on PostgreSQL when BILLCORE_TEST_DATABASE_URL is set),
users, payment methods and a logged-in test client."""
from __future__ import annotations

import os
import uuid
from decimal import Decimal

import pytest
from sqlalchemy import create_engine, text

from alembic import command

from billcore import create_app, migrate
from billcore.accounts import create_admin, create_client
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


def pg_schema_url(schema: str) -> str:
    """The test PostgreSQL URL with ``search_path`` set to ``schema``."""
    url = normalise_database_url(PG_URL)
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


def make_app(tmp_path, database_url, **config):
    """A testing app with its own instance folder and database, schema created from the models."""
    settings = {
        "TESTING": True,
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "DATABASE_URL": database_url,
        "WTF_CSRF_ENABLED": False,
        "BASE_URL": "https://billing.example.com",
        "SERVER_NAME": None,
    }
    settings.update(config)
    app = create_app(settings)
    with app.app_context():
        # create_all is much faster than running the migrations for every test; test_migrations checks
        # that the migrations build the same schema. Stamping lets `init`/`demo` see it as current.
        db.create_all()
        command.stamp(migrate.alembic_config(), "head")
    return app


@pytest.fixture(params=BACKENDS)
def app(request, tmp_path):
    """The app on each configured backend (SQLite always, PostgreSQL when configured)."""
    url_fixture = _database_url_for(request.param, tmp_path)
    url = next(url_fixture)
    application = make_app(tmp_path, url)
    ctx = application.app_context()
    ctx.push()
    yield application
    db.session.remove()
    ctx.pop()
    with application.app_context():
        db.engine.dispose()
    for _ in url_fixture:  # drop the PostgreSQL schema
        pass


def _database_url_for(backend: str, tmp_path):
    """Yield a fresh empty database URL (SQLite file or new PostgreSQL schema), then clean up."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.sqlite'}"
        return
    schema = "t_" + uuid.uuid4().hex[:12]
    admin_engine = create_engine(normalise_database_url(PG_URL), isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield pg_schema_url(schema)
    finally:
        with admin_engine.connect() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin_engine.dispose()


@pytest.fixture
def sqlite_app(tmp_path):
    """The app on SQLite only (for tests that need just one backend, such as browser tests)."""
    application = make_app(tmp_path, f"sqlite:///{tmp_path / 'test.sqlite'}")
    with application.app_context():
        yield application
        db.session.remove()


@pytest.fixture
def admin_user(app):
    """An administrator (``ADMIN`` e-mail and password)."""
    return create_admin(*ADMIN)


@pytest.fixture
def client_user(app):
    """A client user with a RUB account (``CLIENT`` e-mail and password)."""
    return create_client(*CLIENT, currency="RUB")


@pytest.fixture
def other_client_user(app):
    """A second client with its own RUB account."""
    return create_client(*OTHER_CLIENT, currency="RUB")


def login(client, email: str, password: str):
    """Log ``client`` in through the login form; returns the response."""
    return client.post("/login", data={"email": email, "password": password}, follow_redirects=False)


@pytest.fixture
def admin_client(app, admin_user):
    """A test client logged in as the administrator."""
    c = app.test_client()
    assert login(c, *ADMIN).status_code == 302
    return c


@pytest.fixture
def client_client(app, client_user):
    """A test client logged in as the client user."""
    c = app.test_client()
    assert login(c, *CLIENT).status_code == 302
    return c


def add_paymethod(module: str, settings: dict | None = None, **fields) -> PaymentMethod:
    """Store a payment method of ``module`` directly (bypassing the wizard)."""
    info = get_registry().info(module)
    values = {"name": f"{module} test", "currency": "RUB", "active": True, "allow_refund": True,
              "commission_amount": Decimal("0"), "commission_percent": Decimal("0")}
    values.update(fields)
    method = PaymentMethod(module=module, settings={}, **values)
    store_settings(method, info, settings or {})
    db.session.add(method)
    db.session.commit()
    return method
