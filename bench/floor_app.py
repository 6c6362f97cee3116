"""The benchmark's floor: the least a notification endpoint can do on the same server and database.

One route, ``/mancgi/rkresult``, parses the same form as Robokassa's ResultURL, does one INSERT and one
COMMIT into the same kind of database, and answers ``OK<InvId>``. ``bench/notify.py`` runs it under the
same gunicorn settings and load as billcore and divides billcore's rate by this one.

Configured by environment: ``FLOOR_DATABASE_URL`` (a SQLAlchemy URL; ``postgresql://`` is read as
psycopg 3) and ``FLOOR_SQLITE_BUSY_TIMEOUT_MS``. Run: ``gunicorn "bench.floor_app:create_app()"``.
"""
from __future__ import annotations

import os

from flask import Flask, Response, request
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, create_engine, event, func, insert
from sqlalchemy.engine import Engine

from billcore.config import DEFAULTS
from billcore.db import checkpoint_every_commits

metadata = MetaData()
floor_notifications = Table(
    "bench_floor_notifications", metadata,
    Column("id", Integer, primary_key=True),
    Column("inv_id", String(20), nullable=False),
    Column("out_sum", String(20), nullable=False),
    Column("signature", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), server_default=func.now()),
)


def make_engine(url: str, busy_timeout_ms: int = 30000) -> Engine:
    """An engine configured like billcore's (SQLite: WAL, busy timeout, synchronous=NORMAL, checkpoints)."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    # billcore's WAL checkpoint policy too, with its default (the same settings, so the ratio compares code)
    checkpoint_every_commits(engine, DEFAULTS["SQLITE_CHECKPOINT_EVERY"])
    return engine


def create_app() -> Flask:
    """The floor app; its table must exist (``bench/notify.py`` creates it)."""
    app = Flask(__name__)
    engine = make_engine(os.environ["FLOOR_DATABASE_URL"],
                         int(os.environ.get("FLOOR_SQLITE_BUSY_TIMEOUT_MS", "30000")))

    @app.route("/mancgi/rkresult", methods=["GET", "POST"])
    def result() -> Response:
        form = request.form if request.method == "POST" else request.args
        inv_id = form.get("InvId", "")
        out_sum = form.get("OutSum", "")
        signature = form.get("SignatureValue", "")
        if not inv_id or not out_sum or not signature:
            return Response("missing field", status=400, mimetype="text/plain")
        with engine.begin() as connection:  # one INSERT, one COMMIT
            connection.execute(insert(floor_notifications).values(
                inv_id=inv_id[:20], out_sum=out_sum[:20], signature=signature[:128]))
        return Response(f"OK{inv_id}", mimetype="text/plain")

    return app
