"""The batch jobs against a slow gateway: bounded concurrent calls, reused connections, two hosts sharing
one sweep, and the sandbox's latency knob."""
from __future__ import annotations

import base64
import threading
import time
from collections import Counter
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
import urllib3
from flask import Flask

from billcore.db import db, is_sqlite
from billcore.payments import service
from billcore.payments.sweep import sweep
from billcore.testing.fixtures import FAST_SHUTDOWN, add_paymethod, run_together
from pmrobokassa import gateway, protocol
from pmrobokassa.sandbox import latency

from .fakegateway import FakeGateway, Server
from .helpers import SETTINGS, reload

pytestmark = pytest.mark.filterwarnings("ignore:The HMAC key is")


class SlowGateway(FakeGateway):
    """The fake gateway answering after ``delay`` seconds; counts the calls in flight and the client
    callers' ports it saw."""

    def __init__(self, delay: float = 0.0):
        super().__init__()
        self.delay = delay
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = 0
        self.ports: set[str] = set()

    def __call__(self, environ, start_response):
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.ports.add(environ.get("REMOTE_PORT", ""))
        try:
            time.sleep(self.delay)
            return super().__call__(environ, start_response)
        finally:
            with self.lock:
                self.in_flight -= 1


@pytest.fixture
def slow():
    gw = SlowGateway(delay=0.1)
    with Server(gw) as server:
        gw.url = f"{server.base}/rk/Merchant/Index.aspx"
        yield gw


@pytest.fixture
def app_config() -> dict:
    return {"GATEWAY_WORKERS": {"pmrobokassa": 4}}


def _inpay(account_id: int, method_id: int) -> int:
    p = service.create_payment(account_id, method_id, Decimal("100.00"))
    service.set_in_pay(p.id, source="test")
    return p.id


def _asked(gw: FakeGateway) -> Counter:
    return Counter(params["InvoiceID"] for path, params in gw.requests if path.endswith("OpStateExt"))


class _KeepAlive(BaseHTTPRequestHandler):
    """An HTTP/1.1 server that keeps connections open (werkzeug's closes every one) and answers every
    OpStateExt with "no operation"; records the client ports it served."""

    protocol_version = "HTTP/1.1"
    ports: set[int] = set()

    def do_POST(self):  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).ports.add(self.client_address[1])
        body = protocol.build_opstate_xml(protocol.OpState(result_code=3, description="no operation")).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_calls_reuse_one_connection_per_thread(app):
    _KeepAlive.ports = set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KeepAlive)
    threading.Thread(target=server.serve_forever, kwargs=FAST_SHUTDOWN, daemon=True).start()
    settings = {**SETTINGS, "url": f"http://127.0.0.1:{server.server_port}/rk/Merchant/Index.aspx"}
    gateway.close_http_pools()
    try:
        for inv_id in range(1, 6):
            assert gateway.op_state(settings, inv_id).result_code == 3
        assert len(_KeepAlive.ports) == 1  # five calls, one TCP connection

        def other_thread():
            with app.app_context():
                try:
                    gateway.op_state(settings, 9)
                finally:
                    gateway.close_http_pools()

        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join(10)
        assert len(_KeepAlive.ports) == 2  # another thread has its own pools (they are not shared)
    finally:
        gateway.close_http_pools()
        server.shutdown()
        server.server_close()



