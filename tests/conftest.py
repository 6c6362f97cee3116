"""Fixtures of billcore's own tests: the same kit a payment module's tests use (``billcore.testing``).

``app`` runs every test on SQLite and, when ``BILLCORE_TEST_DATABASE_URL`` names a PostgreSQL database,
on PostgreSQL too. Override ``app_config`` in a test module to pass settings (e.g. ``EXTRA_MODULES``).
"""
from __future__ import annotations

import pytest

from billcore.db import db
from billcore.testing.fixtures import (ADMIN, BACKENDS, CLIENT, OTHER_CLIENT, PG_URL,  # noqa: F401
                                       add_paymethod, database_urls, login, make_app)
from billcore.testing.pytest_plugin import (admin_client, admin_user, app, app_config,  # noqa: F401
                                            client_client, client_user, other_client_client,
                                            other_client_user)

# the name older tests use for database_urls
_database_url_for = database_urls


@pytest.fixture
def sqlite_app(tmp_path):
    """The app on SQLite only (for tests that need just one backend)."""
    application = make_app(tmp_path, f"sqlite:///{tmp_path / 'test.sqlite'}")
    with application.app_context():
        yield application
        db.session.remove()
