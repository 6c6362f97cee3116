"""A tiny payment module for the recurring tests (loaded through ``EXTRA_MODULES``).

Its charge answer is chosen by ``app.config["FAKEREC_MODE"]`` (``paid``, ``accepted``, ``failed``,
``error`` = raise, ``none`` = no answer, ``paid_short`` = paid, reporting one unit less than the total);
every charge is recorded in :data:`CHARGES` so tests can see how
often the gateway was asked, and ``FAKEREC_DELAY`` (seconds) widens the window for race tests.
A status check (``checkpay``, the admin's "check now") answers ``app.config["FAKEREC_CHECK"]``
(``pending`` unless set; ``cancelled``).
"""
from __future__ import annotations

import threading
import time
from typing import Any

from flask import current_app

from billcore import hookimpl
from billcore.paymodule import FEATURE_CHECKPAY, FEATURE_RECURRING, ChargeResult, GatewayStatus, ModuleInfo, StartAction

KEY = "pmfakerec"
CHARGES: list[int] = []  # child payment ids, in call order
_lock = threading.Lock()


@hookimpl
def billcore_module_info() -> ModuleInfo:
    """A module with recurring charges."""
    return ModuleInfo(key=KEY, title="Fake recurring", features=frozenset({FEATURE_RECURRING, FEATURE_CHECKPAY}))


@hookimpl
def billcore_start_payment(module: str, payment, paymethod) -> StartAction | None:
    """Send the browser to a made-up gateway page."""
    if module != KEY:
        return None
    return StartAction(url=f"https://gateway.invalid/pay/{payment.id}")


@hookimpl
def billcore_recurring_charge(module: str, payment, parent, paymethod, settings: dict[str, Any]) -> ChargeResult | None:
    """Answer as ``FAKEREC_MODE`` says."""
    if module != KEY:
        return None
    delay = float(current_app.config.get("FAKEREC_DELAY") or 0)
    if delay:
        time.sleep(delay)
    with _lock:
        CHARGES.append(payment.id)
    mode = current_app.config.get("FAKEREC_MODE", "paid")
    if mode == "error":
        raise RuntimeError("gateway timed out")
    if mode == "none":
        return None
    if mode == "failed":
        return ChargeResult("failed", info="card declined")
    if mode == "paid_short":  # the gateway took a different amount than asked
        return ChargeResult("paid", external_id=f"fake-{payment.id}",
                            data={"amount": str(payment.total - 1), "currency": payment.currency})
    return ChargeResult(mode, external_id=f"fake-{payment.id}",
                        data={"amount": str(payment.total), "currency": payment.currency})


@hookimpl
def billcore_check_payment(module: str, payment, paymethod, settings: dict[str, Any]) -> GatewayStatus | None:
    """Answer as ``FAKEREC_CHECK`` says (``pending`` unless set)."""
    if module != KEY:
        return None
    state = current_app.config.get("FAKEREC_CHECK", "pending")
    return GatewayStatus(state, info="cancelled at the fake gateway" if state == "cancelled" else "")
