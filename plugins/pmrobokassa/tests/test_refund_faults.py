"""Refund/Create requests that fail on the way: never sent -> failed (money back), maybe sent -> pending
without an id, flagged for an admin by ``payments check`` once overdue, then settled by hand.

The transport fails for real (a closed local port, a server that hangs up) or through patched connection
pools (``gateway.http_pools``) raising what urllib3 raises; never a real network.
"""
from __future__ import annotations

import io
import socket
import ssl
import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from types import SimpleNamespace

import pytest
import urllib3
from urllib3.exceptions import (ConnectTimeoutError, MaxRetryError, NameResolutionError, NewConnectionError,
                                ProtocolError, ProxyError, ReadTimeoutError)
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


def _pools(urlopen):
    """A stand-in for :func:`gateway.http_pools` whose every pool manager's ``urlopen`` is ``urlopen``."""
    return lambda: SimpleNamespace(manager_for=lambda url: SimpleNamespace(urlopen=urlopen))


def _failing(exc: Exception):
    """Connection pools whose Refund/Create call raises ``exc`` (as urllib3 does, retries being off)."""
    def urlopen(method, url, **kwargs):
        if "Refund/Create" in url:
            raise exc
        raise AssertionError(f"unexpected call to {url}")
    return _pools(urlopen)


def test_refund_to_a_closed_port_fails_and_gives_the_money_back(app, client_user):
    p = _paid_payment(app, client_user, f"http://127.0.0.1:{_closed_port()}/rk/Merchant/Index.aspx")
    outcome = refunds.refund_payment(p.id, Decimal("40.00"), ADMIN, "customer asked")
    assert outcome.state == "failed" and "could not be sent" in outcome.info
    assert _money(p.id) == ("paid", Decimal("0.00"), Decimal("100.00"))
    assert _refund(p.id).status == "failed"


def _name_not_resolved() -> Exception:
    return NameResolutionError("services.robokassa.invalid", None, socket.gaierror("Name or service not known"))


def _connect_timeout() -> Exception:
    return ConnectTimeoutError(None, "Connection to services.robokassa.ru timed out. (connect timeout=10)")


@pytest.mark.parametrize("make", [_name_not_resolved, _connect_timeout], ids=["dns", "connect-timeout"])
def test_refund_never_sent_fails(app, client_user, fake, monkeypatch, make):
    p = _paid_payment(app, client_user, fake.url)
    monkeypatch.setattr(gateway, "http_pools", _failing(make()))
    outcome = refunds.refund_payment(p.id, Decimal("40.00"), ADMIN, None)
    assert outcome.state == "failed" and "nothing was refunded" in outcome.info
    assert _money(p.id) == ("paid", Decimal("0.00"), Decimal("100.00"))


def _answering(status: int, content: bytes = b"error"):
    """Connection pools whose every answer has this HTTP status and body."""
    return _pools(lambda method, url, **kwargs: urllib3.HTTPResponse(
        body=io.BytesIO(content), status=status, preload_content=False,
        headers={"Content-Type": "application/json; charset=utf-8"}))


def _read_timeout() -> Exception:
    return ReadTimeoutError(None, "/RefundService/Refund/Create", "read timed out")


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
            patch.setattr(gateway, "http_pools", _failing(_read_timeout()))
        elif how == "http-502":
            patch.setattr(gateway, "http_pools", _answering(502, b"Bad Gateway"))
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
    assert gateway._never_sent(_connect_timeout())
    assert not gateway._never_sent(_read_timeout())
    assert not gateway._never_sent(ProtocolError("Connection aborted."))  # dropped after sending


# --- what counts as "never sent" -----------------------------------------------------------------------


def _ssl_error(cause: ssl.SSLError) -> Exception:
    """What urllib3 raises for a TLS failure with retries off: its SSLError around the ssl module's."""
    return Urllib3SSLError(cause)


def _tls_eof() -> Exception:  # the connection dropped while reading the answer, after sending
    return _ssl_error(ssl.SSLEOFError(8, "EOF occurred in violation of protocol (_ssl.c:2427)"))


def _reset() -> Exception:
    return ProtocolError("Connection aborted.", ConnectionResetError(104, "Connection reset by peer"))


def test_tls_failure_after_sending_is_not_never_sent():
    assert not gateway._never_sent(_tls_eof())
    assert not gateway._never_sent(_ssl_error(ssl.SSLError(1, "[SSL: DECRYPTION_FAILED_OR_BAD_RECORD_MAC]")))
    assert not gateway._never_sent(_reset())
    assert not gateway._never_sent(Urllib3SSLError("bare"))
    # a certificate refused in the handshake: provably before the request left
    verify = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    assert gateway._never_sent(_ssl_error(verify))
    assert gateway._never_sent(NewConnectionError(None, "Failed to establish a new connection: [Errno 111]"))
    assert gateway._never_sent(ConnectionRefusedError(111, "refused"))
    # wrapped, as urllib3 does when retries are on: the reason is what counts
    assert gateway._never_sent(MaxRetryError(None, "/x", ConnectionRefusedError(111, "refused")))
    assert not gateway._never_sent(MaxRetryError(None, "/x", _read_timeout()))
    # a proxy: never reached is never sent; dropped by it after the request went through may have been
    assert gateway._never_sent(ProxyError("Unable to connect to proxy", NewConnectionError(None, "refused")))
    assert not gateway._never_sent(ProxyError("Unable to connect to proxy", _reset()))


@pytest.mark.parametrize("make", [_tls_eof, _reset], ids=["tls-eof", "reset"])
def test_refund_dropped_after_sending_stays_pending(app, client_user, fake, monkeypatch, make):
    p = _paid_payment(app, client_user, fake.url)
    monkeypatch.setattr(gateway, "http_pools", _failing(make()))
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
    monkeypatch.setattr(gateway, "http_pools", _answering(
        status, b'{"success":false,"message":"RefundNotAllowed","requestId":null}'))
    outcome = refunds.refund_payment(p.id, Decimal("40.00"), ADMIN, None)
    assert outcome.state == state
    if state == "failed":
        assert f"HTTP {status}" in outcome.info
        assert _money(p.id) == ("paid", Decimal("0.00"), Decimal("100.00"))
    else:  # it may have been acted on: the money stays held for an admin
        assert "may have been made" in outcome.info
        assert _money(p.id) == ("pending_return", Decimal("40.00"), Decimal("60.00"))
