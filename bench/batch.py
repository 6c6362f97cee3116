"""Benchmark of the batch jobs against the Robokassa sandbox answering in 200 ms.

For each database (a SQLite file; a PostgreSQL database created and dropped by the run) it

1. starts the sandbox (billcore with ``PMROBOKASSA_SANDBOX`` on, under gunicorn with threads and
   keep-alive, its web services slowed by ``PMROBOKASSA_SANDBOX_LATENCY``, notifications off) and
   billcore itself under gunicorn (for the notifications timed during the sweeps);
2. fills the database by bulk insert: N ``inpay`` Robokassa payments, N due auto-payment profiles (each
   with a paid parent the sandbox knows), N/10 refunds with a sandbox request id to follow, and N ``new``
   payments past their method's period to delete due invoices;
3. runs, each as its own ``flask`` process (its peak memory, ``VmHWM``, written by bench/peak.py):
   ``payments check`` (polling + refund following), ``payments check`` again on two processes at once
   ("two hosts"; PostgreSQL only, SQLite serves one host), ``recurring run`` and ``payments cleanup``;
4. meanwhile sends Robokassa notifications to billcore at a steady pace and reports their latency p99
   during each command, against a quiet period before them;
5. checks the guarantees: no payment asked twice by the two hosts (one poll event per payment), every
   profile charged once, every refund followed.

``--memory`` instead runs ``payments cleanup``, ``payments check`` and ``recurring run`` at 1,000 and at
each of the ``--big-*`` sizes (default 100,000 for cleanup and recurring, 10,000 for check), each on a
database holding only that job's items, and prints the peak memory of each.

Run from the repository root::

    .venv/bin/python bench/batch.py                       # N = 10,000 on SQLite and PostgreSQL
    .venv/bin/python bench/batch.py --n 1000 --db sqlite  # quick run
    .venv/bin/python bench/batch.py --db sqlite --jobs recurring  # only ``recurring run``
    .venv/bin/python bench/batch.py --memory --db sqlite --db postgresql

This is a benchmark, not a test: it prints figures; it sends traffic only to 127.0.0.1.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
VENV_BIN = Path(sys.executable).parent
SHOP = {"login": "bench", "password1": "bench-pass-1", "password2": "bench-pass-2",
        "password3": "bench-pass-3", "hash_algorithm": "md5"}

from bench.cpugroup import CpuGroup, entering, parse_weight  # noqa: E402
from bench.notify import Target, _psycopg, drop_target, free_port, make_target  # noqa: E402


# --------------------------------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------------------------------


class Gunicorn:
    """billcore under gunicorn on 127.0.0.1 with ``env``; stopped on exit."""

    def __init__(self, name: str, env: dict[str, str], workdir: Path, *, workers: int, threads: int,
                 group: CpuGroup | None = None):
        self.port = free_port()
        self.log = workdir / f"gunicorn-{name}.log"
        command = [str(VENV_BIN / "gunicorn"), "--workers", str(workers), "--worker-class", "gthread",
                   "--threads", str(threads), "--keep-alive", "30", "--bind", f"127.0.0.1:{self.port}",
                   "--backlog", "2048", "--timeout", "120", "--log-level", "warning", "--chdir", str(ROOT),
                   "billcore:create_app()"]
        self.process = subprocess.Popen(command, env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
                                        stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
                                        preexec_fn=entering(group))
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Gunicorn:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log.read_text()[-2000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/login")
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


def sandbox_env(workdir: Path, latency: float) -> dict[str, str]:
    """The sandbox's settings: one shop, the latency knob, no notifications of its own."""
    return {"BILLCORE_INSTANCE_PATH": str(workdir / "sandbox-instance"),
            "BILLCORE_DATABASE_URL": f"sqlite:///{workdir / 'sandbox-billcore.sqlite'}",
            "BILLCORE_PMROBOKASSA_SANDBOX": "true",
            "BILLCORE_PMROBOKASSA_SANDBOX_DB": str(workdir / "sandbox-store.sqlite"),
            "BILLCORE_PMROBOKASSA_SANDBOX_SHOPS": json.dumps([{**SHOP, "result_url": "http://127.0.0.1:9/none"}]),
            "BILLCORE_PMROBOKASSA_SANDBOX_FAULT": "none",
            "BILLCORE_PMROBOKASSA_SANDBOX_LATENCY": json.dumps({"*": {"delay": latency}}),
            "BILLCORE_PMROBOKASSA_SANDBOX_REFUND_SECONDS": "0"}


