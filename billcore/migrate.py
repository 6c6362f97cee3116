"""Running the Alembic migrations shipped in ``billcore/migrations`` against the app's database."""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from flask import current_app

from .db import db

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config() -> Config:
    """An Alembic configuration pointing at billcore's migrations and the current app's database."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", current_app.config["SQLALCHEMY_DATABASE_URI"].replace("%", "%%"))
    return cfg


def upgrade(revision: str = "head") -> str | None:
    """Upgrade the schema to ``revision``; returns the revision the database is at afterwards."""
    command.upgrade(alembic_config(), revision)
    return current_revision()


def current_revision() -> str | None:
    """The database's current Alembic revision (None for an empty database)."""
    with db.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
