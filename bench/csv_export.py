"""How much memory the admin's CSV export of the payments list holds while it streams N payments.

Fills a fresh SQLite database with N paid payments (default 200,000), then reads
``/admin/payments.csv?status=paid`` through the Flask test client chunk by chunk, as a browser would,
and prints the bytes sent, the time taken and the peak of Python's allocations (tracemalloc, which
also slows the run down several times). A flat peak across N is what "streamed" means: the rows are
read from the database in batches and written as they come, never all held at once.

Not a test: run it by hand.

    .venv/bin/python bench/csv_export.py --n 20000
    .venv/bin/python bench/csv_export.py --n 200000
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from billcore.accounts import create_admin, create_client  # noqa: E402
from billcore.db import db  # noqa: E402
from billcore.models import Payment, utcnow  # noqa: E402
from tests.conftest import ADMIN, CLIENT, add_paymethod, login, make_app  # noqa: E402

BATCH = 20_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="payments to export")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="billcore-csv-"))
    app = make_app(folder, f"sqlite:///{folder / 'bench.sqlite'}",
                   EXTRA_MODULES={"pmfakepay": "tests.fake_checkout_module"})
    with app.app_context():
        create_admin(*ADMIN)
        user = create_client(*CLIENT, currency="RUB")
        method = add_paymethod("pmfakepay", name="Fake")
        now = utcnow()
        for start in range(0, args.n, BATCH):
            db.session.execute(Payment.__table__.insert(), [
                {"account_id": user.account_id, "paymethod_id": method.id, "amount": Decimal("100.00"),
                 "commission": Decimal("1.00"), "total": Decimal("101.00"), "currency": "RUB", "status": "paid",
                 "refunded_amount": Decimal("0"), "gateway_data": {}, "created_at": now, "updated_at": now,
                 "paid_at": now, "external_id": f"ext-{i}"} for i in range(start, min(args.n, start + BATCH))])
            db.session.commit()
        client = app.test_client()
        login(client, *ADMIN)
        tracemalloc.start()
        started = time.perf_counter()
        response = client.get("/admin/payments.csv?status=paid", buffered=False)
        sent = sum(len(chunk) for chunk in response.response)
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    print(f"payments={args.n} csv_bytes={sent} seconds={elapsed:.1f} peak_python_allocations_MB={peak / 1e6:.1f}")


if __name__ == "__main__":
    main()
