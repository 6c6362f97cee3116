"""The payment door's gateway side (billcore/callbacks.py): ``gateway_callback`` and ``gateway_return``,
through the views of ``tests/fake_callback_module.py`` (module ``pmcallback``)."""
from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from billcore import callbacks
from billcore.db import db
from billcore.models import Account, Payment, PaymentEvent
from billcore.payments import service
from tests import fake_callback_module as fake
from tests.conftest import add_paymethod

SECRET = "callback-s3cr3t"
SOURCE = fake.SOURCE


@pytest.fixture
def app_config():
    """The fake callback module beside the real ones."""
    fake.reset()
    return {"EXTRA_MODULES": {fake.KEY: "tests.fake_callback_module"}}


@pytest.fixture
def method(app):
    """A method of the fake module, without an address allow-list."""
    return add_paymethod(fake.KEY, {"secret": SECRET}, name="Callbacks")


@pytest.fixture
def payment(client_user, method):
    """A ``new`` payment of 100.00 of the fake module."""
    return service.create_payment(client_user.account_id, method.id, Decimal("100.00"))


def _signed(payment_id, amount: str = "100.00", **extra) -> dict[str, str]:
    return {"order": str(payment_id), "amount": amount, "sign": fake.signature(SECRET, str(payment_id)), **extra}


def _status(payment_id: int) -> str:
    db.session.expire_all()
    return db.session.get(Payment, payment_id).status


def _balance(account_id: int) -> Decimal:
    db.session.expire_all()
    return db.session.get(Account, account_id).balance


def _events(source: str) -> list[PaymentEvent]:
    db.session.expire_all()
    return db.session.execute(select(PaymentEvent).where(PaymentEvent.source == source)
                              .order_by(PaymentEvent.id)).scalars().all()


def _post(app, data, **kwargs):
    return app.test_client().post("/cb/result", data=data, **kwargs)


# --- the notification ------------------------------------------------------------------------------


def test_a_genuine_notification_credits_once_and_repeats_get_the_same_answer(app, client_user, payment):
    for _ in range(2):
        resp = _post(app, _signed(payment.id))
        assert (resp.status_code, resp.data, resp.mimetype) == (200, f"OK{payment.id}".encode(), "text/plain")
    assert _status(payment.id) == "paid" and _balance(client_user.account_id) == Decimal("100.00")
    info = app.extensions["billcore.modules"].info(fake.KEY)
    assert info.expected_answer(payment.id) == f"OK{payment.id}"


@pytest.mark.parametrize(("order", "status", "answer"), [
    (None, 400, b"bad request"),            # no id at all
    ("", 400, b"bad request"),
    ("abc", 400, b"bad request"),           # not a number
    ("-3", 400, b"bad request"),
    ("٣", 400, b"bad request"),             # a digit, but not an ASCII one
    ("9" * 30, 400, b"bad request"),        # too long to be an id
    ("0", 404, b"unknown payment"),         # a number no payment can have
    (str(2**31), 404, b"unknown payment"),  # past the INTEGER range
    ("999999", 404, b"unknown payment"),    # in range, but no such payment
])
def test_a_missing_malformed_or_unknown_id_is_refused(app, client_user, payment, order, status, answer):
    data = _signed(payment.id)
    if order is None:
        del data["order"]
    else:
        data["order"] = order
    resp = _post(app, data)
    assert (resp.status_code, resp.data) == (status, answer)
    assert _status(payment.id) == "new"
    (event,) = _events(SOURCE)
    assert event.payment_id is None and event.outcome.startswith("rejected:") and event.answer == answer.decode()


def test_another_module_s_payment_is_unknown_here(app, client_user, payment):
    theirs = add_paymethod("pmtemplate", {"merchant_id": "shop-1", "secret": "another-secret-1"})
    other = service.create_payment(client_user.account_id, theirs.id, Decimal("100.00"))
    resp = _post(app, {"order": str(other.id), "amount": "100.00", "sign": fake.signature(SECRET, str(other.id))})
    assert (resp.status_code, resp.data) == (404, b"unknown payment")
    assert _status(other.id) == "new"
    assert [e.payment_id for e in _events(SOURCE)] == [None]  # nothing recorded against their payment


def test_a_body_over_the_cap_is_refused_before_it_is_parsed(app, payment):
    cap = int(app.config["CALLBACK_MAX_CONTENT_LENGTH"])
    resp = _post(app, _signed(payment.id, pad="x" * (cap + 1)))
    assert resp.status_code == 413
    assert _status(payment.id) == "new"


