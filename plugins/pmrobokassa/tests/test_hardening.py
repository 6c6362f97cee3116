"""What an attacker sends to the Robokassa routes, and a busy night's locked database, on SQLite and
PostgreSQL: body caps, bounded records of refused callbacks, returns recorded or 503, the unsigned return
answering alike for every id, the start by POST with the CSRF token only (and that token never sent to
Robokassa), odd repeats flagged for an admin."""
from __future__ import annotations

import re
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
    # unknown ids are recorded without a payment, under one key: naming many of them records no more
    for inv_id in range(payment.id + 1000, payment.id + 1040):
        assert c.post("/mancgi/rkresult", data={"InvId": str(inv_id)}).status_code == 404
    assert len(events(None, "rkresult")) == 5
    # many real payments named at once: the total per script is bounded too
    app.config["CALLBACK_REFUSED_RECORDS_TOTAL"] = "12/minute"
    others = [service.create_payment(payment.account_id, payment.paymethod_id, Decimal("1.00")).id
              for _ in range(20)]
    for other in others:
        assert c.post("/mancgi/rkresult", data=result_params(other, "1.00", password="wrong")).status_code == 400
    assert sum(len(events(other, "rkresult")) for other in others) == 12  # (each its own key: the total stops them)
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


# ------------------------------------------------------------------------------- the start, through the core


TOKEN_RE = re.compile(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"')
FIELD_RE = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


def _logged_in_with_csrf(app):
    """A client's browser with CSRF protection on, logged in; the token of its session."""
    app.config["WTF_CSRF_ENABLED"] = True
    c = app.test_client()
    token = TOKEN_RE.search(c.get("/login").get_data(as_text=True)).group(1)
    assert c.post("/login", data={"email": CLIENT[0], "password": CLIENT[1], "csrf_token": token}).status_code == 302
    return c


def test_a_link_starts_no_payment(app, client_client, payment):
    """The old redirect script is gone; a link can only reach the payment's page, whose Pay button is a
    POST: no GET sends a payment to Robokassa or marks it inpay."""
    assert client_client.get(f"/mancgi/rkpayment?elid={payment.id}").status_code == 404
    assert client_client.get(f"/payments/{payment.id}/pay").status_code == 405
    page = client_client.get(f"/payments/{payment.id}").get_data(as_text=True)
    assert f'<form method="post" action="/payments/{payment.id}/pay"' in page and "MerchantLogin" not in page
    assert reload(payment.id).status == "new"  # a GET changes nothing


def test_the_start_refuses_a_post_without_the_csrf_token(app, client_user, payment):
    c = _logged_in_with_csrf(app)
    refused = c.post(f"/payments/{payment.id}/pay")
    assert refused.status_code == 400 and "MerchantLogin" not in refused.get_data(as_text=True)
    assert reload(payment.id).status == "new"
    page = c.get(f"/payments/{payment.id}").get_data(as_text=True)
    to_robokassa = c.post(f"/payments/{payment.id}/pay", data={"csrf_token": TOKEN_RE.search(page).group(1)})
    assert to_robokassa.status_code == 200 and "MerchantLogin" in to_robokassa.get_data(as_text=True)
    assert reload(payment.id).status == "inpay"


def test_the_clients_csrf_token_never_goes_to_robokassa(app, client_user, payment):
    """The form the core posts to Robokassa carries the signed payment fields and nothing of the
    session: another site must never see the client's token."""
    c = _logged_in_with_csrf(app)
    token = TOKEN_RE.search(c.get(f"/payments/{payment.id}").get_data(as_text=True)).group(1)
    html = c.post(f"/payments/{payment.id}/pay", data={"csrf_token": token}).get_data(as_text=True)
    form = html[html.index('action="https://auth.robokassa.ru/Merchant/Index.aspx"'):]
    form = form[:form.index("</form>")]
    fields = dict(FIELD_RE.findall(form))
    assert set(fields) == {"MerchantLogin", "OutSum", "InvId", "Description", "SignatureValue", "Culture",
                           "Encoding", "Email"}
    assert token not in form and "csrf_token" not in form
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
