"""What an attacker sends to the Robokassa routes, and a busy night's locked database, on SQLite and
PostgreSQL: body caps, bounded records of refused callbacks, returns recorded or 503, the unsigned return
answering alike for every id, the redirect script by POST only, odd repeats flagged for an admin."""
from __future__ import annotations

import sqlite3
import threading
import time
from decimal import Decimal

import pytest
from sqlalchemy import create_engine, func, select, text

from billcore.db import db
from billcore.limits import DROPPED, TRUNCATED
from billcore.models import PaymentEvent
from billcore.payments import service
from billcore.testing.fixtures import CLIENT

from .helpers import events, ledger_count, reload, result_params

WAIT_MS = 400


@pytest.fixture
def app_config():
    return {"SQLITE_BUSY_TIMEOUT_MS": WAIT_MS, "POSTGRES_LOCK_TIMEOUT_MS": WAIT_MS}


def _event_count() -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(PaymentEvent))


# ---------------------------------------------------------------------------------------------- bodies


@pytest.mark.parametrize("path", ["/mancgi/rkresult", "/mancgi/rksuccess", "/mancgi/rkfail"])
def test_a_callback_body_over_the_cap_is_413_and_stores_nothing(app, payment, path):
    before = _event_count()
    body = {"InvId": str(payment.id), "x": "A" * (app.config["CALLBACK_MAX_CONTENT_LENGTH"] + 1)}
    response = app.test_client().post(path, data=body)
    assert response.status_code == 413
    assert _event_count() == before and reload(payment.id).status == "new"


def test_the_callback_cap_is_configurable(app, payment):
    app.config["CALLBACK_MAX_CONTENT_LENGTH"] = 100
    response = app.test_client().post("/mancgi/rkresult", data={"InvId": "abc", "x": "A" * 200})
    assert response.status_code == 413


def test_a_refused_notification_keeps_only_known_fields_cut_short(app, payment):
    junk = {f"junk{i}": "J" * 1000 for i in range(5)}
    params = {**result_params(payment.id, password="wrong"), "SignatureValue": "S" * 5000, **junk}
    response = app.test_client().post("/mancgi/rkresult", data=params)
    assert response.status_code == 400
    [event] = events(payment.id, "rkresult")
    data = event.data
    assert data[DROPPED] == 5 and data[TRUNCATED] == ["SignatureValue"]
    assert len(data["SignatureValue"]) == app.config["CALLBACK_FIELD_MAX"]
    assert not any(name.startswith("junk") for name in data)
    assert data["InvId"] == str(payment.id) and data["OutSum"] == "100.000000"


def test_a_flood_of_refused_callbacks_is_recorded_up_to_the_limit(app, payment):
    app.config["CALLBACK_REFUSED_RECORDS"] = "5/minute"
    c = app.test_client()
    for _ in range(20):
        assert c.post("/mancgi/rkresult", data=result_params(payment.id, password="wrong")).status_code == 400
        assert c.post("/mancgi/rkresult", data={"InvId": "abc", "x": "A" * 1000}).status_code == 400
    assert len(events(payment.id, "rkresult")) == 5
    assert len(events(None, "rkresult")) == 5
    # many payments named at once: the total per script is bounded too
    app.config["CALLBACK_REFUSED_RECORDS_TOTAL"] = "12/minute"
    for inv_id in range(payment.id + 1, payment.id + 40):
        c.post("/mancgi/rkresult", data={"InvId": str(inv_id)})
    assert len(events(None, "rkresult")) == 5 + 12  # (each id its own payment key: the total stops them)
    # a genuine notification is still credited and recorded
    assert c.post("/mancgi/rkresult", data=result_params(payment.id)).get_data(as_text=True) == f"OK{payment.id}"
    assert ledger_count(payment.id) == 1


# ------------------------------------------------------------------------------- returns: record or 503


