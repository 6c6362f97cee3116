"""Genuine notifications during an attack: a flood of 10 MB refused callbacks and a login-guessing burst.

For each database (a SQLite file, or a PostgreSQL database created and dropped by the run) billcore runs
under gunicorn (bench/notify.py's server: ``--workers 4``, sync workers; login limits counted in Redis at
127.0.0.1:6379, shared by the workers). Then

1. **quiet**: genuine signed notifications at a steady pace (``--rate`` per second, each on its own
   connection, for ``--seconds``); their latency p50/p95/p99;
2. **attack**: the same pace of genuine notifications (on other payments) while, at the same time,
   ``--flood`` threads post 10 MB bodies to ``/mancgi/rkresult`` (naming real payments, bad signature),
   ``--forged`` threads post refused callbacks just under the body cap (8 KB of junk, bad signature),
   and ``--guessers`` threads guess passwords at ``/login``: half at the demo client's e-mail from one
   address, half at random e-mails from a new address each time (``X-Forwarded-For`` behind one trusted
   proxy), which no per-address or per-account limit stops. Quiet and attack phases take turns
   (``--rounds`` attacks, one by default, each followed by a quiet phase), and each kind's latencies are
   pooled;
3. reports both latency sets, p99 attack/quiet, what the attackers got back, and how much the database
   grew during the attack (SQLite: the file and its WAL; PostgreSQL: ``pg_database_size``), with the
   number of events recorded;
4. checks exactly-once: every genuine notification answered ``OK<id>``, each payment paid with one ledger
   entry.

Run from the repository root (Redis on 127.0.0.1:6379, PostgreSQL on 127.0.0.1:5432)::

    .venv/bin/python bench/hardening.py --db sqlite --db postgresql
    # as a production host runs it (docs/security.md, "Deployment"): nginx in front, the callbacks
    # only from the gateway's address and on workers of their own with a higher CPU weight than the
    # pages'; the attackers, whose CPU stands for other machines', with the least (root, for the cgroups)
    .venv/bin/python bench/hardening.py --rounds 3 --seconds 15 --workers 2 --callback-workers 2 \
        --callbacks-weight 1000 --pages-weight 10 --attacker-weight 1 \
        --proxy /usr/sbin/nginx --attacker-address 127.0.0.2 --callbacks-from 127.0.0.1

Only 127.0.0.1 is contacted, for ``--seconds`` per phase. This is a benchmark, not a test: it prints
figures and exits non-zero only when exactly-once fails.
"""
from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import random
import re
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cpugroup import CpuGroup  # noqa: E402
from bench.notify import (PG_ADMIN_URL, PASSWORD2, Server, create_payments,  # noqa: E402
                          create_schema, drop_target, machine, make_target, notification, setup_app)

CLIENT_EMAIL, CLIENT_PASSWORD = "bench-client@example.com", "bench-client-pass-1"
FLOOD_BYTES = 10 * 1024 * 1024


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of ``values``, 0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


# The address the attackers' connections come from (--attacker-address; None: 127.0.0.1 like everyone),
# set in the attack's own process only.
SOURCE: list[str | None] = [None]


def _connection(port: int, timeout: float) -> http.client.HTTPConnection:
    source = (SOURCE[0], 0) if SOURCE[0] else None
    return http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=source)


def post(port: int, path: str, body: bytes | str, headers: dict[str, str] | None = None,
         timeout: float = 60) -> tuple[int, str, dict[str, str]]:
    """One POST on its own connection: (status, first 200 characters, headers); status 0 on an OSError."""
    data = body.encode() if isinstance(body, str) else body
    try:
        conn = _connection(port, timeout)
        conn.request("POST", path, body=data, headers={"Content-Type": "application/x-www-form-urlencoded",
                                                        **(headers or {})})
        response = conn.getresponse()
        result = response.status, response.read(200).decode("utf-8", "replace"), dict(response.getheaders())
        conn.close()
        return result
    except OSError as exc:
        return 0, type(exc).__name__, {}