# `payments check` runs back to back here over the same payments: a shorter interval than the default
# 60 s, waited for before each run that must ask again (still far longer than two hosts' start skew)
CHECK_AGAIN_AFTER_SECONDS = 10


def billcore_env(target: Target, workers: int) -> dict[str, str]:
    return {"BILLCORE_INSTANCE_PATH": str(target.instance), "BILLCORE_DATABASE_URL": target.url,
            "BILLCORE_BASE_URL": "https://billing.example.com",
            "BILLCORE_GATEWAY_WORKERS": json.dumps({"pmrobokassa": workers}),
            "BILLCORE_CHECK_AGAIN_AFTER_SECONDS": str(CHECK_AGAIN_AFTER_SECONDS)}


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


@dataclass
class Data:
    method_id: int
    inpay: list[int]
    notify_quiet: list[tuple[int, Decimal]]
    notify_busy: list[tuple[int, Decimal]]
    profiles: int
    refunds: int
    expired: int


def _app(target: Target, workers: int = 8):
    from billcore import create_app

    return create_app({"INSTANCE_PATH": str(target.instance), "DATABASE_URL": target.url,
                       "BASE_URL": "https://billing.example.com", "GATEWAY_WORKERS": {"pmrobokassa": workers}})


def fill(target: Target, sandbox_url: str, store_path: Path, n: int, *, notify: int = 1000,
         expired: int | None = None, profiles: int | None = None, refunds: int | None = None) -> Data:
    """Bulk-insert the items the jobs will go through (see the module docstring)."""
    from alembic import command
    from sqlalchemy import insert, select

    from billcore import migrate
    from billcore.db import db
    from billcore.models import Account, Payment, PaymentMethod, RecurringProfile, Refund
    from billcore.paymethods import store_settings
    from billcore.plugins import get_registry

    profiles = n if profiles is None else profiles
    refunds = n // 10 if refunds is None else refunds
    expired = n if expired is None else expired
    app = _app(target)
    now = datetime.now(timezone.utc)
    with app.app_context():
        db.create_all()
        command.stamp(migrate.alembic_config(), "head")
        method = PaymentMethod(module="pmrobokassa", name="Robokassa (bench)", currency="RUB", active=True,
                               recurring=True, allow_refund=True, delete_after_days=1,
                               commission_amount=Decimal("0"), commission_percent=Decimal("0"), settings={})
        store_settings(method, get_registry().info("pmrobokassa"),
                       {"client": "existing", "identifier": SHOP["login"], "password1": SHOP["password1"],
                        "password2": SHOP["password2"], "password3": SHOP["password3"], "hash_algorithm": "md5",
                        "payment_method": "", "test_mode": False, "receipt_enabled": False,
                        "url": f"{sandbox_url}/sandbox/robokassa/Merchant/Index.aspx"})
        db.session.add(method)
        accounts = [Account(name=f"bench {i}", currency="RUB", balance=Decimal("0.00")) for i in range(500)]
        db.session.add_all(accounts)
        db.session.commit()
        account_ids = [a.id for a in accounts]

        def payments(count: int, status: str, created: datetime, **extra) -> list[tuple[int, Decimal]]:
            if not count:
                return []
            rows = [{"account_id": account_ids[i % len(account_ids)], "paymethod_id": method.id,
                     "amount": Decimal("100.00"), "commission": Decimal("0.00"), "total": Decimal("100.00"),
                     "currency": "RUB", "status": status, "refunded_amount": Decimal("0.00"), "gateway_data": {},
                     "description": "bench", "created_at": created, "updated_at": created, **extra}
                    for i in range(count)]
            with db.engine.begin() as conn:
                before = conn.execute(select(db.func.coalesce(db.func.max(Payment.id), 0))).scalar_one()
                for start in range(0, len(rows), 5000):
                    conn.execute(insert(Payment), rows[start:start + 5000])
                return [(pid, total) for pid, total in conn.execute(
                    select(Payment.id, Payment.total).where(Payment.id > before).order_by(Payment.id))]

        inpay = [pid for pid, _ in payments(n, "inpay", now)]
        # "new" (not inpay), so the sweeps do not poll them; recent, so cleanup leaves them alone
        quiet = payments(notify, "new", now)
        busy = payments(notify * 30, "new", now)
        payments(expired, "new", now - timedelta(days=3))
        parents = payments(profiles, "paid", now - timedelta(days=40), paid_at=now - timedelta(days=40),
                           external_id=None)
        with db.engine.begin() as conn:
            rows = [{"account_id": account_ids[i % len(account_ids)], "paymethod_id": method.id,
                     "parent_payment_id": pid, "rule": "fixed", "amount": Decimal("50.00"), "threshold": None,
                     "monthly_max": Decimal("1000.00"), "charge_day": 1, "status": "active",
                     "next_charge_at": now - timedelta(minutes=5), "sequence": 0, "failures": 0,
                     "created_at": now - timedelta(days=40), "updated_at": now - timedelta(days=40)}
                    for i, (pid, _) in enumerate(parents)]
            for start in range(0, len(rows), 5000):
                conn.execute(insert(RecurringProfile), rows[start:start + 5000])
        refunded = payments(refunds, "pending_return", now - timedelta(days=2))
        request_ids = [str(uuid.uuid4()) for _ in refunded]
        with db.engine.begin() as conn:
            rows = [{"payment_id": pid, "amount": Decimal("100.00"), "status": "requested", "external_id": rid,
                     "reason": "bench", "actor": "bench", "created_at": now, "updated_at": now}
                    for (pid, _), rid in zip(refunded, request_ids)]
            if rows:
                conn.execute(insert(Refund), rows)
    # the sandbox's side: the parents' paid operations and the refunds it is processing
    from pmrobokassa.sandbox.store import SandboxStore, now_iso

    store = SandboxStore(store_path)
    stamp = now_iso()
    with store.connect() as conn:
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO operations (shop, inv_id, op_key, state, out_sum, fee, inc_curr_label, payment_method,"
            " email, description, is_test, shp, culture, fault, parent_inv_id, created_at, state_at)"
            " VALUES (?, ?, ?, 100, '100.00', '3.90', 'BankCardPSR', 'BankCard', 'payer@example.com', 'bench',"
            " 0, '{}', 'ru', 'none', NULL, ?, ?)",
            [(SHOP["login"], str(pid), f"OPKEY-{pid}", stamp, stamp) for pid, _ in parents + refunded])
        ops = dict(conn.execute("SELECT inv_id, id FROM operations WHERE shop = ?", (SHOP["login"],)).fetchall())
        conn.executemany(
            "INSERT INTO refunds (request_id, operation_id, amount, label, created_at, finish_at, outcome)"
            " VALUES (?, ?, '100.00', 'processing', ?, 0, 'finished')",
            [(rid, ops[str(pid)], stamp) for (pid, _), rid in zip(refunded, request_ids)])
        conn.execute("COMMIT")
    with app.app_context():
        db.engine.dispose()
    return Data(method.id, inpay, quiet, busy, len(parents), len(refunded), expired)


