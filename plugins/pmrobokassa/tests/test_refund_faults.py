"""Refund/Create requests that fail on the way: never sent -> failed (money back), maybe sent -> pending
without an id, flagged for an admin by ``payments check`` once overdue, then settled by hand.

The transport fails for real (a closed local port) or through a patched HTTP session
(``gateway.http_session``); never a real network.
"""
from __future__ import annotations

import socket
import ssl
import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from types import SimpleNamespace

import pytest
import requests
from urllib3.exceptions import MaxRetryError, NameResolutionError, ProtocolError, ReadTimeoutError
from urllib3.exceptions import SSLError as Urllib3SSLError

from billcore.db import db
from billcore.models import Account, Payment, PaymentEvent, Refund
from billcore.payments import refunds, service
from billcore.testing.fixtures import add_paymethod
from pmrobokassa import gateway, protocol

from .helpers import SETTINGS, reload, result_params

pytestmark = pytest.mark.filterwarnings("ignore:The HMAC key is")
ADMIN = "admin@test.example"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _paid_payment(app, client_user, url: str) -> Payment:
    method = add_paymethod("pmrobokassa", {**SETTINGS, "url": url})
    p = service.create_payment(client_user.account_id, method.id, Decimal("100.00"))
    assert app.test_client().post("/mancgi/rkresult", data=result_params(p.id)).status_code == 200
    service.set_gateway_data(p.id, op_key="OPKEY-X")  # no OpStateExt needed before Refund/Create
    return p


def _money(payment_id: int) -> tuple[str, Decimal, Decimal]:
    db.session.rollback()
    p = db.session.get(Payment, payment_id)
    return p.status, p.refunded_amount, db.session.get(Account, p.account_id).balance


def _refund(payment_id: int) -> Refund:
    db.session.rollback()
    return db.session.query(Refund).filter_by(payment_id=payment_id).order_by(Refund.id.desc()).first()


def _failing_post(exc: Exception):
    def post(url, **kwargs):
        if "Refund/Create" in url:
            raise exc
        raise AssertionError(f"unexpected call to {url}")
    return post


def test_refund_to_a_closed_port_fails_and_gives_the_money_back(app, client_user):
    p = _paid_payment(app, client_user, f"http://127.0.0.1:{_closed_port()}/rk/Merchant/Index.aspx")
    outcome = refunds.refund_payment(p.id, Decimal("40.00"), ADMIN, "customer asked")
    assert outcome.state == "failed" and "could not be sent" in outcome.info
    assert _money(p.id) == ("paid", Decimal("0.00"), Decimal("100.00"))
    assert _refund(p.id).status == "failed"


def _name_not_resolved() -> Exception:
    cause = NameResolutionError("services.robokassa.invalid", None, socket.gaierror("Name or service not known"))
    return requests.ConnectionError(MaxRetryError(None, "/RefundService/Refund/Create", cause))


@pytest.mark.parametrize("make", [_name_not_resolved, lambda: requests.ConnectTimeout("connect timed out")],
                         ids=["dns", "connect-timeout"])
def test_refund_never_sent_fails(app, client_user, fake, monkeypatch, make):
    p = _paid_payment(app, client_user, fake.url)
    monkeypatch.setattr(gateway, "http_session", _session_posting(_failing_post(make())))
    outcome = refunds.refund_payment(p.id, Decimal("40.00"), ADMIN, None)
    assert outcome.state == "failed" and "nothing was refunded" in outcome.info
    assert _money(p.id) == ("paid", Decimal("0.00"), Decimal("100.00"))


def _session_posting(post):
    """A stand-in for :func:`gateway.http_session` whose ``post`` is ``post``."""
    return lambda: SimpleNamespace(post=post)


def _answering(status: int, content: bytes = b"error"):
    """A stand-in for ``requests.post`` whose every answer has this HTTP status and body."""
    answer = SimpleNamespace(status_code=status, content=content, text=content.decode("utf-8", "replace"))
    return lambda url, **kw: answer


def _read_timeout() -> Exception:
    return requests.ReadTimeout(ReadTimeoutError(None, "/RefundService/Refund/Create", "read timed out"))


