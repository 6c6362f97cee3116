"""Benchmark of Robokassa's ResultURL notification (``/mancgi/rkresult``) under gunicorn.

For each database (SQLite file, PostgreSQL database created and dropped by the run) it

1. creates N ``inpay`` Robokassa payments (plus a few for warming up) through billcore's models, with a
   payment method of module ``pmrobokassa`` whose settings are stored by ``billcore.paymethods``;
2. measures a **floor** (``bench/floor_app.py``: parse the same form, one INSERT, one COMMIT) and then
   billcore, both under the same gunicorn settings, with the same load fired from separate load
   processes: one signed notification per genuine payment, a share of duplicates, a share of forged ones
   (wrong Password #2) aimed at payments that get nothing else, all shuffled;
3. reports notifications/s and latency p50/p95/p99 and the ratio billcore/floor;
4. verifies exactly-once afterwards: every genuine payment ``paid`` with exactly one ``payment`` ledger
   entry, every forged-only payment still ``inpay`` with none, every answer as expected, and every
   account's balance equal to the sum of its ledger.

``--scale`` instead measures billcore alone with ``--small-filler`` (default 1,000) and then
``--filler`` (default 1,000,000) existing payments (each with its ledger entry and two events), bulk
inserted with INSERT ... SELECT.

Run from the repository root, e.g.::

    .venv/bin/python bench/notify.py --db sqlite --db postgresql --workers 4 --concurrency 32 \
        --payments 3000 --duplicates 0.10 --forged 0.05
    .venv/bin/python bench/notify.py --db postgresql --scale --filler 1000000

This is a benchmark, not a test: it prints figures and exits non-zero only when exactly-once fails.
"""
from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cpugroup import CpuGroup, entering  # noqa: E402

VENV_BIN = Path(sys.executable).parent
PASSWORD1, PASSWORD2 = "bench-pass-1", "bench-pass-2"
WRONG_PASSWORD2 = "forged-pass-2"
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


# --------------------------------------------------------------------------------------------------
# Setup: database, payment method, payments, filler
# --------------------------------------------------------------------------------------------------


@dataclass
class Target:
    """One database the benchmark runs against."""

    kind: str  # sqlite | postgresql
    url: str
    instance: Path
    drop: str | None = None  # database to drop afterwards (PostgreSQL)


