"""The testing kit's app factory and its reused PostgreSQL schema: a database known to hold every table is not
checked again, any other is; the reused schema starts every use empty, its sequences at their start."""
from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import func, inspect, select

from billcore.db import db
from billcore.models import Account
from billcore.testing.fixtures import PG_URL, make_app, reused_database_urls, reused_schema_tables


def _tables_in(app) -> set[str]:
    with app.app_context():
        return set(inspect(db.engine).get_table_names())


def test_a_database_said_to_hold_every_table_is_left_as_it_is(tmp_path):
    every = tuple(t.name for t in db.metadata.sorted_tables)
    app = make_app(tmp_path, f"sqlite:///{tmp_path / 'told.sqlite'}", tables=every)
    assert _tables_in(app) == set()  # nothing was created: the caller vouched for them


def test_a_database_holding_only_some_tables_gets_the_rest(tmp_path):
    some = tuple(t.name for t in db.metadata.sorted_tables)[:2]
    app = make_app(tmp_path, f"sqlite:///{tmp_path / 'partial.sqlite'}", tables=some)
    assert _tables_in(app) == {t.name for t in db.metadata.sorted_tables}


def test_only_the_reused_schemas_own_url_has_its_tables_vouched_for():
    assert reused_schema_tables("sqlite:///elsewhere.sqlite") == ()


@pytest.mark.skipif(not PG_URL, reason="the reused schema is PostgreSQL's")
def test_the_reused_schema_starts_each_use_with_no_rows_and_its_sequences_at_their_start(tmp_path):
    def one_account(folder) -> tuple[int, int]:
        """(accounts found on arrival, id of the account then added) in the reused schema."""
        urls = reused_database_urls("postgresql", folder)
        url = next(urls)
        app = make_app(folder, url, tables=reused_schema_tables(url))
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

    _, first_id = one_account(tmp_path / "one")
    assert one_account(tmp_path / "two") == (0, first_id)
