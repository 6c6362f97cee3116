"""The same genuine notification sent 20 times at once to a running server credits exactly once."""
from __future__ import annotations

import threading
from decimal import Decimal

import requests

from billcore.db import db
from billcore.models import Account, PaymentEvent
from billcore.payments import service

from .fakegateway import Server
from .helpers import ledger_count, reload, result_params

PARALLEL = 20


def test_parallel_notifications_credit_once(app, client_user, payment):
    """Runs on SQLite and, with BILLCORE_TEST_DATABASE_URL set, on PostgreSQL (the case that matters)."""
    service.set_in_pay(payment.id, source="test")
    params = result_params(payment.id)
    answers: list[tuple[int, str]] = []
    lock = threading.Lock()
    with Server(app, threaded=True) as server:
        start = threading.Barrier(PARALLEL)

        def notify() -> None:
            start.wait()
            response = requests.post(f"{server.base}/mancgi/rkresult", data=params, timeout=60)
            with lock:
                answers.append((response.status_code, response.text))

        threads = [threading.Thread(target=notify) for _ in range(PARALLEL)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(90)
    assert answers == [(200, f"OK{payment.id}")] * PARALLEL
    assert reload(payment.id).status == "paid"
    assert ledger_count(payment.id) == 1
    db.session.expire_all()
    assert db.session.get(Account, client_user.account_id).balance == Decimal("100.00")
    credited = db.session.query(PaymentEvent).filter_by(payment_id=payment.id, source="rkresult",
                                                        status_to="paid").count()
    assert credited == 1
