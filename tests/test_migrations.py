"""Alembic migrations: upgrade from empty, and the migrated schema matches the models."""
from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from billcore import create_app, migrate
from billcore.db import Base, db
from tests.conftest import BACKENDS, _database_url_for


@pytest.mark.parametrize("backend", BACKENDS)
def test_upgrade_from_empty_matches_models(tmp_path, backend):
    urls = _database_url_for(backend, tmp_path)
    url = next(urls)
    try:
        app = create_app({"TESTING": True, "INSTANCE_PATH": str(tmp_path / "instance"), "DATABASE_URL": url})
        with app.app_context():
            head = ScriptDirectory.from_config(migrate.alembic_config()).get_current_head()
            assert migrate.current_revision() is None
            assert migrate.upgrade() == head
            assert migrate.upgrade() == head  # running it again is harmless
            with db.engine.connect() as conn:
                ctx = MigrationContext.configure(conn, opts={"compare_type": True})
                diff = compare_metadata(ctx, Base.metadata)
            assert diff == []
            db.engine.dispose()
    finally:
        for _ in urls:
            pass


def test_init_command_creates_schema_and_keys(tmp_path):
    app = create_app({"TESTING": True, "INSTANCE_PATH": str(tmp_path / "instance")})
    result = app.test_cli_runner().invoke(args=["init"])
    assert result.exit_code == 0, result.output
    assert "revision" in result.output
    assert (tmp_path / "instance" / "billcore.sqlite").is_file()
    assert (tmp_path / "instance" / "encryption.key").is_file()