# --------------------------------------------------------------------------------------------------
# Notifications timed while the jobs run
# --------------------------------------------------------------------------------------------------


def notification(payment_id: int, total: Decimal) -> str:
    from pmrobokassa import protocol

    out_sum = f"{total:.6f}"
    signature = protocol.result_signature("md5", out_sum, str(payment_id), SHOP["password2"], None)
    return urlencode({"OutSum": out_sum, "InvId": str(payment_id), "SignatureValue": signature.upper(),
                      "Fee": "3.900000", "EMail": "payer@example.com", "PaymentMethod": "BankCard",
                      "IncCurrLabel": "BankCardPSR"})


class Notifier:
    """Sends notifications from ``threads`` threads, each waiting ``pause`` s between two, until stopped
    or out of payments; records each one's latency and whether billcore answered ``OK<id>``."""

    def __init__(self, port: int, payments: list[tuple[int, Decimal]], threads: int = 4, pause: float = 0.05):
        self.port, self.pause = port, pause
        self.todo = list(payments)
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.wrong = 0
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        while not self.stop.is_set():
            with self.lock:
                if not self.todo:
                    return
                payment_id, total = self.todo.pop()
            body = notification(payment_id, total)
            started = time.perf_counter()
            try:
                conn.request("POST", "/mancgi/rkresult", body=body,
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
                answer = conn.getresponse().read().decode()
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                answer = ""
            elapsed = time.perf_counter() - started
            with self.lock:
                self.latencies.append(elapsed)
                self.wrong += answer != f"OK{payment_id}"
            time.sleep(self.pause)

    def __enter__(self) -> Notifier:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)

    def p99(self) -> float | None:
        if len(self.latencies) < 20:
            return None
        return statistics.quantiles(self.latencies, n=100)[98] * 1000

    def p50(self) -> float | None:
        """The median latency (ms): whether a job slows every notification or only the slowest."""
        return statistics.median(self.latencies) * 1000 if self.latencies else None