def _age(refund_id: int, hours: float) -> None:
    with db.engine.begin() as conn:
        conn.execute(Refund.__table__.update().where(Refund.id == refund_id)
                     .values(created_at=datetime.now(timezone.utc) - timedelta(hours=hours)))
    db.session.rollback()


@pytest.mark.parametrize("how", ["read-timeout", "no-request-id", "http-502"])
def test_refund_maybe_sent_stays_pending_then_is_flagged_and_settled_by_hand(app, client_user, fake, monkeypatch,
                                                                            how):
    p = _paid_payment(app, client_user, fake.url)
    with monkeypatch.context() as patch:
        if how == "read-timeout":
            patch.setattr(gateway, "http_session", _session_posting(_failing_post(_read_timeout())))
        elif how == "http-502":
            patch.setattr(gateway, "http_session", _session_posting(_answering(502, b"Bad Gateway")))
        else:
            patch.setattr(protocol, "parse_refund_create_answer",
                          lambda body: protocol.RefundCreateAnswer(success=True, request_id=None))
        outcome = refunds.refund_payment(p.id, Decimal("40.00"), ADMIN, None)
    # it may have reached Robokassa: the money stays held, nothing is put back
    assert outcome.state == "pending" and "may have been made" in outcome.info
    assert _money(p.id) == ("pending_return", Decimal("40.00"), Decimal("60.00"))
    refund = _refund(p.id)
    assert (refund.status, refund.external_id) == ("requested", None)
    runner = app.test_cli_runner()
    # young: payments check leaves it alone (nothing to ask Robokassa without a request id)
    result = runner.invoke(args=["payments", "check", "--module", "pmrobokassa"])
    assert result.exit_code == 0 and "; 0 refund(s) followed" in result.output
    _age(refund.id, 25)
    calls_before = len(fake.requests)
    result = runner.invoke(args=["payments", "check", "--module", "pmrobokassa"])
    assert result.exit_code == 0 and "1 refund(s) followed: 0 finished, 0 failed, 1 need an admin" in result.output
    assert len(fake.requests) == calls_before  # no GetState without an id
    again = runner.invoke(args=["payments", "check", "--module", "pmrobokassa"])
    assert "1 need an admin" in again.output  # reported on every run ...
    db.session.rollback()
    flags = [e for e in db.session.query(PaymentEvent).filter_by(payment_id=p.id, kind="refund")
             if e.data.get("attention")]
    assert len(flags) == 1  # ... recorded once
    pending = [e for e in db.session.query(PaymentEvent).filter_by(payment_id=p.id, kind="refund")
               if "pending at the gateway" in e.outcome]
    assert len(pending) == 2  # the request's answer, then "cannot be followed" once: not one per run
    assert _money(p.id) == ("pending_return", Decimal("40.00"), Decimal("60.00"))
    # the admin looked at Robokassa's cabinet
    refunds.settle_by_hand(refund.id, done=False, reason="not in the cabinet", actor=ADMIN)
    assert _money(p.id) == ("paid", Decimal("0.00"), Decimal("100.00"))
    assert reload(p.id).status == "paid"


def test_opstate_unreachable_before_the_refund_fails_it(app, client_user):
    url = f"http://127.0.0.1:{_closed_port()}/rk/Merchant/Index.aspx"
    method = add_paymethod("pmrobokassa", {**SETTINGS, "url": url})
    p = service.create_payment(client_user.account_id, method.id, Decimal("100.00"))
    assert app.test_client().post("/mancgi/rkresult", data=result_params(p.id)).status_code == 200
    outcome = refunds.refund_payment(p.id, Decimal("100.00"), ADMIN, None)  # no OpKey yet: OpStateExt first
    assert outcome.state == "failed" and "was not sent" in outcome.info
    assert _money(p.id) == ("paid", Decimal("0.00"), Decimal("100.00"))


def test_gateway_tells_never_sent_from_maybe_sent():
    port = _closed_port()
    with pytest.raises(gateway.GatewayUnavailable) as refused:
        gateway._post(f"http://127.0.0.1:{port}/x", timeout=2)
    assert refused.value.sent is False
    assert gateway._never_sent(_name_not_resolved())
    assert gateway._never_sent(requests.ConnectTimeout())
    assert not gateway._never_sent(_read_timeout())
    assert not gateway._never_sent(requests.ConnectionError("Connection aborted."))  # dropped after sending