def make_target(kind: str, workdir: Path, pg_url: str) -> Target:
    """A fresh empty database of ``kind`` and an instance folder for billcore."""
    instance = workdir / f"instance-{kind}"
    instance.mkdir(parents=True)
    if kind == "sqlite":
        return Target(kind, f"sqlite:///{workdir / 'bench.sqlite'}", instance)
    from sqlalchemy import create_engine, text

    name = "bench_" + uuid.uuid4().hex[:10]
    admin = create_engine(_psycopg(pg_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    base = pg_url.rsplit("/", 1)[0]
    return Target(kind, f"{base}/{name}", instance, drop=name)


def drop_target(target: Target, pg_url: str) -> None:
    """Drop the PostgreSQL database the run created (terminating leftover connections first)."""
    if not target.drop:
        return
    from sqlalchemy import create_engine, text

    admin = create_engine(_psycopg(pg_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"),
                     {"d": target.drop})
        conn.execute(text(f"DROP DATABASE IF EXISTS {target.drop}"))
    admin.dispose()


def _psycopg(url: str) -> str:
    return "postgresql+psycopg://" + url.split("://", 1)[1] if url.startswith("postgresql://") else url


def setup_app(target: Target):
    """A billcore app on the target's database and instance folder (same keys as the server's)."""
    from billcore import create_app

    return create_app({"INSTANCE_PATH": str(target.instance), "DATABASE_URL": target.url,
                       "BASE_URL": "https://billing.example.com"})


def create_schema(app) -> tuple[int, list[int]]:
    """Create billcore's tables, the Robokassa method and accounts; returns (method id, account ids)."""
    from alembic import command

    from billcore import migrate
    from billcore.db import db
    from billcore.models import Account, PaymentMethod
    from billcore.paymethods import store_settings
    from billcore.plugins import get_registry

    from bench.floor_app import metadata as floor_metadata

    with app.app_context():
        db.create_all()
        command.stamp(migrate.alembic_config(), "head")
        floor_metadata.create_all(db.engine)
        method = PaymentMethod(module="pmrobokassa", name="Robokassa (bench)", currency="RUB", active=True,
                               commission_amount=Decimal("0"), commission_percent=Decimal("0"), settings={})
        store_settings(method, get_registry().info("pmrobokassa"),
                       {"client": "existing", "identifier": "bench", "password1": PASSWORD1,
                        "password2": PASSWORD2, "hash_algorithm": "md5", "payment_method": "",
                        "test_mode": False, "receipt_enabled": False})
        db.session.add(method)
        accounts = [Account(name=f"bench client {i}", currency="RUB", balance=Decimal("0.00"))
                    for i in range(200)]
        db.session.add_all(accounts)
        db.session.commit()
        return method.id, [a.id for a in accounts]


def create_payments(app, method_id: int, account_ids: list[int], count: int) -> list[tuple[int, Decimal]]:
    """Bulk-insert ``count`` ``inpay`` payments through the Payment model's table; (id, total) each."""
    from sqlalchemy import insert, select

    from billcore.db import db
    from billcore.models import Payment

    now = datetime.now(timezone.utc)
    rows = []
    for i in range(count):
        amount = Decimal(100 + i % 900) + Decimal(i % 100) / 100
        rows.append({"account_id": account_ids[i % len(account_ids)], "paymethod_id": method_id,
                     "amount": amount, "commission": Decimal("0.00"), "total": amount, "currency": "RUB",
                     "status": "inpay", "refunded_amount": Decimal("0.00"), "gateway_data": {},
                     "description": "bench", "created_at": now, "updated_at": now})
    with app.app_context():
        with db.engine.begin() as conn:
            before = conn.execute(select(db.func.coalesce(db.func.max(Payment.id), 0))).scalar_one()
            conn.execute(insert(Payment), rows)
            created = conn.execute(select(Payment.id, Payment.total).where(Payment.id > before)
                                   .order_by(Payment.id)).all()
    return [(pid, total) for pid, total in created]


def add_filler(app, method_id: int, account_ids: list[int], count: int) -> float:
    """Add ``count`` paid payments, each with its ledger entry and two events, server-side
    (INSERT ... SELECT), and bring the balances back in line with the ledger. Returns seconds taken."""
    from sqlalchemy import text

    from billcore.db import db

    if count <= 0:
        return 0.0
    started = time.monotonic()
    first, n_accounts = min(account_ids), len(account_ids)
    with app.app_context():
        sqlite = db.engine.dialect.name == "sqlite"
        now = "'" + datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f") + "'" if sqlite else "now()"
        json_empty = "'{}'" if sqlite else "'{}'::json"
        series = ("WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < :n) "
                  "SELECT x FROM g") if sqlite else "SELECT x FROM generate_series(1, :n) AS g(x)"
        with db.engine.begin() as conn:
            before = conn.execute(text("SELECT coalesce(max(id), 0) FROM payments")).scalar_one()
            conn.execute(text(
                "INSERT INTO payments (account_id, paymethod_id, amount, commission, total, currency, status, "
                "refunded_amount, gateway_data, description, created_at, updated_at, paid_at) "
                f"SELECT {first} + (x % {n_accounts}), {method_id}, 100.00, 0, 100.00, 'RUB', 'paid', 0, "
                f"{json_empty}, 'filler', {now}, {now}, {now} FROM ({series}) AS s"), {"n": count})
            conn.execute(text(
                "INSERT INTO ledger_entries (account_id, payment_id, kind, amount, balance_after, note, created_at) "
                f"SELECT account_id, id, 'payment', amount, 0, 'filler', {now} FROM payments WHERE id > :b"),
                {"b": before})
            for kind, status_from, status_to in (("created", "NULL", "'new'"), ("notification", "'inpay'", "'paid'")):
                conn.execute(text(
                    "INSERT INTO payment_events (payment_id, kind, source, status_from, status_to, outcome, "
                    f"data, created_at) SELECT id, '{kind}', 'filler', {status_from}, {status_to}, 'filler', "
                    f"{json_empty}, {now} FROM payments WHERE id > :b"), {"b": before})
            conn.execute(text(
                "UPDATE accounts SET balance = (SELECT coalesce(sum(amount), 0) FROM ledger_entries "
                "WHERE ledger_entries.account_id = accounts.id)"))
        if not sqlite:
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE"))
    return time.monotonic() - started


# --------------------------------------------------------------------------------------------------
# Notifications and the load
# --------------------------------------------------------------------------------------------------


@dataclass
class Shot:
    """One request of the load: its form body, what kind it is and the payment it is about."""

    body: str
    kind: str  # genuine | duplicate | forged
    payment_id: int


def notification(payment_id: int, total: Decimal, password2: str) -> str:
    """A ResultURL form as Robokassa posts it (six-decimal OutSum, uppercase signature, usual extras)."""
    from pmrobokassa import protocol

    out_sum = format(total, ".6f")
    signature = protocol.result_signature("md5", out_sum, str(payment_id), password2).upper()
    return urlencode({"OutSum": out_sum, "InvId": str(payment_id), "SignatureValue": signature,
                      "Fee": "3.900000", "EMail": "payer@example.com", "PaymentMethod": "BankCard",
                      "IncCurrLabel": "BankCardPSR"})


def build_load(payments: list[tuple[int, Decimal]], duplicates: float, forged: float,
               seed: int) -> tuple[list[Shot], set[int], set[int]]:
    """Genuine notifications, duplicates of some, forged ones on payments kept apart; shuffled."""
    rnd = random.Random(seed)
    forged_count = round(len(payments) * forged)
    forged_payments, genuine_payments = payments[:forged_count], payments[forged_count:]
    shots = [Shot(notification(pid, total, PASSWORD2), "genuine", pid) for pid, total in genuine_payments]
    for pid, total in rnd.sample(genuine_payments, round(len(genuine_payments) * duplicates)):
        shots.append(Shot(notification(pid, total, PASSWORD2), "duplicate", pid))
    shots += [Shot(notification(pid, total, WRONG_PASSWORD2), "forged", pid) for pid, total in forged_payments]
    rnd.shuffle(shots)
    return shots, {pid for pid, _ in genuine_payments}, {pid for pid, _ in forged_payments}


def _load_process(port: int, bodies: list[str], threads: int, start_at: float, timeout: float,
                  out_path: str) -> None:
    """Fire ``bodies`` at 127.0.0.1:port with ``threads`` threads; write (index, t0, t1, status, body)."""
    results: list[tuple[int, float, float, int, str]] = []
    lock = threading.Lock()
    cursor = iter(range(len(bodies)))
    headers = {"Content-Type": "application/x-www-form-urlencoded"}

    def worker() -> None:
        while True:
            with lock:
                index = next(cursor, None)
            if index is None:
                return
            t0 = time.monotonic()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
                conn.request("POST", "/mancgi/rkresult", body=bodies[index], headers=headers)
                response = conn.getresponse()
                status, text = response.status, response.read(200).decode("utf-8", "replace")
                conn.close()
            except OSError as exc:
                status, text = 0, f"{type(exc).__name__}: {exc}"
            t1 = time.monotonic()
            with lock:
                results.append((index, t0, t1, status, text))

    delay = start_at - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    cpu = time.process_time()
    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    Path(out_path).write_text(json.dumps({"cpu": time.process_time() - cpu, "results": results}))


@dataclass
class LoadResult:
    """What a load run measured."""

    count: int
    seconds: float
    latencies_ms: list[float]
    answers: list[tuple[int, str]] = field(repr=False)  # per shot, in shot order
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # server / database / load, whole run

    def cpu_ms(self, part: str) -> float:
        """CPU milliseconds per request spent by ``part`` (server, database or load)."""
        return self.cpu_seconds.get(part, 0.0) / self.count * 1000

    @property
    def rate(self) -> float:
        """Requests per second over the whole run."""
        return self.count / self.seconds

    def percentile(self, p: float) -> float:
        """Latency percentile in milliseconds."""
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) used so far by one live process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime


def _processes() -> list[tuple[int, int, str]]:
    """(pid, parent pid, command name) of every process."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                name, rest = (entry / "stat").read_text().split(" (", 1)[1].rsplit(")", 1)
                found.append((int(entry.name), int(rest.split()[1]), name))
            except (OSError, IndexError, ValueError):
                continue
    return found


def cpu_snapshot(server_pid: int | None) -> dict[str, float]:
    """CPU seconds so far of the server (gunicorn and its workers) and of the database server's
    processes (PostgreSQL's backends; nothing for SQLite, which runs inside the workers)."""
    processes = _processes()
    server = {server_pid} if server_pid else set()
    server |= {pid for pid, parent, _ in processes if parent in server}
    return {"server": sum(_cpu_of(pid) for pid in server),
            "database": sum(_cpu_of(pid) for pid, _, name in processes if name == "postgres")}


def fire(port: int, shots: list[Shot], concurrency: int, processes: int, workdir: Path,
         timeout: float = 60.0, server_pid: int | None = None) -> LoadResult:
    """Send every shot from ``processes`` load processes with ``concurrency`` threads in total; with
    ``server_pid`` also the CPU the server, the database and the load processes used meanwhile."""
    ctx = multiprocessing.get_context("spawn")
    processes = max(1, min(processes, concurrency))
    slices = [list(range(len(shots)))[i::processes] for i in range(processes)]
    per_proc = [concurrency // processes + (1 if i < concurrency % processes else 0) for i in range(processes)]
    start_at = time.monotonic() + 1.5  # let every load process start before the clock runs
    procs, outs = [], []
    for i, indexes in enumerate(slices):
        out = workdir / f"load-{uuid.uuid4().hex[:8]}.json"
        outs.append((indexes, out))
        p = ctx.Process(target=_load_process, args=(port, [shots[j].body for j in indexes], per_proc[i],
                                                    start_at, timeout, str(out)))
        p.start()
        procs.append(p)
    deadline = time.monotonic() + 60 + len(shots) * 0.5  # bounded in time whatever happens
    delay = start_at - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    before = cpu_snapshot(server_pid)
    for p in procs:
        p.join(max(1.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            raise RuntimeError("load process did not finish in time")
    after = cpu_snapshot(server_pid)
    cpu = {part: after[part] - before[part] for part in after}
    cpu["load"] = 0.0
    answers: list[tuple[int, str]] = [(0, "")] * len(shots)
    first, last, latencies = float("inf"), 0.0, []
    for indexes, out in outs:
        written = json.loads(out.read_text())
        cpu["load"] += written["cpu"]
        for local, t0, t1, status, text in written["results"]:
            answers[indexes[local]] = (status, text)
            first, last = min(first, t0), max(last, t1)
            latencies.append((t1 - t0) * 1000)
        out.unlink()
    return LoadResult(len(shots), last - first, latencies, answers, cpu if server_pid else {})


# --------------------------------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------------------------------


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A gunicorn serving ``app_spec`` on 127.0.0.1 with the given settings, stopped on exit."""

    def __init__(self, app_spec: str, env: dict[str, str], args, workdir: Path, name: str, nice: int = 0,
                 cpus: str | None = None, group: CpuGroup | None = None):
        self.port = free_port()
        self.log = workdir / f"gunicorn-{name}.log"
        # ``nice``: a lower CPU priority for this server's processes (e.g. the pages' workers beside the
        # callbacks' own, as ``Nice=`` in a systemd unit would set it)
        command = [str(VENV_BIN / "gunicorn"), "--workers", str(args.workers), "--worker-class",
                   args.worker_class, "--threads", str(args.threads), "--bind", f"127.0.0.1:{self.port}",
                   "--backlog", "2048", "--timeout", "120", "--log-level", "warning", "--chdir", str(ROOT),
                   app_spec]
        if nice:
            command = ["nice", "-n", str(nice), *command]
        if cpus:  # ``cpus``: keep this server's processes on these CPUs (taskset's list, e.g. "0")
            command = ["taskset", "-c", cpus, *command]
        full_env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
        # ``group``: the control group this server runs in (its CPU weight, as a systemd unit's)
        self.process = subprocess.Popen(command, env=full_env, stdout=self.log.open("wb"),
                                        stderr=subprocess.STDOUT, preexec_fn=entering(group))

    def __enter__(self) -> Server:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log.read_text()[-2000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/mancgi/rkresult")
                conn.getresponse().read()
                conn.close()
                return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("gunicorn did not start")

    def __exit__(self, *exc) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def billcore_server(target: Target, args, workdir: Path) -> Server:
    """billcore under gunicorn on the target's database."""
    env = {"BILLCORE_INSTANCE_PATH": str(target.instance), "BILLCORE_DATABASE_URL": target.url,
           "BILLCORE_BASE_URL": "https://billing.example.com"}
    return Server("billcore:create_app()", env, args, workdir, f"billcore-{target.kind}")


def floor_server(target: Target, args, workdir: Path) -> Server:
    """The floor app under gunicorn on the same database."""
    return Server("bench.floor_app:create_app()", {"FLOOR_DATABASE_URL": target.url}, args, workdir,
                  f"floor-{target.kind}")


def warm_up(port: int, shots: list[Shot], args, workdir: Path) -> None:
    """Untimed requests so every worker has imported, connected and compiled what it needs."""
    fire(port, shots, args.concurrency, args.load_processes, workdir)


# --------------------------------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------------------------------


def _money(value) -> Decimal:
    # SQLite's sum() over NUMERIC is a float: round it back to cents (exact for these magnitudes).
    return Decimal(str(value)).quantize(Decimal("0.01"))


def verify(app, shots: list[Shot], answers: list[tuple[int, str]], genuine: set[int],
           forged: set[int]) -> list[str]:
    """Exactly-once and ledger checks after a run; returns the problems found (empty = all good)."""
    from sqlalchemy import text

    from billcore.db import db

    problems: list[str] = []
    for shot, (status, body) in zip(shots, answers):
        if shot.kind in ("genuine", "duplicate") and (status, body) != (200, f"OK{shot.payment_id}"):
            problems.append(f"{shot.kind} notification of {shot.payment_id} answered {status} {body[:80]!r}")
        if shot.kind == "forged" and (status != 400 or body.startswith("OK")):
            problems.append(f"forged notification of {shot.payment_id} answered {status} {body[:80]!r}")
    ids = sorted(genuine | forged)
    with app.app_context(), db.engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT p.id, p.status, p.amount, (SELECT count(*) FROM ledger_entries l WHERE l.payment_id = p.id "
            "AND l.kind = 'payment'), (SELECT coalesce(sum(l.amount), 0) FROM ledger_entries l "
            "WHERE l.payment_id = p.id) FROM payments p WHERE p.id BETWEEN :a AND :b"),
            {"a": ids[0], "b": ids[-1]}).all()
        by_id = {r[0]: r for r in rows}
        for pid in genuine:
            _id, status, amount, entries, credited = by_id[pid]
            if status != "paid" or entries != 1 or _money(credited) != _money(amount):
                problems.append(f"genuine payment {pid}: status {status}, {entries} credits, {credited} credited")
        for pid in forged:
            _id, status, _amount, entries, _credited = by_id[pid]
            if status != "inpay" or entries != 0:
                problems.append(f"forged payment {pid}: status {status}, {entries} credits")
        off = conn.execute(text(
            "SELECT a.id, a.balance, coalesce((SELECT sum(l.amount) FROM ledger_entries l "
            "WHERE l.account_id = a.id), 0) FROM accounts a")).all()
        for account_id, balance, ledger in off:
            if _money(balance) != _money(ledger):
                problems.append(f"account {account_id}: balance {balance} != ledger {ledger}")
    return problems


# --------------------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------------------


def describe(result: LoadResult) -> str:
    """One line of figures."""
    line = (f"{result.count} requests in {result.seconds:.2f} s = {result.rate:.0f}/s; latency ms "
            f"p50 {result.percentile(50):.1f} p95 {result.percentile(95):.1f} p99 {result.percentile(99):.1f}")
    if result.cpu_seconds:
        line += "; CPU ms/request " + " ".join(f"{part} {result.cpu_ms(part):.2f}"
                                              for part in ("server", "database", "load"))
    return line


def run_ratio(kind: str, args, workdir: Path) -> dict:
    """Floor then billcore on one database; returns the figures and the verification."""
    target = make_target(kind, workdir, args.pg_url)
    try:
        app = setup_app(target)
        method_id, accounts = create_schema(app)
        add_filler(app, method_id, accounts, args.small_filler)
        warm = create_payments(app, method_id, accounts, args.warmup)
        payments = create_payments(app, method_id, accounts, args.payments)
        warm_shots, warm_genuine, warm_forged = build_load(warm, 0.0, 0.0, args.seed + 1)
        shots, genuine, forged = build_load(payments, args.duplicates, args.forged, args.seed)
        floors, cores = [], []
        for round_no in range(args.rounds):
            with floor_server(target, args, workdir) as server:
                warm_up(server.port, warm_shots, args, workdir)
                floors.append(fire(server.port, shots, args.concurrency, args.load_processes, workdir,
                                   server_pid=server.process.pid))
            print(f"[{kind}] floor    round {round_no + 1}: {describe(floors[-1])}", flush=True)
            if round_no == args.rounds - 1:
                with billcore_server(target, args, workdir) as server:
                    warm_up(server.port, warm_shots, args, workdir)
                    cores.append(fire(server.port, shots, args.concurrency, args.load_processes, workdir,
                                      server_pid=server.process.pid))
                print(f"[{kind}] billcore round {round_no + 1}: {describe(cores[-1])}", flush=True)
        floor, core = max(floors, key=lambda r: r.rate), cores[-1]
        problems = verify(app, shots, core.answers, genuine, forged)
        problems += verify(app, warm_shots, [(200, f"OK{s.payment_id}") for s in warm_shots], warm_genuine,
                           warm_forged)
        ratio = core.rate / floor.rate
        print(f"[{kind}] ratio billcore/floor = {ratio:.2f}; exactly-once: "
              f"{'OK' if not problems else f'{len(problems)} PROBLEMS'}", flush=True)
        for problem in problems[:20]:
            print("   ", problem)
        return {"db": kind, "floor": floor, "billcore": core, "ratio": ratio, "problems": problems,
                "genuine": len(genuine), "forged": len(forged),
                "duplicates": sum(1 for s in shots if s.kind == "duplicate")}
    finally:
        drop_target(target, args.pg_url)


def run_scale(kind: str, args, workdir: Path) -> dict:
    """billcore on two databases, one with ``small_filler`` and one with ``filler`` existing payments,
    measured alternately ``--scale-rounds`` times (so that a noisy neighbour hits both alike); the
    median rate of each gives the time per notification."""
    prepared = []
    try:
        for label, filler in (("small", args.small_filler), ("large", args.filler)):
            sub = workdir / f"scale-{kind}-{label}"  # one folder per database and size
            sub.mkdir()
            target = make_target(kind, sub, args.pg_url)
            prepared.append((label, filler, target))
            app = setup_app(target)
            method_id, accounts = create_schema(app)
            seconds = add_filler(app, method_id, accounts, filler)
            checkpoint(app)
            print(f"[{kind}] {label}: {filler} existing payments (filled in {seconds:.1f} s)", flush=True)
            prepared[-1] = (label, filler, target, app, method_id, accounts)
        figures: dict[str, dict] = {label: {"existing": filler, "results": [], "problems": []}
                                    for label, filler, *_ in prepared}
        for round_no in range(args.scale_rounds):
            for label, _filler, target, app, method_id, accounts in prepared:
                warm = create_payments(app, method_id, accounts, args.warmup)
                payments = create_payments(app, method_id, accounts, args.payments)
                warm_shots, *_ = build_load(warm, 0.0, 0.0, args.seed + 1)
                shots, genuine, forged = build_load(payments, args.duplicates, args.forged, args.seed)
                with billcore_server(target, args, workdir) as server:
                    warm_up(server.port, warm_shots, args, workdir)
                    result = fire(server.port, shots, args.concurrency, args.load_processes, workdir)
                problems = verify(app, shots, result.answers, genuine, forged)
                figures[label]["results"].append(result)
                figures[label]["problems"] += problems
                print(f"[{kind}] {label} round {round_no + 1}: {describe(result)}; {1000 / result.rate:.2f} ms per "
                      f"notification; exactly-once {'OK' if not problems else f'{len(problems)} PROBLEMS'}", flush=True)
        for label in figures:
            ordered = sorted(figures[label]["results"], key=lambda r: r.rate)
            figures[label]["result"] = ordered[len(ordered) // 2]
        change = figures["small"]["result"].rate / figures["large"]["result"].rate - 1
        print(f"[{kind}] time per notification (median round), {args.filler} vs {args.small_filler} existing: "
              f"{change:+.1%}", flush=True)
        return {"db": kind, **figures, "change": change}
    finally:
        for _label, _filler, target, *_ in prepared:
            drop_target(target, args.pg_url)


def checkpoint(app) -> None:
    """Flush what the bulk load wrote (PostgreSQL CHECKPOINT, SQLite WAL checkpoint), so that writing it
    out does not slow the measurement that follows."""
    from sqlalchemy import text

    from billcore.db import db

    with app.app_context(), db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if db.engine.dialect.name == "sqlite":
            conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        else:
            conn.execute(text("CHECKPOINT"))


def machine() -> str:
    """A one-line description of this machine."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.platform()}, {os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--db", action="append", choices=["sqlite", "postgresql"],
                        help="database(s) to run on (repeatable; default both)")
    parser.add_argument("--pg-url", default=PG_ADMIN_URL, help="PostgreSQL server (a bench database is created)")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument("--worker-class", default="sync", help="gunicorn worker class")
    parser.add_argument("--threads", type=int, default=1, help="gunicorn threads per worker")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent requests in flight")
    parser.add_argument("--load-processes", type=int, default=2, help="processes sharing the load")
    parser.add_argument("--payments", type=int, default=3000, help="payments notified in the timed run")
    parser.add_argument("--warmup", type=int, default=200, help="payments notified before timing")
    parser.add_argument("--duplicates", type=float, default=0.10, help="share of genuine ones sent twice")
    parser.add_argument("--forged", type=float, default=0.05, help="share of payments that get forged ones only")
    parser.add_argument("--rounds", type=int, default=1, help="floor rounds (the best one counts)")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--scale", action="store_true", help="measure small vs large numbers of existing payments")
    parser.add_argument("--small-filler", type=int, default=1000, help="existing payments in the small case")
    parser.add_argument("--filler", type=int, default=1_000_000, help="existing payments in the large case")
    parser.add_argument("--scale-rounds", type=int, default=3, help="alternate small/large measurements")
    parser.add_argument("--json", help="write the figures to this file too")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 1 when exactly-once or the ledger check failed."""
    args = parse_args(argv)
    kinds = args.db or ["sqlite", "postgresql"]
    print(f"machine: {machine()}")
    print(f"settings: gunicorn {args.workers} x {args.worker_class} (threads {args.threads}), concurrency "
          f"{args.concurrency} from {args.load_processes} load processes, {args.payments} payments, "
          f"duplicates {args.duplicates:.0%}, forged {args.forged:.0%}", flush=True)
    failed = False
    report = []
    with tempfile.TemporaryDirectory(prefix="billcore-bench-") as tmp:
        workdir = Path(tmp)
        for kind in kinds:
            if args.scale:
                out = run_scale(kind, args, workdir)
                failed |= bool(out["small"]["problems"] or out["large"]["problems"])
                report.append({"db": kind, "change": out["change"],
                               **{label: {"existing": out[label]["existing"], "rate": out[label]["result"].rate,
                                          "ms_per_notification": 1000 / out[label]["result"].rate,
                                          "p50": out[label]["result"].percentile(50),
                                          "p95": out[label]["result"].percentile(95),
                                          "p99": out[label]["result"].percentile(99),
                                          "problems": len(out[label]["problems"])}
                                  for label in ("small", "large")}})
            else:
                out = run_ratio(kind, args, workdir)
                failed |= bool(out["problems"])
                report.append({"db": kind, "ratio": out["ratio"], "problems": len(out["problems"]),
                               **{name: {"rate": out[name].rate, "p50": out[name].percentile(50),
                                         "p95": out[name].percentile(95), "p99": out[name].percentile(99),
                                         "requests": out[name].count,
                                         "cpu_ms_per_request": {part: out[name].cpu_ms(part)
                                                                for part in out[name].cpu_seconds}}
                                  for name in ("floor", "billcore")}})
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "args": vars(args), "results": report},
                                              indent=2, default=str))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