def paced_notifications(port: int, payments: list[tuple[int, Decimal]], rate: float, seconds: float
                        ) -> list[tuple[int, float, int, str]]:
    """Send one genuine notification every 1/rate seconds (each in its own thread, so a slow answer
    does not delay the next); returns (payment id, latency ms, status, answer) each."""
    results: list[tuple[int, float, int, str]] = []
    lock = threading.Lock()
    threads = []

    def send(payment_id: int, total: Decimal) -> None:
        started = time.monotonic()
        status, text, _ = post(port, "/mancgi/rkresult", notification(payment_id, total, PASSWORD2))
        with lock:
            results.append((payment_id, (time.monotonic() - started) * 1000, status, text))

    start = time.monotonic()
    for index, (payment_id, total) in enumerate(payments[:int(rate * seconds)]):
        delay = start + index / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        thread = threading.Thread(target=send, args=(payment_id, total), daemon=True)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join(120)
    return results


NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream billcore_pages {{ server 127.0.0.1:{pages}; }}
    upstream billcore_callbacks {{ server 127.0.0.1:{callbacks}; }}
    server {{
        listen 127.0.0.1:{port} backlog=2048;
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        client_max_body_size 1m;
{site}
    }}
}}
"""

# What docs/security.md recommends for the gateways' callbacks: their own workers, a small body cap, and
# no lingering close for what is refused (the proxy does not read a 10 MB body it has refused).
NGINX_SITE = """\
        location /mancgi/ {
{allow}            client_max_body_size 16k;
            lingering_close off;
            proxy_pass http://billcore_callbacks;
        }
        location / {
            proxy_pass http://billcore_pages;
        }"""


class Proxy:
    """nginx in front of the pages' and the callbacks' gunicorns, as in production; stopped on exit."""

    def __init__(self, nginx: str, pages_port: int, callbacks_port: int, workdir: Path, name: str,
                 cpus: str | None = None, allow: tuple[str, ...] = ()) -> None:
        # plain http on 127.0.0.1 like the runs without a proxy (no X-Forwarded-Proto: https would add
        # Flask-WTF's Referer check to the guessers' posts, which the direct runs do not have)
        from bench.notify import free_port

        self.port = free_port()
        folder = workdir / f"nginx-{name}"
        folder.mkdir()
        conf = folder / "nginx.conf"
        # ``allow``: the gateway's published addresses, the only ones whose callbacks reach billcore (the
        # module's own allow-list, e.g. PMROBOKASSA_ALLOWED_IPS, enforced by the proxy too: refused there)
        rules = "".join(f"            allow {address};\n" for address in allow)
        site = NGINX_SITE.replace("{allow}", rules + ("            deny all;\n" if allow else ""))
        conf.write_text(NGINX_CONF.format(dir=folder, pages=pages_port, callbacks=callbacks_port, port=self.port,
                                          site=site))
        command = [nginx, "-c", str(conf), "-p", str(folder)]
        if cpus:
            command = ["taskset", "-c", cpus, *command]
        self.process = subprocess.Popen(command,
                                        stdout=subprocess.DEVNULL, stderr=(folder / "stderr.log").open("wb"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"nginx did not start: {(folder / 'stderr.log').read_text()}")

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(10)


class Attackers:
    """The attackers' threads (in their own process, so that they do not slow down the measuring
    client), run until ``stopping`` is set; counts of what each kind got back."""

    def __init__(self, port: int, callback_port: int, targets: list[int], flood: int, forged: int,
                 guessers: int) -> None:
        self.port, self.callback_port, self.targets = port, callback_port, targets
        self.stopping = threading.Event()
        self.counts: dict[str, dict[str, int]] = {}
        self.lock = threading.Lock()
        self.threads = ([threading.Thread(target=self._flood, daemon=True) for _ in range(flood)]
                        + [threading.Thread(target=self._forged, daemon=True) for _ in range(forged)]
                        + [threading.Thread(target=self._guess, args=(i % 2 == 0,), daemon=True)
                           for i in range(guessers)])

    def _count(self, kind: str, status: int) -> None:
        with self.lock:
            bucket = self.counts.setdefault(kind, {})
            bucket[str(status)] = bucket.get(str(status), 0) + 1

    def _flood(self) -> None:
        rnd = random.Random()
        junk = b"A" * FLOOD_BYTES
        while not self.stopping.is_set():
            prefix = f"InvId={rnd.choice(self.targets)}&OutSum=1.00&SignatureValue=00&x=".encode()
            status, _, _ = post(self.callback_port, "/mancgi/rkresult", prefix + junk[len(prefix):], timeout=30)
            self._count("flood 10 MB (0 = reset after 413)", status)

    def _forged(self) -> None:
        rnd = random.Random()
        junk = "B" * 8000
        while not self.stopping.is_set():
            body = urlencode({"InvId": rnd.choice(self.targets), "OutSum": "1.00", "SignatureValue": "0" * 32,
                              "x": junk})
            status, _, _ = post(self.callback_port, "/mancgi/rkresult", body)
            self._count("forged 8 KB", status)

    def _session(self, address: str) -> tuple[str, str]:
        """A login page's session cookie and CSRF token."""
        conn = _connection(self.port, 30)
        conn.request("GET", "/login", headers={"X-Forwarded-For": address})
        response = conn.getresponse()
        html = response.read().decode()
        cookie = response.getheader("Set-Cookie", "").split(";", 1)[0]
        conn.close()
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)
        return cookie, token

    def _guess(self, one_address: bool) -> None:
        rnd = random.Random()
        kind = "guess: one address, the client" if one_address else "guess: new address, random e-mail"
        address = f"203.0.113.{rnd.randrange(1, 250)}"
        cookie, token = self._session(address)
        while not self.stopping.is_set():
            if not one_address:
                address = f"198.{rnd.randrange(18, 20)}.{rnd.randrange(256)}.{rnd.randrange(1, 255)}"
            email = CLIENT_EMAIL if one_address else \
                "".join(rnd.choices(string.ascii_lowercase, k=10)) + "@example.com"
            body = urlencode({"email": email, "password": "guess-" + uuid.uuid4().hex[:8], "csrf_token": token})
            status, _, _ = post(self.port, "/login", body, {"Cookie": cookie, "X-Forwarded-For": address})
            self._count(kind, status)


