"""The testing kit's app factory: a database known to hold every table is not checked again, any other is."""
from __future__ import annotations

from sqlalchemy import inspect

from billcore.db import db
from billcore.testing.fixtures import make_app, reused_schema_tables


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
