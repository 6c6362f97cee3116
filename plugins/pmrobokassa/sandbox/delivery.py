"""Sending the ResultURL notification from the sandbox gateway to the shop, server to server.

Delivery runs in daemon threads so that a single-process server never waits on itself: the Pay
request answers the browser at once while a thread POSTs to the shop (which may be this very
server). Each attempt and the shop's answer are recorded in the sandbox store. The schedule is
bounded: a notification that is never acknowledged with ``OK<InvId>`` is given up after the last
delay, and status polling (OpStateExt) has to settle the payment.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

import requests
from flask import current_app

from .. import protocol
from .shops import Shop
from .store import Operation, SandboxStore

# Fault modes offered on the payment page and accepted in PMROBOKASSA_SANDBOX_FAULT.
FAULT_MODES = ("normal", "twice", "parallel", "late", "bad_signature", "none")

DEFAULT_DELAYS = (0.0, 1.0, 2.0, 5.0)
_SIX = Decimal("0.000001")

_threads: list[threading.Thread] = []
_threads_lock = threading.Lock()


@dataclass(frozen=True)
class DeliverySettings:
    """How notifications are sent: the retry delays (seconds before each attempt), the HTTP timeout,
    the number of concurrent deliveries of the ``parallel`` fault and the delay of the ``late`` one."""

    delays: tuple[float, ...] = DEFAULT_DELAYS
    timeout: float = 10.0
    parallel: int = 5
    late_seconds: float = 3.0


def settings_from_config() -> DeliverySettings:
    """Read the delivery settings from the current app's ``PMROBOKASSA_SANDBOX_*`` config."""
    cfg = current_app.config
    delays = cfg.get("PMROBOKASSA_SANDBOX_RETRY_DELAYS") or DEFAULT_DELAYS
    return DeliverySettings(
        delays=tuple(float(d) for d in delays)[:20],  # bounded, whatever the config says
        timeout=float(cfg.get("PMROBOKASSA_SANDBOX_TIMEOUT", 10)),
        parallel=max(2, min(int(cfg.get("PMROBOKASSA_SANDBOX_PARALLEL", 5)), 50)),
        late_seconds=float(cfg.get("PMROBOKASSA_SANDBOX_LATE_SECONDS", 3)),
    )


def six_decimals(amount: Decimal) -> str:
    """``OutSum`` as Robokassa writes it in notifications: six decimals (``100.000000``)."""
    return format(amount.quantize(_SIX), "f")


def notification_fields(shop: Shop, op: Operation, *, bad_signature: bool = False) -> dict[str, str]:
    """The ResultURL form (ROBOKASSA.md §3), signed with Password #2 in uppercase hex.

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


def _spawn(target, args: tuple, kwargs: dict, name: str) -> threading.Thread:
    """Start a daemon thread and remember it (finished ones are forgotten) for :func:`join_deliveries`."""
    thread = threading.Thread(target=target, args=args, kwargs=kwargs, name=name, daemon=True)
    with _threads_lock:
        _threads[:] = [t for t in _threads if t.is_alive()]
        _threads.append(thread)
    thread.start()
    return thread


def start_delivery(store: SandboxStore, shop: Shop, op: Operation, mode: str,
                   settings: DeliverySettings) -> threading.Thread:
    """Deliver the notification of ``op`` according to the fault ``mode`` in a daemon thread."""
    if mode not in FAULT_MODES:
        mode = "normal"
    return _spawn(_run, (store, shop, op, mode, settings), {}, f"rk-sandbox-deliver-{op.id}")


def join_deliveries(timeout: float = 30.0) -> bool:
    """Wait for every running delivery thread (tests use it); True when all have ended."""
    deadline = time.monotonic() + timeout
    with _threads_lock:
        threads = list(_threads)
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return not any(t.is_alive() for t in threads)


def resend(store: SandboxStore, shop: Shop, op: Operation, settings: DeliverySettings) -> threading.Thread:
    """Send a paid operation's notification once more (the sandbox page's "send again" button)."""
    fields = notification_fields(shop, op)
    return _spawn(deliver_chain, (store, shop, op, fields),
                  {"chain": "manual", "delays": (0.0,), "timeout": settings.timeout}, f"rk-sandbox-resend-{op.id}")