def test_a_bad_signature_is_refused_and_recorded_bounded(app, payment):
    limit = int(app.config["CALLBACK_FIELD_MAX"])
    forged = {**_signed(payment.id), "sign": "forged" * 200, "unknown": "dropped", "another": "dropped too"}
    resp = _post(app, forged)
    assert (resp.status_code, resp.data) == (400, b"bad signature")
    assert _status(payment.id) == "new"
    (event,) = _events(SOURCE)
    assert (event.payment_id, event.kind, event.outcome) == (payment.id, "notification", "rejected: bad signature")
    assert set(event.data) == {"order", "amount", "sign", "_dropped", "_truncated"}  # the protocol's fields only
    assert len(event.data["sign"]) == limit and event.data["_truncated"] == ["sign"] and event.data["_dropped"] == 2


def test_refusals_are_recorded_at_a_limited_rate_and_still_answered(app, payment):
    app.config["CALLBACK_REFUSED_RECORDS"] = "3/minute"  # per script and payment
    app.config["CALLBACK_REFUSED_RECORDS_TOTAL"] = "4/minute"  # per script, whatever the payment
    forged = {**_signed(payment.id), "sign": "forged"}
    assert [_post(app, forged).status_code for _ in range(5)] == [400] * 5
    assert len(_events(SOURCE)) == 3
    assert "refused request not recorded: too many in a short time" in _log(app)
    assert _post(app, {**forged, "order": "999999"}).status_code == 404  # unknown payments: counted apart...
    assert _post(app, {**forged, "order": "999998"}).status_code == 404  # ...but the script's total is reached
    assert [e.payment_id for e in _events(SOURCE)] == [payment.id] * 3 + [None]


def _log(app) -> str:
    from pathlib import Path

    path = Path(app.config["LOG_DIR"]) / "cbresult.log"
    return path.read_text() if path.is_file() else ""


def test_a_database_failure_answers_503_and_changes_nothing(app, payment):
    fake.MODE["handler"] = "database"
    resp = _post(app, _signed(payment.id))
    assert (resp.status_code, resp.data) == (503, b"temporary failure, please retry")
    assert _status(payment.id) == "new"
    assert "database failure, answered 503" in _log(app)


def test_a_database_failure_loading_the_payment_answers_503(app, payment, monkeypatch):
    def broken(payment_id):
        raise OperationalError("SELECT", {}, Exception("server closed the connection"))

    monkeypatch.setattr(callbacks, "callback_context", broken)
    resp = _post(app, _signed(payment.id))
    assert resp.status_code == 503 and _status(payment.id) == "new"


def test_a_bug_answers_500_never_success(app, payment):
    fake.MODE["handler"] = "bug"
    resp = _post(app, _signed(payment.id))
    assert (resp.status_code, resp.data) == (500, b"internal error, please retry")
    assert _status(payment.id) == "new"
    assert "internal error, answered 500: ZeroDivisionError" in _log(app)


def test_a_handler_that_answers_no_answer_is_a_500_too(app, client_user, payment):
    fake.MODE["handler"] = "not_an_answer"  # it paid, then answered a str: the gateway must retry
    assert _post(app, _signed(payment.id)).status_code == 500
    assert _post(app, _signed(payment.id)).status_code == 500  # the retry credits nothing again
    assert _status(payment.id) == "paid" and _balance(client_user.account_id) == Decimal("100.00")


# --- the address allow-list -----------------------------------------------------------------------


@pytest.fixture
def listed(client_user):
    """A payment of a method whose gateway calls only from 203.0.113.0/24."""
    method = add_paymethod(fake.KEY, {"secret": SECRET, "networks": ["203.0.113.0/24", "not a network"]})
    return service.create_payment(client_user.account_id, method.id, Decimal("100.00"))


