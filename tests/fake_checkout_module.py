"""A tiny payment module for the checkout and admin tests (loaded with ``EXTRA_MODULES``).

Its start hook only says what the gateway's request is, as every module's does since the core owns the
payment door: by ``MODE["start"]`` a GET of the gateway's page (``get``), a POST form to the gateway
(``post``) or to this site (``post_here``), a careless one (``careless``: huge, with the secret in it), a
refusal with a message for the customer (``refuse``), an exception (``error``) or no answer (``none``);
``paid_meanwhile`` has the payment paid while the module answers (a notification won the race).
Polls and refunds answer what the test put in ``CHECK`` and ``REFUND``; every call is recorded in ``CALLS``
(the start's ``Customer`` in ``CUSTOMERS``).
"""
from __future__ import annotations

from billcore import hookimpl
from billcore.paymodule import (FEATURE_CHECKPAY, FEATURE_REFUND, Customer, GatewayStatus, ModuleInfo, RefundResult,
                                StartAction, StartRefused)

KEY = "pmfakepay"
MODE: dict[str, str] = {"start": "get"}
CHECK: dict[int, GatewayStatus] = {}  # payment id -> what the "gateway" says when polled
REFUND: dict[str, RefundResult | Exception] = {}  # "request" / "status" -> answer
CALLS: list[tuple] = []
CUSTOMERS: list[Customer] = []
GATEWAY = "https://gateway.invalid"
REFUSAL = "Card payments are paused for maintenance."


def reset() -> None:
    """Forget what a previous test configured."""
    MODE.clear()
    MODE["start"] = "get"
    CHECK.clear()
    REFUND.clear()
    CALLS.clear()
    CUSTOMERS.clear()


@hookimpl
def billcore_module_info() -> ModuleInfo:
    """Describe the fake module."""
    return ModuleInfo(key=KEY, title="Fake checkout gateway", features=frozenset({FEATURE_CHECKPAY, FEATURE_REFUND}),
                      secret_fields=("secret",), development_only=True)


@hookimpl
def billcore_start_payment(module, payment, paymethod, settings, customer):
    """The gateway's request for ``payment``, as ``MODE["start"]`` asks."""
    if module != KEY:
        return None
    CALLS.append(("start", payment.id))
    CUSTOMERS.append(customer)
    mode = MODE.get("start")
    if mode == "error":
        raise ConnectionError("gateway unreachable")
    if mode == "none":
        return None
    if mode == "refuse":
        raise StartRefused(REFUSAL)
    if mode == "post":
        return StartAction(url=f"{GATEWAY}/form", method="POST",
                           fields=(("order", str(payment.id)), ("sum", str(payment.total))))
    if mode == "careless":  # a module's mistakes: a huge receipt, a great many fields, the secret itself
        fields = [("order", str(payment.id)), ("receipt", "r" * 5000), ("leak", str(settings.get("secret")))]
        fields += [(f"extra{n}", "x") for n in range(200)]
        return StartAction(url=f"{GATEWAY}/form?key={settings.get('secret')}&pad={'p' * 3000}", method="POST",
                           fields=tuple(fields))
    if mode == "paid_meanwhile":  # the gateway's notification wins the race with the customer's click
        from billcore.payments import service

        service.set_paid(payment.id, amount=payment.total, currency=payment.currency, source="test")
    if mode == "post_here":
        return StartAction(url="/fakepay/form", method="POST", fields=(("order", str(payment.id)),))
    return StartAction(url=f"{GATEWAY}/pay?order={payment.id:d}")


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