def _attack_process(port: int, callback_port: int, targets: list[int], flood: int, forged: int, guessers: int,
                    nice: int, source: str | None, group: CpuGroup | None, stop, out) -> None:
    SOURCE[0] = source
    if group is not None:  # the attackers' CPU stands for other machines': the least weight the host gives
        group.enter()
    if nice:  # the attackers' own CPU is not the server's in real life: on a shared box, let it yield
        os.nice(nice)
    attackers = Attackers(port, callback_port, targets, flood, forged, guessers)
    for thread in attackers.threads:
        thread.start()
    stop.wait()
    attackers.stopping.set()
    for thread in attackers.threads:
        thread.join(60)
    out.put(attackers.counts)


class Attack:
    """The attack in a child process while the ``with`` block runs; ``counts`` afterwards."""

    def __init__(self, port: int, callback_port: int, targets: list[int], args) -> None:
        self.stop = multiprocessing.Event()
        self.out = multiprocessing.Queue()
        self.group = CpuGroup("bench-attackers", args.attacker_weight) if args.attacker_weight else None
        self.process = multiprocessing.Process(target=_attack_process, daemon=True, args=(
            port, callback_port, targets, args.flood, args.forged, args.guessers, args.attacker_nice,
            args.attacker_address, self.group, self.stop, self.out))
        self.counts: dict[str, dict[str, int]] = {}

    def __enter__(self) -> Attack:
        self.process.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.counts = self.out.get(timeout=120)
        self.process.join(30)
        if self.group is not None:
            self.group.remove()