def test_the_allow_list_refuses_other_addresses(app, listed):
    refused = _post(app, _signed(listed.id), environ_base={"REMOTE_ADDR": "198.51.100.7"})
    assert (refused.status_code, refused.data) == (403, b"forbidden")
    assert _status(listed.id) == "new"
    (event,) = _events(SOURCE)
    assert "198.51.100.7" in event.outcome
    accepted = _post(app, _signed(listed.id), environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert accepted.status_code == 200 and _status(listed.id) == "paid"


def test_without_trusted_proxies_x_forwarded_for_is_ignored(app, listed):
    resp = _post(app, _signed(listed.id), environ_base={"REMOTE_ADDR": "198.51.100.7"},
                 headers={"X-Forwarded-For": "203.0.113.9"})
    assert resp.status_code == 403 and _status(listed.id) == "new"


def test_behind_a_trusted_proxy_the_forwarded_address_is_checked(app, listed):
    app.config["TRUSTED_PROXIES"] = 1
    proxy = {"REMOTE_ADDR": "10.0.0.2"}
    # a caller cannot put an allowed address in front of its own: the proxy appends the real one
    spoofed = _post(app, _signed(listed.id), environ_base=proxy, headers={"X-Forwarded-For": "203.0.113.9, 198.51.100.7"})
    assert spoofed.status_code == 403 and _status(listed.id) == "new"
    genuine = _post(app, _signed(listed.id), environ_base=proxy, headers={"X-Forwarded-For": "198.51.100.7, 203.0.113.9"})
    assert genuine.status_code == 200 and _status(listed.id) == "paid"


def test_address_in():
    assert callbacks.address_in("203.0.113.9", ["203.0.113.0/24"])
    assert callbacks.address_in("2001:db8::1", ["bogus", "2001:db8::/32"])
    assert not callbacks.address_in("203.0.114.1", ["203.0.113.0/24", "nonsense"])
    assert not callbacks.address_in("not an address", ["0.0.0.0/0"])


# --- CSRF: the core exempts exactly the views it made ----------------------------------------------


@pytest.fixture
def csrf_app(app):
    """The same app with CSRF protection on, as in production."""
    app.config["WTF_CSRF_ENABLED"] = True
    return app


def test_callbacks_work_with_csrf_on_while_an_ordinary_view_needs_the_token(csrf_app, payment):
    assert _post(csrf_app, _signed(payment.id)).status_code == 200 and _status(payment.id) == "paid"
    assert csrf_app.test_client().get(f"/cb/success?order={payment.id}").status_code == 302
    ordinary = csrf_app.test_client().post("/cb/ordinary")
    assert ordinary.status_code == 400  # the module's own view of the same blueprint keeps its protection
    exempted = callbacks.exempt_callbacks(csrf_app, [fake.KEY])
    assert sorted(exempted) == sorted([f"{fake.KEY}.result", f"{fake.KEY}.pmcallback_success_return",
                                       f"{fake.KEY}.pmcallback_signed_return"])


# --- the payer's return ----------------------------------------------------------------------------


def test_the_return_changes_nothing_and_answers_the_same_whatever_the_id(app, client_user, payment):
    theirs = add_paymethod("pmtemplate", {"merchant_id": "shop-1", "secret": "another-secret-1"})
    other = service.create_payment(client_user.account_id, theirs.id, Decimal("100.00"))
    web = app.test_client()
    for payment_id in (payment.id, other.id, 999999):  # ours, another module's, none
        resp = web.get("/cb/success", query_string={"order": payment_id})
        assert resp.status_code == 302
        assert resp.headers["Location"] == f"/payments/{payment_id}/return/success"
    assert _status(payment.id) == "new" and _status(other.id) == "new"
    events = _events("pmcallback success")
    assert [(e.payment_id, e.kind) for e in events] == [(payment.id, "return"), (None, "return"), (None, "return")]
    assert "nothing changed; payment is new" in events[0].outcome
    for odd in ("", "abc", "9" * 30, "0"):
        resp = web.get("/cb/success", query_string={"order": odd})
        assert resp.status_code == 302 and resp.headers["Location"] == "/dashboard"


def test_the_return_records_only_the_protocol_s_fields(app, payment):
    app.test_client().get("/cb/success", query_string={"order": payment.id, "junk": "x" * 5000, "amount": "1" * 999})
    (event,) = _events("pmcallback success")
    assert set(event.data) == {"order", "amount", "_dropped", "_truncated"}
    assert len(json.dumps(event.data)) < 2 * int(app.config["CALLBACK_FIELD_MAX"])


def test_a_signed_return_that_does_not_verify_is_an_error_page_whatever_the_id(app, payment):
    web = app.test_client()
    good = web.get("/cb/signed", query_string={"order": payment.id, "sign": fake.signature(SECRET, str(payment.id))})
    assert good.status_code == 302 and good.headers["Location"] == f"/payments/{payment.id}/return/success"
    pages = []
    for order in (payment.id, 999999, "abc"):  # a bad signature, no such payment, no id: all the same page
        resp = web.get("/cb/signed", query_string={"order": order, "sign": "forged"})
        assert resp.status_code == 400
        pages.append(re.sub(r'value="[^"]*"', "", resp.get_data(as_text=True)))
    assert pages[0] == pages[1] == pages[2] and "This return link is not valid" in pages[0]
    assert _status(payment.id) == "new"
    outcomes = [(e.payment_id, e.outcome) for e in _events("pmcallback signed") if e.outcome.startswith("rejected")]
    assert outcomes == [(payment.id, "rejected: bad signature"), (None, "rejected: no payment of this module"),
                        (None, "rejected: no payment of this module")]


def test_a_database_failure_on_return_is_503(app, payment, monkeypatch):
    def broken(payment_id):
        raise OperationalError("SELECT", {}, Exception("server closed the connection"))

    monkeypatch.setattr(callbacks, "callback_context", broken)
    resp = app.test_client().get("/cb/success", query_string={"order": payment.id})
    assert resp.status_code == 503 and "temporarily unavailable" in resp.get_data(as_text=True)