class CpuShares:
    """Where the machine's CPU went while a job ran: the job's own process (from ``wait4``; the benchmark's
    other children are the job), the benchmark itself, the sandbox's and billcore's gunicorn (each a
    process tree), PostgreSQL's processes and everything else.

    Samples ``/proc`` every ``every`` s and keeps, per process, its first and last CPU time seen: a
    process that exits (a PostgreSQL backend of the job's connections) keeps what it used until its last
    sample. A process born meanwhile counts from zero.
    """

    TICK = os.sysconf("SC_CLK_TCK")

    def __init__(self, roots: dict[str, int], every: float = 0.25):
        self.roots, self.every = roots, every
        self.first: dict[int, float] = {}
        self.last: dict[int, tuple[str, float]] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.started = 0.0
        self.seconds = 0.0

    @classmethod
    def _processes(cls) -> dict[int, tuple[int, str, float]]:
        found = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as stat:
                    raw = stat.read().decode()
            except OSError:
                continue
            name = raw[raw.index("(") + 1:raw.rindex(")")]
            fields = raw[raw.rindex(")") + 2:].split()
            found[int(entry.name)] = (int(fields[1]), name, (int(fields[11]) + int(fields[12])) / cls.TICK)
        return found

    def _group(self, pid: int, processes: dict[int, tuple[int, str, float]]) -> str:
        if pid == os.getpid():
            return "bench"  # the notifications' senders and this sampler
        seen = pid
        while seen in processes and seen > 1:
            for group, root in self.roots.items():
                if seen == root:
                    return group
            seen = processes[seen][0]
        return "postgres" if processes.get(pid, (0, "", 0))[1] == "postgres" else "other"

    def _sample(self, first: bool) -> None:
        processes = self._processes()
        for pid, (_, _, cpu) in processes.items():
            if first:
                self.first[pid] = cpu
            else:
                self.first.setdefault(pid, 0.0)
            self.last[pid] = (self._group(pid, processes), cpu)

    def _run(self) -> None:
        while not self.stop.wait(self.every):
            self._sample(False)

    def __enter__(self) -> CpuShares:
        self._sample(True)
        self.started = time.perf_counter()
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self._sample(False)
        self.seconds = time.perf_counter() - self.started

    def used(self) -> dict[str, float]:
        """CPU seconds per group (``job`` excluded: the caller has it exactly), and the cores' total."""
        totals: dict[str, float] = {}
        for pid, (group, cpu) in self.last.items():
            totals[group] = totals.get(group, 0.0) + cpu - self.first.get(pid, 0.0)
        totals.pop("job", None)
        totals["available"] = self.seconds * (os.cpu_count() or 1)
        return {group: round(value, 1) for group, value in totals.items()}


# --------------------------------------------------------------------------------------------------
# The jobs
# --------------------------------------------------------------------------------------------------


@dataclass
class Run:
    seconds: float
    peak_mb: float
    output: str
    cpu_s: float = 0.0  # user + system CPU of the command's process


JOB_NICE = [0]  # --job-nice: the jobs' CPU priority below the web workers'
# --job-weight, --gateway-weight, --web-weight: the control groups of the jobs, the sandbox and
# billcore's web workers ("jobs", "gateway", "web"), made by main
GROUPS: dict[str, CpuGroup] = {}


