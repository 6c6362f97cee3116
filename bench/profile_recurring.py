"""In-process profile of ``recurring run`` (or, ``--job check``, of ``payments check``) against the
Robokassa sandbox (one gateway thread, or ``--workers``).

Starts the sandbox under gunicorn as ``bench/batch.py`` does, fills a fresh database with ``--n`` due
auto-payment profiles (or ``inpay`` payments; ``bench.batch.fill``), then calls
:func:`billcore.recurring.run_due` (or :func:`billcore.payments.sweep.sweep`) in this process with one
gateway thread, so cProfile sees every call, and prints the CPU time per item and (with ``--profile``)
the functions that cost most. A development aid, not a test.

    .venv/bin/python bench/profile_recurring.py --db sqlite --n 300 --latency 0 [--profile | --count-sql]
    .venv/bin/python bench/profile_recurring.py --job check --db postgresql --n 300 --profile
    .venv/bin/python bench/profile_recurring.py --job check --db postgresql --n 4000 --latency 0.2 --workers 40

With ``--workers`` above 1 the CPU per item includes what the threads cost each other (switching, the
GIL), as in ``bench/batch.py``; the profile then sees only the calling thread.
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import batch  # noqa: E402
from bench.notify import drop_target, make_target  # noqa: E402


def _count_sql(app) -> dict[str, int]:
    """Count the statements and commits of the app's engine from now on."""
    from sqlalchemy import event

    from billcore.db import db

    counts = {"statements": 0, "commits": 0}

    def statement(*_args) -> None:
        counts["statements"] += 1

    def commit(*_args) -> None:
        counts["commits"] += 1

    event.listen(db.engine, "before_cursor_execute", statement)
    event.listen(db.engine, "commit", commit)
    return counts


def main(argv: list[str] | None = None) -> int:
    """Fill, run and print the CPU milliseconds per charge (and the profile with ``--profile``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", choices=["recurring", "check"], default="recurring")
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--latency", type=float, default=0.0, help="sandbox delay per web-service call (s)")
    parser.add_argument("--workers", type=int, default=1, help="gateway threads (GATEWAY_WORKERS)")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--count-sql", action="store_true",
                        help="count the SQL statements and transactions (a listener: slower, so not timed)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="billcore-profile-recurring-") as tmp:
        workdir = Path(tmp)
        target = make_target(args.db, workdir, args.pg_url)
        try:
            sandbox_dir = workdir / "sandbox"
            sandbox_dir.mkdir()
            with batch.Gunicorn("sandbox", batch.sandbox_env(sandbox_dir, args.latency), workdir,
                                workers=1, threads=max(8, args.workers + 8)) as sandbox:
                check = args.job == "check"
                batch.fill(target, sandbox.url, sandbox_dir / "sandbox-store.sqlite", args.n if check else 0,
                           notify=0, expired=0, profiles=0 if check else args.n, refunds=0)
                from billcore import recurring
                from billcore.payments.sweep import sweep

                app = batch._app(target, workers=args.workers)
                with app.app_context():
                    counts = _count_sql(app) if args.count_sql else None
                    profiler = cProfile.Profile(time.process_time) if args.profile else None  # CPU, not waiting
                    wall, cpu = time.perf_counter(), time.process_time()
                    if profiler is not None:
                        profiler.enable()
                    if check:
                        swept = sweep(["pmrobokassa"])
                        done, what = swept.checked, (f"payments checked ({swept.unchanged} unchanged), "
                                                     f"{swept.error_count} errors")
                    else:
                        result = recurring.run_due(limit=args.n)
                        done, what = result.total, (f"charges ({result.count('paid')} paid), "
                                                    f"{len(result.errors)} errors")
                    if profiler is not None:
                        profiler.disable()
                    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                    n = max(done, 1)
                    print(f"{args.db}: {done} {what}; {wall / n * 1000:.2f} ms wall, "
                          f"{cpu / n * 1000:.2f} ms CPU per item")
                    if counts is not None:
                        print(f"per item: {counts['statements'] / n:.1f} SQL statements, "
                              f"{counts['commits'] / n:.1f} commits (the run's own selection included)")
                    if profiler is not None:
                        stats = pstats.Stats(profiler)
                        stats.dump_stats(Path(tempfile.gettempdir()) / "profile_recurring.pstats")
                        stats.sort_stats("cumulative").print_stats(args.top)
        finally:
            drop_target(target, args.pg_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
