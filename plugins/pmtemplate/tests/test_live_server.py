"""The fake gateway against a real (single-threaded) HTTP server, notifying billcore over HTTP."""
from __future__ import annotations

import threading
import time
from decimal import Decimal

import requests
from werkzeug.serving import make_server

from billcore.accounts import create_client
from billcore.db import db
from billcore.payments import service
from billcore.testing.fixtures import CLIENT, FAST_SHUTDOWN, add_paymethod, make_app

from .helpers import SETTINGS, balance, fresh


def test_http_notification_on_a_single_threaded_server(tmp_path):
    app = make_app(tmp_path, f"sqlite:///{tmp_path / 'live.sqlite'}", BASE_URL="http://127.0.0.1",
                   PMTEMPLATE_NOTIFY_HTTP=True)
    server = make_server("127.0.0.1", 0, app, threaded=False)  # one request at a time
    base = f"http://127.0.0.1:{server.server_port}"
    app.config["BASE_URL"] = base
    thread = threading.Thread(target=server.serve_forever, kwargs=FAST_SHUTDOWN, daemon=True)
    thread.start()
    try:
        with app.app_context():
            user = create_client(*CLIENT, currency="RUB")
            method = add_paymethod("pmtemplate", dict(SETTINGS))
            payment = service.create_payment(user.account_id, method.id, Decimal("42.00"))
            account_id = user.account_id
        web = requests.Session()
        web.trust_env = False
        assert web.post(f"{base}/login", data={"email": CLIENT[0], "password": CLIENT[1]},
                        allow_redirects=False, timeout=10).status_code == 302
        # the payment page's Pay button: billcore's payment door sends the browser to the (fake) gateway
        to_gateway = web.post(f"{base}/payments/{payment.id}/pay", allow_redirects=False, timeout=10)
        assert to_gateway.status_code == 302
        page = web.get(base + to_gateway.headers["Location"], timeout=10)
        assert page.status_code == 200 and "Leave pending" in page.text
        from urllib.parse import parse_qsl, urlsplit

        params = dict(parse_qsl(urlsplit(to_gateway.headers["Location"]).query))
        paid = web.post(f"{base}/fakegw/pay", data={**params, "action": "pay"}, allow_redirects=False, timeout=10)
        assert paid.status_code == 302 and paid.headers["Location"].startswith(f"{base}/mancgi/tplsuccess")
        with app.app_context():
            deadline = time.monotonic() + 15
            while fresh(payment.id).status != "paid" and time.monotonic() < deadline:
                time.sleep(0.1)
            assert fresh(payment.id).status == "paid"
            assert balance(account_id) == Decimal("42.00")
            db.session.remove()
        # the server writes the log line after committing the credit, so it may come a moment later
        log = tmp_path / "instance" / "var" / "tplresult.log"
        deadline = time.monotonic() + 15
        while not (log.is_file() and f"payment {payment.id}" in log.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert log.read_text().count(f"payment {payment.id}") == 1
    finally:
        server.shutdown()
        thread.join(5)
        with app.app_context():
            db.engine.dispose()
