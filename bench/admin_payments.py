"""Benchmark of the admin's payments list (``/admin/payments``) with a million payments.

Fills a fresh database with N payments (default 1,000,000) spread over 10,000 accounts, 6 payment
methods, all statuses and three years, then times the list's first page and deep pages, without and
with each filter: the query alone (``billcore.admin.payments.payments_query``, exactly what the view
runs) and the whole page through the Flask test client (query + template). Each figure is the median
of ``--runs`` runs after one warm-up. For contrast it also times the same deep page fetched with OFFSET.

Not a test: run it by hand.

    .venv/bin/python bench/admin_payments.py                       # SQLite and PostgreSQL, N = 1,000,000
    .venv/bin/python bench/admin_payments.py --n 100000 --db sqlite   # a quick run
    .venv/bin/python bench/admin_payments.py --db postgresql --pg-url postgresql://postgres@127.0.0.1:5432/test

PostgreSQL runs in a new schema that is dropped afterwards (``--keep`` keeps it); SQLite in a
temporary file. ``--explain`` prints the query plans.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, func, insert, select, text  # noqa: E402

from billcore import create_app  # noqa: E402
from billcore.accounts import create_admin  # noqa: E402
from billcore.admin.payments import PaymentFilters, payments_query  # noqa: E402
from billcore.config import normalise_database_url  # noqa: E402
from billcore.db import db  # noqa: E402
from billcore.models import Account, Payment, PaymentMethod  # noqa: E402

ADMIN = ("bench-admin@example.com", "bench-admin-pass")
ACCOUNTS = 10_000
METHODS = 6
START = datetime(2023, 1, 1, tzinfo=timezone.utc)
SPAN_SECONDS = 3 * 365 * 24 * 3600
# status -> share of payments (roughly what a live billing has)
STATUS_WEIGHTS = {"paid": 62, "cancelled": 20, "new": 8, "inpay": 7, "fraud": 0.5, "returned": 1.5, "pending_return": 1}
CHUNK = 20_000
PAGE = 50


def generate(n: int, seed: int = 42):
    """Yield ``n`` payment rows in id (and so time) order."""
    rng = random.Random(seed)
    statuses, weights = zip(*STATUS_WEIGHTS.items())
    step = SPAN_SECONDS / n
    for i in range(n):
        created = START + timedelta(seconds=int(i * step))
        amount = Decimal(rng.choice((100, 250, 500, 1000, 1500, 3000, 5000))) + Decimal(rng.randrange(0, 100)) / 100
        fee = (amount * Decimal("0.03")).quantize(Decimal("0.01"))
        status = rng.choices(statuses, weights)[0]
        paid = status in ("paid", "returned", "pending_return")
        yield {
            "account_id": rng.randrange(1, ACCOUNTS + 1), "paymethod_id": rng.randrange(1, METHODS + 1),
            "amount": amount, "commission": fee, "total": amount + fee, "currency": "RUB", "status": status,
            "external_id": f"op-{i}" if paid else None,
            "refunded_amount": amount if status == "returned" else Decimal("0.00"),
            "description": None, "info": None, "gateway_data": {},
            "created_at": created, "updated_at": created, "paid_at": created + timedelta(minutes=2) if paid else None,
        }


COLUMNS = ["account_id", "paymethod_id", "amount", "commission", "total", "currency", "status", "external_id",
           "refunded_amount", "description", "info", "gateway_data", "created_at", "updated_at", "paid_at"]


def fill(n: int) -> float:
    """Insert the accounts, methods and ``n`` payments; returns the seconds it took."""
    started = time.perf_counter()
    with db.engine.begin() as conn:
        conn.execute(insert(Account.__table__), [
            {"id": i, "name": f"Client {i}", "currency": "RUB", "balance": Decimal("0.00"),
             "created_at": START} for i in range(1, ACCOUNTS + 1)])
        conn.execute(insert(PaymentMethod.__table__), [
            {"id": i, "module": "pmtemplate", "name": f"Method {i}", "currency": "RUB",
             "commission_amount": Decimal("0"), "commission_percent": Decimal("3"), "active": True,
             "sort_order": i, "allow_refund": True, "recurring": False, "settings": {},
             "created_at": START, "updated_at": START} for i in range(1, METHODS + 1)])
    if db.engine.dialect.name == "postgresql":
        _copy_pg(n)
        with db.engine.begin() as conn:
            for table in ("accounts", "paymethods"):
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"))
            conn.execute(text("ANALYZE"))
    else:
        rows = generate(n)
        table = Payment.__table__
        while True:
            chunk = [row for _, row in zip(range(CHUNK), rows)]
            if not chunk:
                break
            with db.engine.begin() as conn:  # SQLAlchemy Core executemany, one transaction per chunk
                conn.execute(insert(table), chunk)
        with db.engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    return time.perf_counter() - started


def _copy_pg(n: int) -> None:
    """PostgreSQL: COPY the payments in (psycopg 3's copy protocol), far faster than INSERTs."""
    raw = db.engine.raw_connection()
    try:
        with raw.cursor() as cur:
            with cur.copy(f"COPY payments ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for row in generate(n):
                    values = [row[c] for c in COLUMNS]
                    values[COLUMNS.index("gateway_data")] = json.dumps(row["gateway_data"])
                    copy.write_row(values)
        raw.commit()
    finally:
        raw.close()


def _median_ms(fn, runs: int) -> float:
    fn()  # warm-up (caches, prepared plans)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _before_for_depth(filters: PaymentFilters, depth: int) -> int | None:
    """The ``before`` id (the last row of the previous page) of the page that starts about ``depth``
    matching rows below the newest, found once and untimed."""
    if depth <= 0:
        return None
    query = payments_query(filters, None, 1).with_only_columns(Payment.id).offset(depth - 1).limit(1)
    return db.session.execute(query).scalar()


def scenarios() -> list[tuple[str, PaymentFilters]]:
    """The filters timed, as the admin would use them."""
    mid = START + timedelta(seconds=SPAN_SECONDS // 2)
    return [
        ("no filter", PaymentFilters()),
        ("status = paid", PaymentFilters(status="paid")),
        ("status = fraud (rare)", PaymentFilters(status="fraud")),
        ("one method", PaymentFilters(paymethod_id=3)),
        ("one account", PaymentFilters(account_id=4242)),
        ("one month", PaymentFilters(date_from=mid.date(), date_to=(mid + timedelta(days=30)).date())),
        ("amount 1000..1010", PaymentFilters(amount_min=Decimal("1000"), amount_max=Decimal("1010"))),
        ("inpay + one month", PaymentFilters(status="inpay", date_from=mid.date(),
                                             date_to=(mid + timedelta(days=30)).date())),
    ]


def run(database_url: str, n: int, runs: int, explain: bool, instance: Path) -> list[dict]:
    """Fill a database and time every scenario; returns one result row per scenario and depth."""
    app = create_app({"DATABASE_URL": database_url, "INSTANCE_PATH": str(instance), "WTF_CSRF_ENABLED": False,
                      "BASE_URL": "https://billing.example.com", "ADMIN_PAGE_SIZE": PAGE, "TESTING": True,
                      "LOG_LEVEL": "WARNING"})
    results = []
    with app.app_context():
        db.create_all()
        print(f"[{app.config['DATABASE_URL'].split(':')[0]}] filling {n:,} payments ...", flush=True)
        seconds = fill(n)
        total = db.session.scalar(select(func.count()).select_from(Payment))
        print(f"  {total:,} payments in {seconds:.1f} s", flush=True)
        create_admin(*ADMIN)
        client = app.test_client()
        client.post("/login", data={"email": ADMIN[0], "password": ADMIN[1]})
        deep = max(0, n - n // 20)  # ~95 % of the way down the unfiltered list
        for name, filters in scenarios():
            matching_depths = {"first page": None}
            before_deep = _before_for_depth(filters, _depth_for(filters))
            if before_deep:
                matching_depths["deep page"] = before_deep
            for depth_name, before in matching_depths.items():
                query = payments_query(filters, before, PAGE + 1)
                q_ms = _median_ms(lambda query=query: db.session.execute(query).all(), runs)
                rows = len(db.session.execute(query).all())
                args = filters.as_args()
                if before:
                    args["before"] = str(before)
                v_ms = _median_ms(lambda args=args: _get(client, args), runs)
                results.append({"scenario": name, "page": depth_name, "before": before, "rows": rows,
                                "query_ms": q_ms, "view_ms": v_ms})
                print(f"  {name:24} {depth_name:10} before={before or '-':<9} rows={rows:<3} "
                      f"query {q_ms:8.2f} ms   page {v_ms:8.2f} ms", flush=True)
                if explain:
                    _explain(query)
        # contrast: the unfiltered deep page with OFFSET instead of keyset
        offset_query = payments_query(PaymentFilters(), None, PAGE + 1).offset(deep)
        o_ms = _median_ms(lambda: db.session.execute(offset_query).all(), max(3, runs // 2))
        results.append({"scenario": "no filter, OFFSET (for contrast)", "page": "deep page", "before": None,
                        "rows": PAGE + 1, "query_ms": o_ms, "view_ms": None})
        print(f"  {'no filter, OFFSET':24} deep page  offset={deep:<9}        query {o_ms:8.2f} ms", flush=True)
        db.session.remove()
        db.engine.dispose()
    return results


def _depth_for(filters: PaymentFilters) -> int:
    """How deep into the matching rows the "deep page" goes: ~95 % of them (counted once, untimed)."""
    count_query = payments_query(filters, None, 1).with_only_columns(func.count()).order_by(None).limit(None)
    matching = db.session.scalar(count_query) or 0
    return max(0, matching - matching // 20 - PAGE) if matching > PAGE else 0


def _get(client, args: dict) -> None:
    resp = client.get("/admin/payments", query_string=args)
    if resp.status_code != 200:
        raise RuntimeError(f"/admin/payments answered {resp.status_code}")


def _explain(query) -> None:
    compiled = query.compile(db.engine, compile_kwargs={"literal_binds": True})
    prefix = "EXPLAIN QUERY PLAN " if db.engine.dialect.name == "sqlite" else "EXPLAIN (ANALYZE, BUFFERS) "
    with db.engine.connect() as conn:
        for row in conn.exec_driver_sql(prefix + str(compiled)):
            print("      " + " | ".join(str(c) for c in row))


def markdown(label: str, n: int, results: list[dict]) -> str:
    """The results as a Markdown table."""
    lines = [f"### {label}, {n:,} payments", "",
             "| filter | page | rows | query (ms) | whole page (ms) |", "|---|---|---:|---:|---:|"]
    for r in results:
        view = f"{r['view_ms']:.1f}" if r["view_ms"] is not None else "—"
        lines.append(f"| {r['scenario']} | {r['page']} | {r['rows']} | {r['query_ms']:.2f} | {view} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run the benchmark on each database and print Markdown tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="payments to create (default 1,000,000)")
    parser.add_argument("--runs", type=int, default=7, help="timed runs per figure; the median is shown")
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL schema / SQLite file")
    parser.add_argument("--explain", action="store_true", help="print each query's plan")
    args = parser.parse_args(argv)
    tables = []
    with tempfile.TemporaryDirectory(prefix="billcore-bench-") as tmp:
        tmpdir = Path(tmp)
        if args.db in ("sqlite", "both"):
            path = (Path.cwd() / "bench-payments.sqlite") if args.keep else tmpdir / "bench.sqlite"
            if path.exists():
                path.unlink()
            results = run(f"sqlite:///{path}", args.n, args.runs, args.explain, tmpdir / "instance-sqlite")
            tables.append(markdown("SQLite", args.n, results))
        if args.db in ("postgresql", "both"):
            schema = "bench_" + uuid.uuid4().hex[:8]
            admin = create_engine(normalise_database_url(args.pg_url), isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f"CREATE SCHEMA {schema}"))
            sep = "&" if "?" in args.pg_url else "?"
            try:
                results = run(f"{args.pg_url}{sep}options=-csearch_path%3D{schema}", args.n, args.runs,
                              args.explain, tmpdir / "instance-pg")
                version = None
                with admin.connect() as conn:
                    version = conn.execute(text("SHOW server_version")).scalar()
                tables.append(markdown(f"PostgreSQL {version}", args.n, results))
            finally:
                if not args.keep:
                    with admin.connect() as conn:
                        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
                else:
                    print(f"kept schema {schema}")
                admin.dispose()
    print()
    print("\n\n".join(tables))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