def flask(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    """Start ``flask --app billcore ARGS`` through bench/peak.py, which writes the command's own peak
    resident memory to a file at exit (``ru_maxrss`` would include this process's: see bench/peak.py)."""
    fd, peak_file = tempfile.mkstemp(prefix="billcore-peak-")
    os.close(fd)
    command = [sys.executable, str(ROOT / "bench" / "peak.py"), peak_file, "--app", "billcore", *args]
    if JOB_NICE[0]:  # as a cron entry would run it: ``nice -n 10 flask --app billcore ...``
        command = ["nice", "-n", str(JOB_NICE[0]), *command]
    proc = subprocess.Popen(command,  # in the jobs' group, as a timer unit with CPUWeight= would run it
                            cwd=ROOT, env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=entering(GROUPS.get("jobs")))
    proc.peak_file = peak_file  # type: ignore[attr-defined]
    return proc


def finish(proc: subprocess.Popen, started: float) -> Run:
    """Wait for ``proc``; its wall time from ``started``, its own peak resident memory and its CPU time."""
    output_chunks: list[str] = []
    reader = threading.Thread(target=lambda: output_chunks.append(proc.stdout.read()), daemon=True)
    reader.start()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    reader.join(10)
    proc.returncode = os.waitstatus_to_exitcode(status)
    output = "".join(output_chunks).strip()
    peak_file = Path(proc.peak_file)  # type: ignore[attr-defined]
    peak_text = peak_file.read_text().strip()
    peak_file.unlink()
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{proc.args} exited {proc.returncode}: {output[-2000:]}")
    if not peak_text:
        raise RuntimeError(f"{proc.args} wrote no peak memory: {output[-2000:]}")
    return Run(seconds, int(peak_text) / 1024, output, usage.ru_utime + usage.ru_stime)


def timed(args: list[str], env: dict[str, str]) -> Run:
    started = time.perf_counter()
    return finish(flask(args, env), started)


def charges_made(target: Target) -> dict[str, int]:
    """Periods charged, and profiles charged more than once (each has one due period: must be 0)."""
    return {"charged": count(target, "SELECT count(*) FROM recurring_charges"),
            "charged_twice": count(target, "SELECT count(*) FROM (SELECT profile_id FROM recurring_charges "
                                           "GROUP BY profile_id HAVING count(*) > 1) twice")}


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line and not line.startswith(("error:", "profile "))]
    return lines[-1] if lines else ""


def count(target: Target, sql: str, **params) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(_psycopg(target.url))
    with engine.connect() as conn:
        value = conn.execute(text(sql), params).scalar_one()
    engine.dispose()
    return int(value or 0)


def run_database(kind: str, args, workdir: Path) -> dict:
    target = make_target(kind, workdir, args.pg_url)
    try:
        return _run_database(target, args, workdir)
    finally:
        drop_target(target, args.pg_url)


