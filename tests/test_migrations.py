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


@pytest.mark.parametrize("backend", BACKENDS)
def test_0003_keeps_the_oldest_live_profile_of_a_parent(tmp_path, backend):
    """Duplicate live profiles left by concurrent opt-ins: the upgrade cancels all but the oldest one,
    then the partial unique index refuses another live profile (a cancelled one is still allowed)."""
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    urls = _database_url_for(backend, tmp_path)
    url = next(urls)
    now = "2026-11-27 10:00:00"
    try:
        app = create_app({"TESTING": True, "INSTANCE_PATH": str(tmp_path / "instance"), "DATABASE_URL": url})
        with app.app_context():
            assert migrate.upgrade("0002") == "0002"
            with db.engine.begin() as conn:
                conn.execute(text("INSERT INTO accounts (id, name, currency, balance, created_at) "
                                  "VALUES (1, 'a', 'RUB', 0, :now)"), {"now": now})
                conn.execute(text(
                    "INSERT INTO paymethods (id, module, name, currency, commission_amount, commission_percent, "
                    "active, sort_order, allow_refund, recurring, settings, created_at, updated_at) VALUES "
                    "(1, 'm', 'm', 'RUB', 0, 0, true, 0, false, true, '{}', :now, :now)"), {"now": now})
                for pid in (1, 2):
                    conn.execute(text(
                        "INSERT INTO payments (id, account_id, paymethod_id, amount, commission, total, currency, "
                        "status, refunded_amount, gateway_data, created_at, updated_at) VALUES "
                        "(:id, 1, 1, 10, 0, 10, 'RUB', 'paid', 0, '{}', :now, :now)"), {"id": pid, "now": now})
                for profile_id, parent, status in ((1, 1, "active"), (2, 1, "suspended"), (3, 1, "active"),
                                                   (4, 2, "active"), (5, 2, "cancelled")):
                    conn.execute(text(
                        "INSERT INTO recurring_profiles (id, account_id, paymethod_id, parent_payment_id, rule, "
                        "amount, monthly_max, status, next_charge_at, sequence, failures, created_at, updated_at) "
                        "VALUES (:id, 1, 1, :parent, 'fixed', 5, 10, :status, :now, 0, 0, :now, :now)"),
                        {"id": profile_id, "parent": parent, "status": status, "now": now})
            assert migrate.upgrade("0003") == "0003"
            with db.engine.connect() as conn:
                rows = conn.execute(text("SELECT id, status, next_charge_at FROM recurring_profiles ORDER BY id")).all()
            assert [(r[0], r[1], r[2] is None) for r in rows] == [
                (1, "active", False), (2, "cancelled", True), (3, "cancelled", True), (4, "active", False),
                (5, "cancelled", False)]
            insert = text("INSERT INTO recurring_profiles (id, account_id, paymethod_id, parent_payment_id, rule, "
                          "amount, monthly_max, status, sequence, failures, created_at, updated_at) "
                          "VALUES (:id, 1, 1, 1, 'fixed', 5, 10, :status, 0, 0, :now, :now)")
            with db.engine.begin() as conn:
                conn.execute(insert, {"id": 6, "status": "cancelled", "now": now})
            with pytest.raises(IntegrityError):
                with db.engine.begin() as conn:
                    conn.execute(insert, {"id": 7, "status": "suspended", "now": now})
            db.engine.dispose()
    finally:
        for _ in urls:
            pass
