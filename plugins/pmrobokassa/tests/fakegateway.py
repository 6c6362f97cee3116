"""A tiny stand-in for Robokassa's web services on 127.0.0.1 (until the sandbox tests take over).

It serves OpStateExt and GetCurrencies (XML built with the protocol module), Refund/Create and
Refund/GetState (JSON, JWT checked with Password #3) and Merchant/Recurring, all under ``/rk``, and
remembers every request so tests can look at what billcore sent.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from billcore.testing.fixtures import FAST_SHUTDOWN
from pmrobokassa import protocol

from .helpers import LOGIN, P1, P2, P3


@dataclass
class FakeGateway:
    """Scripted answers and the requests received."""

    states: dict[int, protocol.OpState] = field(default_factory=dict)
    refund_labels: dict[str, str] = field(default_factory=dict)
    refund_failure: str | None = None
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    refund_payloads: list[dict[str, Any]] = field(default_factory=list)
    refund_requests: list[tuple[str, bytes]] = field(default_factory=list)  # (content type, body)
    recurring_answer: tuple[int, str] | None = None  # (status, body) instead of OK<InvoiceID>
    refund_http_error: tuple[int, str] | None = None  # (status, body) instead of Refund/Create's answer
    currencies_status: int = 200
    url: str = ""

    def __call__(self, environ, start_response):
        request = Request(environ)
        path = request.path.removeprefix("/rk")
        params = dict(request.values.items())
        self.requests.append((path, params))
        if path == "/Merchant/WebService/Service.asmx/OpStateExt":
            response = self._opstate(params)
        elif path == "/Merchant/WebService/Service.asmx/GetCurrencies":
            response = self._currencies(params)
        elif path == "/RefundService/Refund/Create":
            self.refund_requests.append((request.mimetype, request.get_data()))
            response = self._refund_create(request)
        elif path == "/RefundService/Refund/GetState":
            label = self.refund_labels.get(params.get("id", ""))
            state = protocol.RefundState(params.get("id") if label else None, Decimal("1") if label else None, label)
            response = Response(protocol.build_refund_state_answer(state), mimetype="application/json")
        elif path == "/Merchant/Recurring":
            expected = protocol.recurring_signature("md5", merchant_login=LOGIN, out_sum=params.get("OutSum", ""),
                                                    inv_id=params.get("InvoiceID", "0") or "0", password1=P1,
                                                    receipt=params.get("Receipt"))
            ok = protocol.signatures_match(expected, params.get("SignatureValue"))
            if self.recurring_answer is not None:
                response = Response(self.recurring_answer[1], status=self.recurring_answer[0], mimetype="text/plain")
            else:
                response = Response(f"OK{params['InvoiceID']}" if ok else "ERROR 29", status=200 if ok else 400,
                                    mimetype="text/plain")
        else:
            response = Response("not found", status=404)
        return response(environ, start_response)

    def _opstate(self, params: dict[str, str]) -> Response:
        inv_id = params.get("InvoiceID", "")
        expected = protocol.opstate_signature("md5", LOGIN, inv_id, P2)
        if params.get("MerchantLogin") != LOGIN:
            state = protocol.OpState(result_code=2, description="shop not found")
        elif not protocol.signatures_match(expected, params.get("Signature")):
            state = protocol.OpState(result_code=1, description="bad signature")
        else:
            state = self.states.get(int(inv_id) if inv_id.isdigit() else 0,
                                    protocol.OpState(result_code=3, description="no operation"))
        return Response(protocol.build_opstate_xml(state), mimetype="text/xml")

    def _currencies(self, params: dict[str, str]) -> Response:
        if self.currencies_status != 200:
            return Response("down", status=self.currencies_status)
        groups = [protocol.CurrencyGroup("BankCard", "Банковская карта", (
            protocol.Currency("FakeCardPSR", "BankCard", "Fake card"),)),
            protocol.CurrencyGroup("Mobile", "Mobile", (protocol.Currency("FakeMtsR", "MTS", "Fake MTS"),))]
        return Response(protocol.build_currencies_xml(groups), mimetype="text/xml")

    def _refund_create(self, request: Request) -> Response:
        if self.refund_http_error is not None:
            return Response(self.refund_http_error[1], status=self.refund_http_error[0])
        try:
            token = json.loads(request.get_data(as_text=True)) if request.mimetype == "application/json" else None
        except ValueError:
            token = None
        if not isinstance(token, str):  # the one form the real service is known to take
            return Response(protocol.build_refund_create_answer(False, message="Signature key is not exists"),
                            status=400, mimetype="application/json")
        try:
            payload = protocol.verify_refund_jwt(token, P3)
        except protocol.ProtocolError:
            return Response(protocol.build_refund_create_answer(False, message="InvalidToken"),
                            mimetype="application/json")
        self.refund_payloads.append(payload)
        if self.refund_failure:
            return Response(protocol.build_refund_create_answer(False, message=self.refund_failure),
                            mimetype="application/json")
        request_id = f"req-{len(self.refund_payloads)}"
        self.refund_labels[request_id] = "processing"
        return Response(protocol.build_refund_create_answer(True, request_id=request_id),
                        mimetype="application/json")


class Server:
    """Run a WSGI app on 127.0.0.1 in a thread; ``base`` is its http://127.0.0.1:port address."""

    def __init__(self, wsgi_app, threaded: bool = True):
        self.server = make_server("127.0.0.1", 0, wsgi_app, threaded=threaded)
        self.base = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs=FAST_SHUTDOWN, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.thread.join(5)
        self.server.server_close()