# --- what counts as "never sent" -----------------------------------------------------------------------


def _ssl_error(cause: ssl.SSLError) -> Exception:
    """What requests raises for a TLS failure: SSLError(MaxRetryError(reason=urllib3 SSLError(ssl error)))."""
    return requests.exceptions.SSLError(MaxRetryError(None, "/RefundService/Refund/Create", Urllib3SSLError(cause)))


def _tls_eof() -> Exception:  # the connection dropped while reading the answer, after sending
    return _ssl_error(ssl.SSLEOFError(8, "EOF occurred in violation of protocol (_ssl.c:2427)"))


def _reset() -> Exception:
    cause = ProtocolError("Connection aborted.", ConnectionResetError(104, "Connection reset by peer"))
    return requests.ConnectionError(cause)


def test_tls_failure_after_sending_is_not_never_sent():
    assert not gateway._never_sent(_tls_eof())
    assert not gateway._never_sent(_ssl_error(ssl.SSLError(1, "[SSL: DECRYPTION_FAILED_OR_BAD_RECORD_MAC]")))
    assert not gateway._never_sent(_reset())
    assert not gateway._never_sent(requests.exceptions.SSLError("bare"))
    # a certificate refused in the handshake: provably before the request left
    verify = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    assert gateway._never_sent(_ssl_error(verify))
    refused = requests.ConnectionError(MaxRetryError(None, "/x", ConnectionRefusedError(111, "refused")))
    assert gateway._never_sent(refused)


@pytest.mark.parametrize("make", [_tls_eof, _reset], ids=["tls-eof", "reset"])
def test_refund_dropped_after_sending_stays_pending(app, client_user, fake, monkeypatch, make):
    p = _paid_payment(app, client_user, fake.url)
    monkeypatch.setattr(gateway, "http_session", _session_posting(_failing_post(make())))
    outcome = refunds.refund_payment(p.id, Decimal("40.00"), ADMIN, None)
    assert outcome.state == "pending" and "may have been made" in outcome.info  # never failed: no refund twice
    assert _money(p.id) == ("pending_return", Decimal("40.00"), Decimal("60.00"))
    assert _refund(p.id).status == "requested"


def test_refund_cut_off_by_a_real_server_after_sending_stays_pending(app, client_user):
    """A local server reads the whole request, then closes the connection without an answer."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    received = []

    def serve():
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            received.append(data)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        port = listener.getsockname()[1]
        p = _paid_payment(app, client_user, f"http://127.0.0.1:{port}/rk/Merchant/Index.aspx")
        outcome = refunds.refund_payment(p.id, Decimal("40.00"), ADMIN, None)
    finally:
        thread.join(5)
        listener.close()
    assert received and b"Refund/Create" in received[0]
    assert outcome.state == "pending" and "may have been made" in outcome.info
    assert _money(p.id) == ("pending_return", Decimal("40.00"), Decimal("60.00"))


@pytest.mark.parametrize("status,state", [(400, "failed"), (401, "failed"), (403, "failed"), (404, "failed"),
                                          (422, "failed"), (429, "failed"), (408, "pending"), (409, "pending"),
                                          (425, "pending"), (499, "pending"), (418, "pending")])
def test_only_clear_http_rejections_fail_the_refund(app, client_user, fake, monkeypatch, status, state):
    p = _paid_payment(app, client_user, fake.url)
    monkeypatch.setattr(gateway, "http_session", _session_posting(_answering(
        status, b'{"success":false,"message":"RefundNotAllowed","requestId":null}')))
    outcome = refunds.refund_payment(p.id, Decimal("40.00"), ADMIN, None)
    assert outcome.state == state
    if state == "failed":
        assert f"HTTP {status}" in outcome.info
        assert _money(p.id) == ("paid", Decimal("0.00"), Decimal("100.00"))
    else:  # it may have been acted on: the money stays held for an admin
        assert "may have been made" in outcome.info
        assert _money(p.id) == ("pending_return", Decimal("40.00"), Decimal("60.00"))