def _run_database(target: Target, args, workdir: Path) -> dict:
    figures: dict = {"database": target.kind, "n": args.n, "workers": args.workers}
    sandbox_dir = workdir / f"sandbox-{target.kind}"
    sandbox_dir.mkdir()
    env = billcore_env(target, args.workers)
    with Gunicorn(f"sandbox-{target.kind}", sandbox_env(sandbox_dir, args.latency), workdir,
                  workers=args.sandbox_workers, threads=args.sandbox_threads, group=GROUPS.get("gateway")) as sandbox:
        started = time.perf_counter()
        data = fill(target, sandbox.url, sandbox_dir / "sandbox-store.sqlite", args.n)
        figures["fill_s"] = round(time.perf_counter() - started, 1)
        settle(target)
        with Gunicorn(f"billcore-{target.kind}", env, workdir, workers=2, threads=1,
                      group=GROUPS.get("web")) as billcore:
            with Notifier(billcore.port, data.notify_quiet) as quiet:
                time.sleep(args.quiet_seconds)
            figures["notify_p99_quiet_ms"] = quiet.p99()
            quiet_latencies = list(quiet.latencies)  # and after each job: see quiet_again
            busy_payments = list(data.notify_busy)

            def quiet_again() -> None:
                """A quiet phase after a job, pooled with the first one: a slow spell of the machine (a
                checkpoint, a vacuum) then lands in the baseline and in the jobs' phases alike."""
                time.sleep(2)
                with Notifier(billcore.port, busy_payments) as again:
                    time.sleep(args.quiet_seconds)
                busy_payments[:] = again.todo
                quiet_latencies.extend(again.latencies)

            def during(name: str, command: list[str], job_env: dict[str, str] = env) -> Run:
                with Notifier(billcore.port, busy_payments) as notifier, \
                        CpuShares({"sandbox": sandbox.process.pid, "billcore web": billcore.process.pid,
                                   "job": os.getpid()}) as cpu:
                    run = timed(command, job_env)
                busy_payments[:] = notifier.todo
                shares = {"job": round(run.cpu_s, 1), **cpu.used()}
                figures[f"{name}_cpu_shares_s"] = shares
                figures[f"{name}_s"] = round(run.seconds, 1)
                figures[f"{name}_peak_mb"] = round(run.peak_mb, 1)
                figures[f"{name}_cpu_s"] = round(run.cpu_s, 1)
                figures[f"{name}_notify_p99_ms"] = notifier.p99()
                figures[f"{name}_notify_p50_ms"] = notifier.p50()
                figures[f"{name}_notify_wrong"] = notifier.wrong
                figures[f"{name}_says"] = last_line(run.output)
                errors = [line for line in run.output.splitlines() if " ERROR" in line or line.startswith("error:")]
                figures[f"{name}_errors"] = len(errors)
                if errors:
                    figures[f"{name}_first_error"] = errors[0][:300]
                print(f"  {target.kind} {name}: {run.seconds:.1f} s (CPU {run.cpu_s:.1f} s), peak {run.peak_mb:.0f} MB, "
                      f"notification p50 {notifier.p50() or float('nan'):.1f} ms, p99 "
                      f"{notifier.p99() or float('nan'):.1f} ms -- {last_line(run.output)}", flush=True)
                print(f"    CPU seconds meanwhile: {', '.join(f'{k} {v}' for k, v in shares.items())}", flush=True)
                quiet_again()
                return run

            if "check" in args.jobs:
                check = during("check", ["payments", "check"])
                passes = re.search(r"took ([\d.]+) s \+ ([\d.]+) s", check.output)
                if passes:  # the command's own wall time of each pass: the payments polled, the refunds
                    figures["check_payments_pass_s"] = float(passes.group(1))
                    figures["check_refunds_pass_s"] = float(passes.group(2))
            if "check" in args.jobs and target.kind != "sqlite":
                # two hosts: two processes sweep the same (still open) payments at once, each with
                # --host-workers threads, against one process with as many (PostgreSQL's connection
                # limit of 100 does not fit two processes of --workers each)
                host_env = billcore_env(target, args.host_workers)
                time.sleep(CHECK_AGAIN_AFTER_SECONDS)
                one = timed(["payments", "check", "--module", "pmrobokassa"], host_env)
                figures["one_host_s"] = round(one.seconds, 1)
                figures["one_host_cpu_s"] = round(one.cpu_s, 1)
                print(f"  {target.kind} one host, {args.host_workers} threads: {one.seconds:.1f} s "
                      f"(CPU {one.cpu_s:.1f} s) -- {last_line(one.output)}", flush=True)
                time.sleep(CHECK_AGAIN_AFTER_SECONDS)
                since = datetime.now(timezone.utc)
                started = time.perf_counter()
                procs = [flask(["payments", "check", "--module", "pmrobokassa"], host_env) for _ in range(2)]
                runs = [finish(p, started) for p in procs]
                figures["two_hosts_s"] = round(max(r.seconds for r in runs), 1)
                figures["two_hosts_cpu_s"] = [round(r.cpu_s, 1) for r in runs]
                figures["two_hosts_says"] = [last_line(r.output) for r in runs]
                figures["asked_twice"] = count(target, "SELECT count(*) FROM (SELECT payment_id FROM payment_events "
                                               "WHERE kind = 'poll' AND source = 'cron' AND created_at >= :since "
                                               "GROUP BY payment_id HAVING count(*) > 1) twice", since=since)
                figures["asked_by_two_hosts"] = count(
                    target, "SELECT count(DISTINCT payment_id) FROM payment_events WHERE kind = 'poll' "
                    "AND source = 'cron' AND created_at >= :since", since=since)
                print(f"  {target.kind} two hosts: {figures['two_hosts_s']} s, {figures['asked_by_two_hosts']} "
                      f"payments asked, {figures['asked_twice']} asked twice -- {figures['two_hosts_says']}",
                      flush=True)
            if "recurring" in args.jobs:
                during("recurring", ["recurring", "run", "--limit", str(data.profiles)])
                figures.update(charges_made(target))
                figures["children"] = count(target, "SELECT count(*) FROM payments WHERE description LIKE "
                                            "'Automatic payment%'")
            if "recurring-two-hosts" in args.jobs:
                # two processes run the same cron job at once over the same due profiles (instead of one
                # process: the two jobs cannot share a run, see main)
                with Notifier(billcore.port, busy_payments) as notifier:
                    started = time.perf_counter()
                    procs = [flask(["recurring", "run", "--limit", str(data.profiles)], env) for _ in range(2)]
                    runs = [finish(p, started) for p in procs]
                busy_payments[:] = notifier.todo
                figures["recurring_two_hosts_s"] = round(max(r.seconds for r in runs), 1)
                figures["recurring_two_hosts_cpu_s"] = [round(r.cpu_s, 1) for r in runs]
                figures["recurring_two_hosts_says"] = [last_line(r.output) for r in runs]
                figures["recurring_two_hosts_notify_p99_ms"] = notifier.p99()
                figures.update(charges_made(target))
                print(f"  {target.kind} recurring on two hosts: {figures['recurring_two_hosts_s']} s "
                      f"(CPU {figures['recurring_two_hosts_cpu_s']}), {figures['charged']} charged, "
                      f"{figures['charged_twice']} charged twice, notification p99 {notifier.p99() or float('nan'):.1f} ms "
                      f"-- {figures['recurring_two_hosts_says']}", flush=True)
            if "cleanup" in args.jobs:
                during("cleanup", ["payments", "cleanup"])
            pooled = statistics.quantiles(quiet_latencies, n=100)[98] * 1000
            figures["notify_p99_quiet_pooled_ms"] = pooled
            figures["notify_p50_quiet_pooled_ms"] = statistics.median(quiet_latencies) * 1000
            ratios = {job: figures[f"{job}_notify_p99_ms"] / pooled for job in ("check", "recurring", "cleanup")
                      if figures.get(f"{job}_notify_p99_ms")}
            figures["notify_p99_ratios"] = ratios
            print(f"  {target.kind} quiet notification p99, {len(quiet_latencies)} pooled from before and between "
                  f"the jobs: {pooled:.1f} ms (p50 {figures['notify_p50_quiet_pooled_ms']:.1f} ms); during each job / quiet: "
                  f"{', '.join(f'{job} {ratio:.2f}' for job, ratio in ratios.items())}", flush=True)
    return figures


