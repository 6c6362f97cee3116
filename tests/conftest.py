"""Fixtures of billcore's own tests: the same kit a payment module's tests use (``billcore.testing``).

``app`` runs every test on SQLite and, when ``BILLCORE_TEST_DATABASE_URL`` names a PostgreSQL database,
on PostgreSQL too. Override ``app_config`` in a test module to pass settings (e.g. ``EXTRA_MODULES``).
"""
from __future__ import annotations

import gc
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from billcore.db import db
from billcore.testing.fixtures import (ADMIN, BACKENDS, CLIENT, OTHER_CLIENT, PG_URL,  # noqa: F401
                                       add_paymethod, database_urls, login, make_app)
from billcore.testing.pytest_plugin import (admin_client, admin_user, app, app_config,  # noqa: F401
                                            billcore_reused_schema, client_client, client_user,
                                            other_client_client, other_client_user)

# the name older tests use for database_urls
_database_url_for = database_urls


def pytest_collection_finish(session):
    """Fewer and cheaper garbage collections for the rest of the run: they took about a fifth of a test
    process's time. What is loaded by now (modules, test functions, fixtures) lives to the end anyway, so it
    moves out of the collector's sight (``gc.freeze``): a full collection no longer walks it. And a young
    collection waits for 10,000 new objects instead of 700. Each test builds a Flask app whose reference
    cycles only a collection frees; collecting less often keeps more of them waiting (about 60 MB more
    per test process), for half the collection time."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, *gc.get_threshold()[1:])


@pytest.fixture
def sqlite_app(tmp_path):
    """The app on SQLite only (for tests that need just one backend)."""
    application = make_app(tmp_path, f"sqlite:///{tmp_path / 'test.sqlite'}")
    with application.app_context():
        yield application
        db.session.remove()


ROOT = Path(__file__).resolve().parent.parent
# What a source distribution would not carry (and what other test processes may be writing meanwhile).
_NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "venv", "build", "dist", "*.egg-info", "instance", "test-artifacts",
                                     "__pycache__", ".pytest_cache", ".hypothesis", "node_modules", "*.mo")


@pytest.fixture(scope="session")
def billcore_wheel(tmp_path_factory) -> Path:
    """billcore's wheel, built once per test process from a copy of the source tree.

    Built from a copy because ``pip wheel`` writes ``build/`` and ``billcore.egg-info`` into the folder it
    builds, and the editable install reads its entry points from that very egg-info: parallel test
    processes must not see it rewritten. Tests that use the wheel share an ``xdist_group`` so one process
    builds it once.
    """
    work = tmp_path_factory.mktemp("wheel-build")
    source = work / "src"
    shutil.copytree(ROOT, source, ignore=_NOT_SOURCE)
    dist = work / "dist"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(source)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return next(dist.glob("billcore-*.whl"))