def database_size(app, target) -> int:
    """Bytes the database takes now: the SQLite file and its WAL, or pg_database_size."""
    from sqlalchemy import text

    from billcore.db import db

    with app.app_context():
        if target.kind == "sqlite":
            path = Path(db.engine.url.database)
            return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
        with db.engine.connect() as conn:
            return conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one()


def event_count(app) -> int:
    """Rows in payment_events."""
    from sqlalchemy import func, select

    from billcore.db import db
    from billcore.models import PaymentEvent

    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(PaymentEvent))


def exactly_once(app, results: list[tuple[int, float, int, str]]) -> list[str]:
    """Problems: a genuine notification not answered OK, a payment not paid once."""
    from sqlalchemy import func, select

    from billcore.db import db
    from billcore.models import LedgerEntry, Payment

    problems = [f"payment {pid}: {status} {text!r}" for pid, _, status, text in results
                if status != 200 or text != f"OK{pid}"]
    ids = [pid for pid, *_ in results]
    with app.app_context():
        paid = db.session.scalar(select(func.count()).select_from(Payment)
                                 .where(Payment.id.in_(ids), Payment.status == "paid"))
        ledger = db.session.scalar(select(func.count()).select_from(LedgerEntry)
                                   .where(LedgerEntry.payment_id.in_(ids), LedgerEntry.kind == "payment"))
    if paid != len(ids) or ledger != len(ids):
        problems.append(f"{len(ids)} notified, {paid} paid, {ledger} ledger entries")
    return problems


def summary(label: str, results: list[tuple[int, float, int, str]]) -> dict:
    """Latency figures of one phase."""
    latencies = [ms for _, ms, _, _ in results]
    figures = {"count": len(latencies), "p50": percentile(latencies, 50), "p95": percentile(latencies, 95),
               "p99": percentile(latencies, 99), "max": max(latencies, default=0.0)}
    print(f"  {label:<7} {figures['count']:>5} notifications   p50 {figures['p50']:7.1f} ms   "
          f"p95 {figures['p95']:7.1f} ms   p99 {figures['p99']:7.1f} ms   max {figures['max']:7.1f} ms", flush=True)
    return figures


