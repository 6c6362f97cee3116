"""A tiny payment module for the checkout and admin tests (loaded with ``EXTRA_MODULES``).

Its start hook sends the browser to ``/fakepay/start?elid=<id>`` (or answers with a POST form when
``MODE["start"] == "post"``), which marks the payment ``inpay`` for its owner only. Polls and refunds
answer what the test put in ``CHECK`` and ``REFUND``; every call is recorded in ``CALLS``.
"""
from __future__ import annotations

from flask import Blueprint, abort, redirect, request, url_for
from flask_login import current_user

from billcore import hookimpl
from billcore.db import db
from billcore.models import Payment
from billcore.payments import service
from billcore.paymodule import FEATURE_CHECKPAY, FEATURE_REFUND, GatewayStatus, ModuleInfo, RefundResult, StartAction

KEY = "pmfakepay"
MODE: dict[str, str] = {"start": "get"}
CHECK: dict[int, GatewayStatus] = {}  # payment id -> what the "gateway" says when polled
REFUND: dict[str, RefundResult | Exception] = {}  # "request" / "status" -> answer
CALLS: list[tuple] = []


def reset() -> None:
    """Forget what a previous test configured."""
    MODE.clear()
    MODE["start"] = "get"
    CHECK.clear()
    REFUND.clear()
    CALLS.clear()


@hookimpl
def billcore_module_info() -> ModuleInfo:
    """Describe the fake module."""
    return ModuleInfo(key=KEY, title="Fake checkout gateway", features=frozenset({FEATURE_CHECKPAY, FEATURE_REFUND}),
                      secret_fields=("secret",), development_only=True)


bp = Blueprint("fakepay", __name__, url_prefix="/fakepay")


@bp.route("/start")
def start():
    """The redirect script: only the payment's owner may open it; marks the payment ``inpay``."""
    payment = db.session.get(Payment, request.args.get("elid", type=int) or 0)
    if payment is None or not current_user.is_authenticated or current_user.account_id != payment.account_id:
        abort(404)
    service.set_in_pay(payment.id, source=KEY)
    return redirect(f"https://gateway.invalid/pay?order={payment.id:d}")


@hookimpl
def billcore_blueprints(app):
    """The fake redirect script."""
    return [bp]


@hookimpl
def billcore_start_payment(module, payment, paymethod):
    """GET to the redirect script, or a POST form when the test asks for one."""
    if module != KEY:
        return None
    CALLS.append(("start", payment.id))
    if MODE.get("start") == "error":
        raise ConnectionError("gateway unreachable")
    if MODE.get("start") == "post":
        return StartAction(url="https://gateway.invalid/form", method="POST",
                           fields=(("order", str(payment.id)), ("sum", str(payment.total))))
    return StartAction(url=url_for("fakepay.start", elid=payment.id))


@hookimpl
def billcore_check_payment(module, payment, paymethod, settings):
    """Answer what the test configured (default: still pending)."""
    if module != KEY:
        return None
    CALLS.append(("check", payment.id, settings.get("secret")))
    answer = CHECK.get(payment.id, GatewayStatus(state="pending", info="still waiting"))
    if isinstance(answer, Exception):
        raise answer
    if callable(answer):  # built during the call, as a real module builds its answer
        answer = answer()
    return answer


@hookimpl
def billcore_refund(module, payment, paymethod, settings, refund):
    """Answer what the test configured (default: finished)."""
    if module != KEY:
        return None
    CALLS.append(("refund", payment.id, refund.id, str(refund.amount)))
    answer = REFUND.get("request", RefundResult(state="finished", external_id=f"R{refund.id}"))
    if isinstance(answer, Exception):
        raise answer
    return answer


@hookimpl
def billcore_refund_status(module, payment, paymethod, settings, refund):
    """Answer what the test configured for a pending refund (default: finished)."""
    if module != KEY:
        return None
    CALLS.append(("refund_status", refund.id))
    answer = REFUND.get("status", RefundResult(state="finished"))
    if isinstance(answer, Exception):
        raise answer
    return answer
