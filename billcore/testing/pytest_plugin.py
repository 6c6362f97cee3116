"""pytest fixtures for payment modules: an app on SQLite (and PostgreSQL), users, logged-in clients.

Enable them in a module's top-level ``conftest.py``::

    pytest_plugins = ["billcore.testing.pytest_plugin"]

pytest accepts ``pytest_plugins`` only in the conftest at the root of the run. Inside a larger tree (such
as billcore's own ``plugins/`` folder) import the fixtures into the conftest instead::

    from billcore.testing.pytest_plugin import *  # noqa: F401,F403

Fixtures: ``app`` (parametrised over ``sqlite`` and, with ``BILLCORE_TEST_DATABASE_URL``, ``postgresql``;
app context pushed, tables created, ``BASE_URL`` https://billing.example.com, CSRF off), ``app_config``
(override to pass extra settings to the app), ``admin_user``, ``client_user``, ``other_client_user``,
``admin_client``, ``client_client``, ``other_client_client`` (logged-in test clients).
Helpers: :func:`~billcore.testing.fixtures.add_paymethod`, :func:`~billcore.testing.fixtures.login`.
"""
from __future__ import annotations

import pytest

from billcore.accounts import create_admin, create_client
from billcore.db import db

from .fixtures import (ADMIN, BACKENDS, CLIENT, OTHER_CLIENT, add_paymethod, database_urls,  # noqa: F401
                       drop_reused_schema, login, make_app, reused_database_urls)

__all__ = ["app_config", "billcore_reused_schema", "app", "admin_user", "client_user", "other_client_user",
           "admin_client", "client_client", "other_client_client", "add_paymethod", "login", "ADMIN", "CLIENT",
           "OTHER_CLIENT"]


@pytest.fixture
def app_config() -> dict:
    """Extra app settings for the ``app`` fixture; override it in a conftest or a test module."""
    return {}


@pytest.fixture(scope="session")
def billcore_reused_schema():
    """Drops, at the end of the session, the PostgreSQL schema the ``app`` fixture reuses test after test."""
    yield
    drop_reused_schema()


@pytest.fixture(params=BACKENDS)
def app(request, tmp_path, app_config, billcore_reused_schema):
    """The app on each configured database backend, with an app context pushed (on PostgreSQL a schema
    reused from test to test, emptied before each: no rows, sequences at their start)."""
    urls = reused_database_urls(request.param, tmp_path)
    application = make_app(tmp_path, next(urls), **app_config)
    ctx = application.app_context()
    ctx.push()
    yield application
    db.session.remove()
    ctx.pop()
    with application.app_context():
        db.engine.dispose()
    for _ in urls:  # release the PostgreSQL schema
        pass


@pytest.fixture
def admin_user(app):
    """An administrator (``ADMIN`` e-mail and password)."""
    return create_admin(*ADMIN)


@pytest.fixture
def client_user(app):
    """A client with a RUB account (``CLIENT`` e-mail and password)."""
    return create_client(*CLIENT, currency="RUB")


@pytest.fixture
def other_client_user(app):
    """A second client with its own RUB account (``OTHER_CLIENT``)."""
    return create_client(*OTHER_CLIENT, currency="RUB")


@pytest.fixture
def admin_client(app, admin_user):
    """A test client logged in as the administrator."""
    c = app.test_client()
    assert login(c, *ADMIN).status_code == 302
    return c


@pytest.fixture
def client_client(app, client_user):
    """A test client logged in as ``client_user``."""
    c = app.test_client()
    assert login(c, *CLIENT).status_code == 302
    return c


@pytest.fixture
def other_client_client(app, other_client_user):
    """A test client logged in as ``other_client_user``."""
    c = app.test_client()
    assert login(c, *OTHER_CLIENT).status_code == 302
    return c