def run(kind: str, args, workdir: Path) -> dict:
    """The quiet and attack phases on one database."""
    from billcore.accounts import create_client

    target = make_target(kind, workdir, args.pg_url)
    pages_group = callbacks_group = None
    try:
        app = setup_app(target)
        method_id, account_ids = create_schema(app)
        with app.app_context():
            create_client(CLIENT_EMAIL, CLIENT_PASSWORD)
        per_phase = int(args.rate * args.seconds)
        phases = 2 * args.rounds + 1  # quiet, then (attack, quiet) per round
        payments = create_payments(app, method_id, account_ids, phases * per_phase + 200)
        warm = payments[:40]
        batches = [payments[200 + i * per_phase:200 + (i + 1) * per_phase] for i in range(phases)]
        targets = [pid for pid, _ in payments[40:200]]  # what the attackers name: real payments
        env = {"BILLCORE_INSTANCE_PATH": str(target.instance), "BILLCORE_DATABASE_URL": target.url,
               "BILLCORE_BASE_URL": "https://billing.example.com",
               # the attackers' X-Forwarded-For stands for their own addresses; the proxy adds one hop
               "BILLCORE_TRUSTED_PROXIES": "2" if args.proxy else "1",
               "BILLCORE_RATELIMIT_STORAGE_URI": args.redis, "BILLCORE_RATELIMIT_KEY_PREFIX": uuid.uuid4().hex}
        print(f"{kind}:", flush=True)
        if args.pages_weight and args.callback_workers:
            pages_group = CpuGroup("bench-pages", args.pages_weight)
        if args.callbacks_weight and args.callback_workers:
            callbacks_group = CpuGroup("bench-callbacks", args.callbacks_weight)
        pages = Server("billcore:create_app()", env, args, workdir, f"hardening-{kind}",
                       nice=args.pages_nice if args.callback_workers else 0, cpus=args.server_cpus,
                       group=pages_group)
        callbacks = pages
        if args.callback_workers:  # the gateways' callbacks served by workers of their own
            callbacks = Server("billcore:create_app()", env,
                               argparse.Namespace(**{**vars(args), "workers": args.callback_workers}),
                               workdir, f"hardening-callbacks-{kind}", cpus=args.server_cpus,
                               group=callbacks_group)
        with pages, callbacks:
            pages_port, callbacks_port = pages.port, callbacks.port
            proxy = None
            if args.proxy:  # everyone, genuine or not, reaches billcore through the proxy
                proxy = Proxy(args.proxy, pages.port, callbacks.port, workdir, kind, cpus=args.server_cpus,
                              allow=tuple(args.callbacks_from or ()))
                pages_port = callbacks_port = proxy.port
            quiet: list[tuple[int, float, int, str]] = []
            loud: list[tuple[int, float, int, str]] = []
            counts: dict[str, dict[str, int]] = {}
            growth = events_added = 0
            try:
                paced_notifications(callbacks_port, warm, args.rate, len(warm) / args.rate)  # untimed warm-up
                # quiet and attack phases take turns, so that a slow spell of the machine (a checkpoint,
                # the disk's flush) lands in either kind alike instead of deciding the ratio
                quiet += paced_notifications(callbacks_port, batches[0], args.rate, args.seconds)
                for round_ in range(args.rounds):
                    size_before, events_before = database_size(app, target), event_count(app)
                    with Attack(pages_port, callbacks_port, targets, args) as attack:
                        time.sleep(1)  # the attack is under way before the genuine ones start
                        loud += paced_notifications(callbacks_port, batches[1 + 2 * round_], args.rate,
                                                    args.seconds)
                    growth += database_size(app, target) - size_before
                    events_added += event_count(app) - events_before
                    for name, statuses in attack.counts.items():
                        for status, number in statuses.items():
                            counts.setdefault(name, {}).setdefault(status, 0)
                            counts[name][status] += number
                    time.sleep(2)  # the attack's connections are closed before the next quiet phase
                    quiet += paced_notifications(callbacks_port, batches[2 + 2 * round_], args.rate, args.seconds)
            finally:
                if proxy is not None:
                    proxy.__exit__()
        quiet_figures, loud_figures = summary("quiet", quiet), summary("attack", loud)
        ratio = loud_figures["p99"] / quiet_figures["p99"] if quiet_figures["p99"] else 0.0
        problems = exactly_once(app, quiet + loud)
        print(f"  p99 attack / quiet: {ratio:.2f} ({args.rounds} attack phase(s) between {args.rounds + 1} quiet ones)",
              flush=True)
        for name, statuses in sorted(counts.items()):
            print(f"  {name:<36} {sum(statuses.values()):>6} requests, answers {json.dumps(statuses, sort_keys=True)}")
        print(f"  database grew {growth / 1024:.0f} KiB during the attack "
              f"({events_added} events recorded, {len(loud)} of them genuine credits)")
        print(f"  exactly-once: {'OK' if not problems else problems[:5]}", flush=True)
        return {"db": kind, "quiet": quiet_figures, "attack": loud_figures, "p99_ratio": ratio,
                "rounds": args.rounds, "attackers": counts, "growth_bytes": growth,
                "events_added": events_added, "problems": problems}
    finally:
        for group in (pages_group, callbacks_group):
            if group is not None:
                group.remove()
        drop_target(target, args.pg_url)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--db", action="append", choices=["sqlite", "postgresql"],
                        help="database(s) to run on (repeatable; default both)")
    parser.add_argument("--pg-url", default=PG_ADMIN_URL, help="PostgreSQL server (a bench database is created)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379", help="the login limits' storage")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument("--callback-workers", type=int, default=0,
                        help="serve /mancgi/ callbacks by a second gunicorn with this many workers (0: one server)")
    parser.add_argument("--pages-nice", type=int, default=0,
                        help="with --callback-workers: run the pages' gunicorn at this nice level, so that the "
                             "callbacks' workers get the CPU first")
    parser.add_argument("--attacker-nice", type=int, default=0,
                        help="run the attacking process at this nice level (its CPU stands for another "
                             "machine's; 0: it competes with the server as an equal)")
    parser.add_argument("--attacker-weight", type=int, default=0, metavar="W",
                        help="run the attacking process in a control group of CPU weight W (1-10000; every "
                             "service's default is 100): its CPU stands for other machines'. Needs root")
    parser.add_argument("--pages-weight", type=int, default=0, metavar="W",
                        help="with --callback-workers: the pages' gunicorn in a control group of CPU weight W, as "
                             "CPUWeight=W in its systemd unit would. Needs root")
    parser.add_argument("--callbacks-weight", type=int, default=0, metavar="W",
                        help="with --callback-workers: the callbacks' gunicorn in a control group of CPU weight W. "
                             "Needs root")
    parser.add_argument("--server-cpus", metavar="LIST",
                        help="run billcore's gunicorns (and nginx) on these CPUs only (taskset's list, e.g. 0)")
    parser.add_argument("--client-cpus", metavar="LIST",
                        help="run the attackers and the genuine notifications' sender on these CPUs only "
                             "(e.g. 1: a core of their own stands for the other machines they run on)")
    parser.add_argument("--attacker-address", metavar="IP",
                        help="the attackers connect from this loopback address (e.g. 127.0.0.2), the genuine "
                             "notifications from 127.0.0.1")
    parser.add_argument("--callbacks-from", metavar="IP", action="append",
                        help="with --proxy: only these addresses reach the callbacks (the gateway's published "
                             "addresses; repeatable); the proxy refuses the others with 403")
    parser.add_argument("--proxy", metavar="NGINX",
                        help="with --callback-workers: put this nginx binary in front, as docs/security.md "
                             "recommends (/mancgi/ to the callbacks' workers with a 16 KB body cap)")
    parser.add_argument("--worker-class", default="sync", help="gunicorn worker class")
    parser.add_argument("--threads", type=int, default=1, help="gunicorn threads per worker")
    parser.add_argument("--rate", type=float, default=20, help="genuine notifications per second")
    parser.add_argument("--seconds", type=float, default=20, help="length of each phase")
    parser.add_argument("--flood", type=int, default=4, help="threads posting 10 MB refused callbacks")
    parser.add_argument("--forged", type=int, default=2, help="threads posting refused callbacks under the cap")
    parser.add_argument("--guessers", type=int, default=8, help="threads guessing passwords")
    parser.add_argument("--rounds", type=int, default=1,
                        help="attack phases, each followed by a quiet one (the first quiet phase comes before)")
    parser.add_argument("--json", help="write the figures to this file too")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds: at least one attack phase")
    return args


def cpu_list(text: str) -> set[int]:
    """CPUs of a taskset-style list ("1", "0,2", "0-3")."""
    cpus: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 1 when exactly-once failed."""
    args = parse_args(argv)
    if args.client_cpus:  # this process sends the genuine notifications; the attack's process inherits it
        os.sched_setaffinity(0, cpu_list(args.client_cpus))
    print(f"machine: {machine()}")
    print(f"settings: gunicorn {args.workers} x {args.worker_class}, {args.rate:g} genuine notifications/s for "
          f"{args.seconds:g} s per phase; attack: {args.flood} x 10 MB flood, {args.forged} x forged, "
          f"{args.guessers} password guessers", flush=True)
    report = []
    with tempfile.TemporaryDirectory(prefix="billcore-hardening-") as tmp:
        for kind in args.db or ["sqlite", "postgresql"]:
            report.append(run(kind, args, Path(tmp)))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "args": vars(args), "results": report},
                                              indent=2, default=str))
    return 1 if any(r["problems"] for r in report) else 0


if __name__ == "__main__":
    sys.exit(main())