def _hold_write_lock(payment_id: int):
    """Hold what recording an event of ``payment_id`` needs, from outside the app's pool."""
    url = db.engine.url
    if url.get_backend_name() == "sqlite":
        holder = sqlite3.connect(url.database, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        return lambda: (holder.rollback(), holder.close())
    engine = create_engine(url)
    conn = engine.connect()
    conn.execute(text("SELECT id FROM payments WHERE id = :id FOR UPDATE"), {"id": payment_id})

    def release():
        conn.rollback()
        conn.close()
        engine.dispose()

    return release


def _release_later(release, seconds: float = 8.0) -> threading.Timer:
    timer = threading.Timer(seconds, release)  # an unfixed app waits for the lock: the test still ends
    timer.start()
    return timer


@pytest.mark.parametrize("path", ["/mancgi/rkfail", "/mancgi/rksuccess"])
def test_a_return_that_cannot_be_recorded_is_503_not_a_silent_redirect(app, client_client, payment, path):
    from .helpers import success_params

    params = success_params(payment.id) if path.endswith("rksuccess") else {"InvId": str(payment.id)}
    before = len(events(payment.id, path.rsplit("/", 1)[1]))
    db.session.rollback()
    release = _hold_write_lock(payment.id)
    timer = _release_later(release)
    try:
        started = time.monotonic()
        response = client_client.post(path, data=params)
        elapsed = time.monotonic() - started
    finally:
        timer.cancel()
        release()
    assert response.status_code == 503 and elapsed < 5
    assert len(events(payment.id, path.rsplit("/", 1)[1])) == before
    assert client_client.post(path, data=params).status_code == 302  # once the lock is gone: recorded
    assert len(events(payment.id, path.rsplit("/", 1)[1])) == before + 1


def test_a_locked_payment_gets_billcores_503_well_before_the_worker_timeout(app, payment):
    service.set_in_pay(payment.id, source="test")
    db.session.rollback()
    release = _hold_write_lock(payment.id)
    timer = _release_later(release)
    try:
        started = time.monotonic()
        response = app.test_client().post("/mancgi/rkresult", data=result_params(payment.id))
        elapsed = time.monotonic() - started
    finally:
        timer.cancel()
        release()
    assert response.status_code == 503 and elapsed < 5
    assert reload(payment.id).status == "inpay" and ledger_count(payment.id) == 0


# ------------------------------------------------------------------------------- the unsigned return


def test_the_fail_return_answers_alike_whatever_the_id(app, client_user, payment):
    from billcore.testing.fixtures import add_paymethod

    other = add_paymethod("pmtemplate", {"secret": "template-secret-1"})
    foreign = service.create_payment(client_user.account_id, other.id, Decimal("10.00"))
    anonymous = app.test_client()
    answers = []
    for inv_id in (payment.id, foreign.id, 999999, 2147483647):
        response = anonymous.get(f"/mancgi/rkfail?InvId={inv_id}")
        answers.append((response.status_code, response.headers["Location"].replace(str(inv_id), "N")))
    assert set(answers) == {(302, "/payments/N/return/fail")}


# ------------------------------------------------------------------------------- the redirect script


def test_a_link_to_the_redirect_script_only_shows_a_button(app, client_client, payment):
    page = client_client.get(f"/mancgi/rkpayment?elid={payment.id}")
    assert page.status_code == 200 and 'method="post"' in page.get_data(as_text=True)
    assert reload(payment.id).status == "new"  # a GET changes nothing


def test_the_redirect_script_refuses_a_post_without_the_csrf_token(app, client_user, payment):
    app.config["WTF_CSRF_ENABLED"] = True
    c = app.test_client()
    page = c.get("/login")
    import re

    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    assert c.post("/login", data={"email": CLIENT[0], "password": CLIENT[1], "csrf_token": token}).status_code == 302
    assert c.post("/mancgi/rkpayment", data={"elid": str(payment.id)}).status_code == 400
    assert reload(payment.id).status == "new"
    button = c.get(f"/mancgi/rkpayment?elid={payment.id}").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', button).group(1)
    assert c.post("/mancgi/rkpayment", data={"elid": str(payment.id), "csrf_token": token}).status_code == 200
    assert reload(payment.id).status == "inpay"


# ------------------------------------------------------------------------------- odd repeats


def test_a_signed_repeat_with_another_amount_is_answered_ok_and_flagged(app, admin_client, payment):
    c = app.test_client()
    assert c.post("/mancgi/rkresult", data=result_params(payment.id)).get_data(as_text=True) == f"OK{payment.id}"
    odd = c.post("/mancgi/rkresult", data=result_params(payment.id, "41.00"))
    assert odd.status_code == 200 and odd.get_data(as_text=True) == f"OK{payment.id}"  # as the protocol needs
    assert reload(payment.id).status == "paid" and ledger_count(payment.id) == 1
    flagged = [e for e in events(payment.id, "rkresult") if e.kind == service.ATTENTION]
    assert len(flagged) == 1 and "amount mismatch" in flagged[0].outcome
    page = admin_client.get(f"/admin/payments/{payment.id}").get_data(as_text=True)
    assert 'data-testid="attention"' in page
    # a plain repeat is no cause for attention
    c.post("/mancgi/rkresult", data=result_params(payment.id))
    assert len([e for e in events(payment.id, "rkresult") if e.kind == service.ATTENTION]) == 1


def test_the_checkout_sends_the_clients_own_csrf_token_to_the_redirect_script(app, client_user, payment):
    """The start hook makes no token; the checkout's redirect page adds the session's, and it works."""
    import re

    app.config["WTF_CSRF_ENABLED"] = True
    c = app.test_client()
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', c.get("/login").get_data(as_text=True)).group(1)
    assert c.post("/login", data={"email": CLIENT[0], "password": CLIENT[1], "csrf_token": token}).status_code == 302
    page = c.get(f"/payments/{payment.id}").get_data(as_text=True)
    token = re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', page).group(1)
    to_script = c.post(f"/payments/{payment.id}/pay", data={"csrf_token": token}).get_data(as_text=True)
    form = to_script[to_script.index('action="/mancgi/rkpayment"'):]
    form = form[:form.index("</form>")]
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form))
    assert set(fields) == {"elid", "csrf_token"} and fields["elid"] == str(payment.id)
    assert c.post("/mancgi/rkpayment", data=fields).status_code == 200  # the signed form to Robokassa
    assert reload(payment.id).status == "inpay"
