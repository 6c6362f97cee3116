"""The testing kit's reused PostgreSQL schema: every use starts empty with its sequences at their start, and
make_app does not ask the catalogue again about the tables it is known to hold (any other database it does)."""
from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import func, select

from billcore.db import db
from billcore.models import Account
from billcore.testing.fixtures import PG_URL, database_urls, make_app, reused_database_urls

pytestmark = pytest.mark.skipif(not PG_URL, reason="the reused schema is PostgreSQL's")


@pytest.fixture
def create_all_calls(monkeypatch) -> list[int]:
    """One entry per db.create_all() that make_app makes."""
    calls: list[int] = []
    real = db.create_all

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(db, "create_all", counting)
    return calls


def _use_reused_schema(folder) -> tuple[int, int]:
    """(accounts found on arrival, id of the account then added) in the reused schema."""
    urls = reused_database_urls("postgresql", folder)
    app = make_app(folder, next(urls))
    with app.app_context():
        found = db.session.scalar(select(func.count()).select_from(Account))
        account = Account(name="first", currency="RUB", balance=Decimal("0.00"))
        db.session.add(account)
        db.session.commit()
        added = account.id
        db.session.remove()
        db.engine.dispose()
    for _ in urls:  # release the schema
        pass
    return found, added


def test_the_reused_schema_starts_each_use_with_no_rows_and_its_sequences_at_their_start(tmp_path):
    _, first_id = _use_reused_schema(tmp_path / "one")
    assert _use_reused_schema(tmp_path / "two") == (0, first_id)


def test_make_app_leaves_the_reused_schemas_tables_alone_and_creates_a_new_schemas(tmp_path, create_all_calls):
    _use_reused_schema(tmp_path / "made")  # the schema exists from here on
    create_all_calls.clear()
    _use_reused_schema(tmp_path / "reused")
    assert create_all_calls == []

    urls = database_urls("postgresql", tmp_path)  # a schema of its own, empty
    app = make_app(tmp_path / "new", next(urls))
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Account)) == 0
        db.session.remove()
        db.engine.dispose()
    for _ in urls:  # drop it
        pass
    assert create_all_calls == [1]
