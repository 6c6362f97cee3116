"""Sending the ResultURL notification from the sandbox gateway to the shop, server to server.

Delivery runs in background threads so that a single-process server never waits on itself: the Pay
request answers the browser at once while a worker POSTs to the shop (which may be this very
server). Each attempt and the shop's answer are recorded in the sandbox store. The schedule is
bounded: a notification that is never acknowledged with ``OK<InvId>`` is given up after the last
delay, and status polling (OpStateExt) has to settle the payment.

The threads are bounded too: a :class:`DeliveryPool` per process of ``PMROBOKASSA_SANDBOX_WORKERS``
daemon workers (default 4, at most 32) takes deliveries from a queue of at most
``PMROBOKASSA_SANDBOX_QUEUE`` waiting ones (default 100). A delivery waits in the queue while every
worker is busy; when the queue is full too it is dropped, with a line in ``pmrobokassa.log`` (like a
lost notification: status polling settles the payment). The ``parallel`` fault starts its
``PMROBOKASSA_SANDBOX_PARALLEL`` (at most 50) short-lived senders inside one worker.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

import requests
from flask import current_app, has_app_context

from .. import protocol
from .shops import Shop
from .store import Operation, SandboxStore

# Fault modes offered on the payment page and accepted in PMROBOKASSA_SANDBOX_FAULT.
FAULT_MODES = ("normal", "twice", "parallel", "late", "bad_signature", "none")

DEFAULT_DELAYS = (0.0, 1.0, 2.0, 5.0)
_SIX = Decimal("0.000001")

DEFAULT_WORKERS = 4
DEFAULT_QUEUE = 100

log = logging.getLogger(__name__)


class DeliveryPool:
    """A fixed number of daemon worker threads fed by a bounded queue of deliveries."""

    def __init__(self, workers: int, queue_size: int) -> None:
        self.workers = workers
        self.threads: list[threading.Thread] = []
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._unfinished = 0

    def submit(self, target, *args, **kwargs) -> bool:
        """Queue ``target(*args, **kwargs)``; False (nothing queued) when the queue is full."""
        with self._lock:
            try:
                self._queue.put_nowait((target, args, kwargs))
            except queue.Full:
                return False
            self._unfinished += 1
            if len(self.threads) < self.workers:  # start workers lazily, never more than ``workers``
                thread = threading.Thread(target=self._work, name=f"rk-sandbox-deliver-{len(self.threads) + 1}",
                                          daemon=True)
                self.threads.append(thread)
                thread.start()
        return True

    def _work(self) -> None:
        while True:
            target, args, kwargs = self._queue.get()
            try:
                target(*args, **kwargs)
            except Exception:  # noqa: BLE001 - one failed delivery must not kill the worker
                log.exception("sandbox delivery failed")
            finally:
                with self._lock:
                    self._unfinished -= 1
                    if not self._unfinished:
                        self._idle.notify_all()

    def join(self, timeout: float) -> bool:
        """Wait until every queued and running delivery has ended; True when they have."""
        with self._idle:
            return self._idle.wait_for(lambda: self._unfinished == 0, timeout)


_pools: dict[tuple[int, int], DeliveryPool] = {}
_pools_lock = threading.Lock()


def _pool(settings: DeliverySettings) -> DeliveryPool:
    """The process's pool for these limits (one per distinct configuration, made on first use)."""
    key = (settings.workers, settings.queue_size)
    with _pools_lock:
        if key not in _pools:
            _pools[key] = DeliveryPool(*key)
        return _pools[key]


@dataclass(frozen=True)
class DeliverySettings:
    """How notifications are sent: the retry delays (seconds before each attempt), the HTTP timeout,
    the number of concurrent deliveries of the ``parallel`` fault, the delay of the ``late`` one, and
    the bounds of the delivery pool (worker threads, waiting deliveries)."""

    delays: tuple[float, ...] = DEFAULT_DELAYS
    timeout: float = 10.0
    parallel: int = 5
    late_seconds: float = 3.0
    workers: int = DEFAULT_WORKERS
    queue_size: int = DEFAULT_QUEUE


def settings_from_config() -> DeliverySettings:
    """Read the delivery settings from the current app's ``PMROBOKASSA_SANDBOX_*`` config."""
    cfg = current_app.config
    delays = cfg.get("PMROBOKASSA_SANDBOX_RETRY_DELAYS") or DEFAULT_DELAYS
    return DeliverySettings(
        delays=tuple(float(d) for d in delays)[:20],  # bounded, whatever the config says
        timeout=float(cfg.get("PMROBOKASSA_SANDBOX_TIMEOUT", 10)),
        parallel=max(2, min(int(cfg.get("PMROBOKASSA_SANDBOX_PARALLEL", 5)), 50)),
        late_seconds=float(cfg.get("PMROBOKASSA_SANDBOX_LATE_SECONDS", 3)),
        workers=max(1, min(int(cfg.get("PMROBOKASSA_SANDBOX_WORKERS", DEFAULT_WORKERS)), 32)),
        queue_size=max(1, min(int(cfg.get("PMROBOKASSA_SANDBOX_QUEUE", DEFAULT_QUEUE)), 10000)),
    )


def six_decimals(amount: Decimal) -> str:
    """``OutSum`` as Robokassa writes it in notifications: six decimals (``100.000000``)."""
    return format(amount.quantize(_SIX), "f")