def settle(target: Target) -> None:
    """After the bulk fill: vacuum, analyze and checkpoint (PostgreSQL) or checkpoint the WAL (SQLite), so
    that the database's own catching up does not fall into the quiet phase the jobs are compared with."""
    if target.kind == "sqlite":
        import sqlite3

        with sqlite3.connect(target.url.split("///", 1)[1]) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return
    import psycopg

    with psycopg.connect(target.url, autocommit=True) as conn:  # CHECKPOINT needs a superuser: the bench's is
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")


# --------------------------------------------------------------------------------------------------
# Memory: 1,000 vs many
# --------------------------------------------------------------------------------------------------


def run_memory(kind: str, args, workdir: Path) -> list[dict]:
    rows = []
    jobs = [(job, (1000, *big)) for job, big in (("cleanup", args.big_cleanup), ("check", args.big_check),
                                                  ("recurring", args.big_recurring))
            if job in args.memory_jobs]
    commands = {"cleanup": ["payments", "cleanup"], "check": ["payments", "check"], "recurring": ["recurring", "run"]}
    for job, sizes in jobs:
        for size in sizes:
            case = workdir / f"memory-{kind}-{job}-{size}"
            case.mkdir()
            target = make_target(kind, case, args.pg_url)
            try:
                sandbox_dir = case / "sandbox"
                sandbox_dir.mkdir()
                with Gunicorn(f"sandbox-{kind}-{job}-{size}", sandbox_env(sandbox_dir, args.latency), case,
                              workers=args.sandbox_workers, threads=args.sandbox_threads) as sandbox:
                    fill(target, sandbox.url, sandbox_dir / "sandbox-store.sqlite",
                         size if job == "check" else 0, notify=0, expired=size if job == "cleanup" else 0,
                         profiles=size if job == "recurring" else 0, refunds=0)
                    command = commands[job] + (["--limit", str(size)] if job == "recurring" else [])
                    run = timed(command, billcore_env(target, args.workers))
            finally:
                drop_target(target, args.pg_url)
            rows.append({"database": kind, "job": job, "items": size, "seconds": round(run.seconds, 1),
                         "cpu_s": round(run.cpu_s, 1),
                         "peak_mb": round(run.peak_mb, 1), "says": last_line(run.output)})
            print(f"  {kind} {job} {size:,}: {run.seconds:.1f} s, peak {run.peak_mb:.1f} MB -- "
                  f"{last_line(run.output)}", flush=True)
    return rows