def test_the_environment_is_read_once_per_host_and_its_proxy_still_applies(app, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://user:p%40ss@proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    gateway.close_http_pools()
    try:
        pools = gateway.http_pools()
        url = "https://auth.robokassa.ru/Merchant/WebService/Service.asmx/OpStateExt"
        assert pools.proxy_for(url) == "http://user:p%40ss@proxy.example:3128"
        manager = pools.manager_for(url)
        # the proxy's credentials go in Proxy-Authorization, decoded (what requests did with them)
        assert manager.proxy.host == "proxy.example" and manager.proxy_headers["proxy-authorization"] \
            == "Basic " + base64.b64encode(b"user:p@ss").decode()
        monkeypatch.setenv("HTTPS_PROXY", "http://other.example:3128")
        # the same host: remembered (a batch job's environment does not change while it runs)
        assert pools.proxy_for("https://auth.robokassa.ru/Merchant/Index.aspx?a=1") == \
            "http://user:p%40ss@proxy.example:3128"
        assert pools.manager_for(url) is manager
        # a host the environment exempts goes without the proxy
        assert pools.proxy_for("https://internal.example/x") is None
        assert not isinstance(pools.manager_for("https://internal.example/x"), urllib3.ProxyManager)
        # another host: read afresh
        assert pools.proxy_for("https://example.org/") == "http://other.example:3128"
    finally:
        gateway.close_http_pools()

def test_sweep_asks_concurrently_within_the_bound_and_each_payment_once(app, slow, client_user):
    method = add_paymethod("pmrobokassa", {**SETTINGS, "url": slow.url})
    ids = [_inpay(client_user.account_id, method.id) for _ in range(12)]
    paid = ids[3]
    slow.states[paid] = protocol.OpState(0, state_code=100, op_key="OK-P", out_sum=Decimal("100"))
    slow.states[ids[5]] = protocol.OpState(0, state_code=50, op_key="OK-W")
    result = sweep(["pmrobokassa"])
    assert slow.max_in_flight == 4  # GATEWAY_WORKERS: never more, and the pool is used
    assert _asked(slow) == Counter({str(i): 1 for i in ids})
    # the module reports "no operation" as still pending
    assert (result.checked, result.paid, result.unchanged, result.error_count) == (12, 1, 11, 0)
    assert reload(paid).status == "paid" and reload(ids[5]).status == "inpay"


def test_one_worker_runs_in_the_callers_thread(app, slow, client_user):
    app.config["GATEWAY_WORKERS"] = {"pmrobokassa": 1}
    method = add_paymethod("pmrobokassa", {**SETTINGS, "url": slow.url})
    ids = [_inpay(client_user.account_id, method.id) for _ in range(3)]
    sweep(["pmrobokassa"])
    assert slow.max_in_flight == 1 and _asked(slow) == Counter({str(i): 1 for i in ids})


def test_an_exception_in_one_item_does_not_stop_the_pool(app, slow, client_user, monkeypatch):
    method = add_paymethod("pmrobokassa", {**SETTINGS, "url": slow.url})
    ids = [_inpay(client_user.account_id, method.id) for _ in range(6)]
    slow.states.update({i: protocol.OpState(0, state_code=100, op_key=f"K{i}", out_sum=Decimal("100")) for i in ids})
    from billcore.payments import sweep as sweep_module

    real = sweep_module.check_payment
    broken = ids[2]

    def flaky(payment_id, source, **options):
        if payment_id == broken:
            raise RuntimeError("a module bug")
        return real(payment_id, source, **options)

    monkeypatch.setattr(sweep_module, "check_payment", flaky)
    result = sweep(["pmrobokassa"])
    assert result.errors == [f"payment {broken}: unexpected RuntimeError (see the log)"]
    assert result.paid == 5
    assert [reload(i).status for i in ids] == ["paid", "paid", "inpay", "paid", "paid", "paid"]


def test_two_hosts_sweeping_together_share_the_payments(app, slow, client_user):
    if is_sqlite(db.engine):
        pytest.skip("advisory-lock claims exist on PostgreSQL only; SQLite serves a single host")
    method = add_paymethod("pmrobokassa", {**SETTINGS, "url": slow.url})
    ids = [_inpay(client_user.account_id, method.id) for _ in range(16)]
    slow.states.update({i: protocol.OpState(0, state_code=50, op_key=f"K{i}") for i in ids})  # all still open
    # small batches, so each host's SKIP LOCKED selection mostly finds rows the other has not taken
    first, second = run_together(app, [lambda: sweep(["pmrobokassa"], batch=4), lambda: sweep(["pmrobokassa"], batch=4)])
    assert _asked(slow) == Counter({str(i): 1 for i in ids})  # every payment asked, nobody asked twice
    assert first.checked + second.checked == 16
    assert first.checked > 0 and second.checked > 0  # both hosts did part of the work
    assert first.error_count == second.error_count == 0


def test_a_host_holding_some_payments_leaves_the_rest_of_the_method_to_another(app, client_user):
    """The sweep's candidate lock covers the swept rows only: while one host holds a batch, a second host
    still finds the method's other payments (locking the joined payment-method row made it find none)."""
    if is_sqlite(db.engine):
        pytest.skip("row locks with SKIP LOCKED exist on PostgreSQL only; SQLite serves a single host")
    from billcore.models import Payment, PaymentMethod
    from billcore.payments.sweep import _candidates, locked_candidates
    from sqlalchemy import select

    method = add_paymethod("pmrobokassa", dict(SETTINGS))
    ids = [_inpay(client_user.account_id, method.id) for _ in range(8)]

    def candidates():
        return (select(Payment.id).join(PaymentMethod, PaymentMethod.id == Payment.paymethod_id)
                .where(PaymentMethod.module == "pmrobokassa", Payment.status == service.INPAY)
                .order_by(Payment.id))

    with db.engine.connect() as other_host:  # the first host, caught while it holds its batch of four
        held = list(other_host.execute(locked_candidates(candidates()).limit(4)).scalars())
        assert held == ids[:4]
        assert _candidates(candidates(), 4) == ids[4:]  # the second host gets the other four
        other_host.rollback()


def test_recurring_run_charges_concurrently_within_the_bound(app, slow, client_user):
    from billcore import recurring

    method = add_paymethod("pmrobokassa", {**SETTINGS, "url": slow.url}, recurring=True)
    now = recurring.utcnow()
    profile_ids = []
    for _ in range(8):
        parent = service.create_payment(client_user.account_id, method.id, Decimal("10.00"))
        recurring.mark_parent(parent.id)
        service.set_paid(parent.id, amount=Decimal("10.00"), currency="RUB", source="test")
        profile_ids.append(recurring.create_profile(parent.id, account_id=client_user.account_id, rule="threshold",
                                                    amount="50", threshold="1000", monthly_max="500", now=now).id)
    result = recurring.run_due(now)
    charged = [params["PreviousInvoiceID"] for path, params in slow.requests if path.endswith("/Merchant/Recurring")]
    assert len(charged) == 8 and len(set(charged)) == 8  # every profile once
    assert 2 <= slow.max_in_flight <= 4
    assert sorted(c[0] for c in result.charges) == sorted(profile_ids)
    assert {c[3] for c in result.charges} == {"accepted"} and not result.errors


# --- the sandbox's latency knob ------------------------------------------------------------------------


def test_latency_knob_parses_and_refuses_mistakes():
    table = latency.parse({"*": {"delay": 0.2}, "Recurring": {"delay": 0.5, "jitter": 0.1, "timeouts": 0.25}})
    assert table["*"] == latency.Latency(delay=0.2)
    assert latency.for_endpoint({"*": {"delay": 0.2}}, "OpStateExt") == latency.Latency(delay=0.2)
    assert latency.for_endpoint({"Recurring": {"delay": 1}}, "OpStateExt") is None
    for bad in ({"OpState": {"delay": 1}}, {"*": {"delay": -1}}, {"*": {"timeouts": 2}}, {"*": {"dealy": 1}},
                {"*": {"delay": "slow"}}, {"*": 0.2}):
        with pytest.raises(ValueError, match="PMROBOKASSA_SANDBOX_LATENCY"):
            latency.parse(bad)


def test_latency_knob_timeouts_share_and_jitter():
    import random

    rng = random.Random(7)
    knob = latency.Latency(timeouts=0.3, hang=0)
    hung = sum(knob.wait(rng) for _ in range(2000))
    assert 500 <= hung <= 700  # about 30 %
    assert not latency.Latency(delay=0, jitter=0).wait(rng)


def test_sandbox_answers_slowly_or_times_out_as_configured(tmp_path, monkeypatch):
    from billcore.testing.fixtures import make_app

    slept: list[float] = []
    monkeypatch.setattr(latency, "time", SimpleNamespace(sleep=slept.append))  # record the waits, don't wait
    sandbox: Flask = make_app(tmp_path, f"sqlite:///{tmp_path / 'sb.sqlite'}", PMROBOKASSA_SANDBOX=True,
                              PMROBOKASSA_SANDBOX_LATENCY={"*": {"delay": 0.3},
                                                           "Refund/GetState": {"timeouts": 1, "hang": 7}})
    client = sandbox.test_client()
    answer = client.post("/sandbox/robokassa/Merchant/WebService/Service.asmx/OpStateExt",
                         data={"MerchantLogin": "nobody", "InvoiceID": "1", "Signature": "x"})
    assert answer.status_code == 200 and b"<Result>" in answer.data and slept == [0.3]
    assert client.get("/sandbox/robokassa/RefundService/Refund/GetState?id=1").status_code == 504
    assert slept == [0.3, 7.0]
    assert client.get("/sandbox/robokassa/").status_code == 200
    assert slept == [0.3, 7.0]  # pages (and notifications) are never slowed