def notification_fields(shop: Shop, op: Operation, *, bad_signature: bool = False) -> dict[str, str]:
    """The ResultURL form (docs/robokassa.md §3), signed with Password #2 in uppercase hex.

    ``EMail`` is absent for test payments, as the real gateway does; ``IsTest=1`` is sent instead.
    ``bad_signature`` signs with a wrong password (a forged or corrupted notification).
    """
    out_sum = six_decimals(op.out_sum)
    password2 = shop.pass2(op.is_test)
    if bad_signature:
        password2 = password2 + "-wrong"
    signature = protocol.result_signature(shop.hash_algorithm, out_sum, op.inv_id, password2, op.shp)
    fields = {"OutSum": out_sum, "InvId": op.inv_id, "Fee": format(op.fee, "f"),
              "PaymentMethod": op.payment_method, "IncCurrLabel": op.inc_curr_label}
    if op.is_test:
        fields["IsTest"] = "1"
    elif op.email:
        fields["EMail"] = op.email
    fields.update(op.shp)
    fields["SignatureValue"] = signature.upper()
    return fields


def _post(shop: Shop, fields: Mapping[str, str], timeout: float) -> tuple[int | None, str]:
    try:
        if shop.result_method == "GET":
            response = requests.get(shop.result_url, params=fields, timeout=timeout)
        else:
            response = requests.post(shop.result_url, data=fields, timeout=timeout)
    except requests.RequestException as exc:
        return None, f"{type(exc).__name__}: {exc}"[:300]
    return response.status_code, response.text


def deliver_chain(store: SandboxStore, shop: Shop, op: Operation, fields: Mapping[str, str], *,
                  chain: str, delays: Sequence[float], timeout: float) -> bool:
    """Send the notification until the shop answers exactly ``OK<InvId>`` or the schedule runs out.

    Every attempt is recorded with the shop's answer. Returns True when acknowledged.
    """
    expected = protocol.result_answer(op.inv_id)
    for number, delay in enumerate(delays, start=1):
        if delay > 0:
            time.sleep(delay)
        status, answer = _post(shop, fields, timeout)
        # Robokassa wants the text OK<InvId>; a trailing newline (common in PHP scripts) is tolerated.
        accepted = status == 200 and answer.strip() == expected
        store.add_attempt(op.id, chain=chain, attempt=number, url=shop.result_url, status=status,
                          answer=answer, accepted=accepted)
        if accepted:
            return True
    return False


def _run(store: SandboxStore, shop: Shop, op: Operation, mode: str, settings: DeliverySettings) -> None:
    if mode == "none":
        return
    if mode == "bad_signature":
        fields = notification_fields(shop, op, bad_signature=True)
        deliver_chain(store, shop, op, fields, chain="bad_signature", delays=(0.0,), timeout=settings.timeout)
        return
    fields = notification_fields(shop, op)
    if mode == "late":
        time.sleep(settings.late_seconds)
        deliver_chain(store, shop, op, fields, chain="late", delays=settings.delays, timeout=settings.timeout)
    elif mode == "parallel":
        barrier = threading.Barrier(settings.parallel)

        def one(index: int) -> None:
            try:
                barrier.wait(timeout=10)
            except threading.BrokenBarrierError:
                pass
            deliver_chain(store, shop, op, fields, chain=f"parallel-{index}", delays=settings.delays,
                          timeout=settings.timeout)

        workers = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(1, settings.parallel + 1)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    else:
        ok = deliver_chain(store, shop, op, fields, chain="main", delays=settings.delays, timeout=settings.timeout)
        if mode == "twice" and ok:
            # Robokassa delivers at least once; a repeat after an OK must change nothing at the shop.
            deliver_chain(store, shop, op, fields, chain="duplicate", delays=settings.delays,
                          timeout=settings.timeout)


def _submit(settings: DeliverySettings, op: Operation, what: str, target, *args, **kwargs) -> bool:
    """Queue a delivery on the bounded pool; a full queue drops it with a line in ``pmrobokassa.log``."""
    if _pool(settings).submit(target, *args, **kwargs):
        return True
    message = ("sandbox: %s of invoice %s dropped: %s deliveries already wait for %s workers "
               "(PMROBOKASSA_SANDBOX_QUEUE / PMROBOKASSA_SANDBOX_WORKERS)")
    values = (what, op.inv_id, settings.queue_size, settings.workers)
    log.warning(message, *values)
    if has_app_context():
        from billcore.gateway import file_logger

        file_logger("pmrobokassa").warning(message, *values)
    return False


def start_delivery(store: SandboxStore, shop: Shop, op: Operation, mode: str, settings: DeliverySettings) -> bool:
    """Deliver the notification of ``op`` according to the fault ``mode`` on the bounded pool.

    Returns False when the delivery was dropped because the pool's queue is full (logged).
    """
    if mode not in FAULT_MODES:
        mode = "normal"
    return _submit(settings, op, "notification", _run, store, shop, op, mode, settings)


def join_deliveries(timeout: float = 30.0) -> bool:
    """Wait for every queued and running delivery (tests use it); True when all have ended."""
    deadline = time.monotonic() + timeout
    with _pools_lock:
        pools = list(_pools.values())
    return all(pool.join(max(0.0, deadline - time.monotonic())) for pool in pools)


def resend(store: SandboxStore, shop: Shop, op: Operation, settings: DeliverySettings) -> bool:
    """Send a paid operation's notification once more (the sandbox page's "send again" button).

    Returns False when it was dropped because the pool's queue is full (logged).
    """
    fields = notification_fields(shop, op)
    return _submit(settings, op, "repeated notification", deliver_chain, store, shop, op, fields,
                   chain="manual", delays=(0.0,), timeout=settings.timeout)
