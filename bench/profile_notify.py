"""In-process profile of the Robokassa notification path (no gunicorn, no load processes).

Creates a fresh database like ``bench/notify.py``, then posts signed ResultURL notifications through
Flask's test client one after another and prints the mean wall and CPU time per notification, for
billcore and for the floor app (``bench/floor_app.py``) on the same database. ``--profile`` prints the
functions that cost most (cProfile, cumulative). A development aid, not a test.

    .venv/bin/python bench/profile_notify.py --db sqlite --n 2000 [--profile]
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import notify  # noqa: E402


def _time(client, bodies: list[str]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    for body in bodies:
        response = client.post("/mancgi/rkresult", data=body,
                               content_type="application/x-www-form-urlencoded")
        assert response.status_code in (200, 400), response.status_code
    n = len(bodies)
    return (time.perf_counter() - wall) / n * 1000, (time.process_time() - cpu) / n * 1000


def main(argv: list[str] | None = None) -> int:
    """Run the in-process profile and print milliseconds per notification."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--pg-url", default=notify.PG_ADMIN_URL)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        target = notify.make_target(args.db, Path(tmp), args.pg_url)
        try:
            os.environ["FLOOR_DATABASE_URL"] = target.url
            app = notify.setup_app(target)
            method_id, accounts = notify.create_schema(app)
            payments = notify.create_payments(app, method_id, accounts, args.n + 200)
            bodies = [notify.notification(pid, total, notify.PASSWORD2) for pid, total in payments]
            client = app.test_client()
            _time(client, bodies[:200])  # warm-up
            if args.profile:
                profiler = cProfile.Profile()
                profiler.enable()
            wall, cpu = _time(client, bodies[200:])
            if args.profile:
                profiler.disable()
            from bench.floor_app import create_app as floor_app

            floor = floor_app().test_client()
            _time(floor, bodies[:200])
            floor_wall, floor_cpu = _time(floor, bodies[200:])
            print(f"{args.db}: billcore {wall:.2f} ms wall / {cpu:.2f} ms CPU per notification; "
                  f"floor {floor_wall:.2f} / {floor_cpu:.2f}; ratio (CPU) {floor_cpu / cpu:.2f}")
            if args.profile:
                stats = pstats.Stats(profiler)
                stats.dump_stats(Path(tempfile.gettempdir()) / "profile_notify.pstats")
                stats.sort_stats("cumulative").print_stats(45)
        finally:
            notify.drop_target(target, args.pg_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