def machine() -> str:
    load = os.getloadavg()
    return (f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs, "
            f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


JOBS = ("check", "recurring", "cleanup", "recurring-two-hosts")


def weight_argument(text: str) -> int | str:
    """``--*-weight``'s value: 1-10000 or ``idle`` (see bench/cpugroup.py)."""
    try:
        return parse_weight(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", action="append", choices=["sqlite", "postgresql"])
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--n", type=int, default=10_000, help="inpay payments and due profiles")
    parser.add_argument("--latency", type=float, default=0.2, help="sandbox delay per web-service call (s)")
    parser.add_argument("--workers", type=int, default=56, help="GATEWAY_WORKERS for pmrobokassa per process")
    parser.add_argument("--host-workers", type=int, default=28,
                        help="GATEWAY_WORKERS per process in the two-hosts comparison (PostgreSQL)")
    parser.add_argument("--sandbox-workers", type=int, default=2)
    parser.add_argument("--sandbox-threads", type=int, default=64)
    parser.add_argument("--quiet-seconds", type=float, default=10)
    parser.add_argument("--jobs", nargs="+", default=list(JOBS[:3]), choices=JOBS,
                        help="which commands to time (the data for all of them is filled anyway)")
    parser.add_argument("--memory", action="store_true", help="peak memory at 1,000 vs --big-* items")
    parser.add_argument("--memory-jobs", nargs="+", default=["cleanup", "check"],
                        choices=["cleanup", "check", "recurring"])
    parser.add_argument("--big-cleanup", type=int, nargs="+", default=[100_000], help="sizes besides 1,000")
    parser.add_argument("--big-check", type=int, nargs="+", default=[10_000], help="sizes besides 1,000")
    parser.add_argument("--big-recurring", type=int, nargs="+", default=[100_000], help="sizes besides 1,000")
    parser.add_argument("--job-weight", type=weight_argument, default=0, metavar="W",
                        help="run the jobs in a control group of CPU weight W (1-10000, every service's default "
                             "is 100, or idle), as a systemd timer unit with CPUWeight=W would. Needs root")
    parser.add_argument("--web-weight", type=weight_argument, default=0, metavar="W",
                        help="billcore's web workers in a control group of CPU weight W. Needs root")
    parser.add_argument("--gateway-weight", type=weight_argument, default=0, metavar="W",
                        help="the sandbox in a control group of CPU weight W (or idle): its CPU stands for the "
                             "gateway's machines. Needs root")
    parser.add_argument("--job-nice", type=int, default=0,
                        help="run the jobs at this nice value (e.g. 10, as a cron entry beside the web workers)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if {"recurring", "recurring-two-hosts"} <= set(args.jobs):
        sys.exit("--jobs: recurring and recurring-two-hosts charge the same due profiles; run them apart")
    JOB_NICE[0] = args.job_nice
    try:
        for name, weight in (("jobs", args.job_weight), ("gateway", args.gateway_weight), ("web", args.web_weight)):
            if weight:
                GROUPS[name] = CpuGroup(f"bench-{name}", weight)
        return _main(args)
    finally:
        for group in GROUPS.values():
            group.remove()


def _main(args: argparse.Namespace) -> int:
    kinds = args.db or ["sqlite", "postgresql"]
    print(f"machine: {machine()}", flush=True)
    print(f"settings: N={args.n:,}, sandbox latency {args.latency * 1000:.0f} ms, GATEWAY_WORKERS "
          f"{{pmrobokassa: {args.workers}}}, sandbox gunicorn {args.sandbox_workers} x {args.sandbox_threads} "
          f"threads, jobs at nice {args.job_nice}, CPU weights: jobs {args.job_weight or 'none'}, "
          f"web {args.web_weight or 'none'}, sandbox {args.gateway_weight or 'none'}", flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="billcore-batch-") as tmp:
        for kind in kinds:
            workdir = Path(tmp) / kind
            workdir.mkdir()
            if args.memory:
                results.extend(run_memory(kind, args, workdir))
            else:
                results.append(run_database(kind, args, workdir))
                print(json.dumps(results[-1], indent=1, default=str), flush=True)
    print(f"machine after: {machine()}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
