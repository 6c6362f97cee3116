"""The sandbox gateway under odd input, under load, and without BASE_URL: its normal error pages or a
400, never a 500; a bounded number of delivery threads; notifications never aimed by the Host header."""
from __future__ import annotations

import json
import threading
import time
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmrobokassa.sandbox import delivery
from pmrobokassa.sandbox.shops import configured_shops
from pmrobokassa.sandbox.store import get_store
from tests.conftest import make_app

from .test_sandbox import LOGIN, PREFIX, SHOP, gw, init_fields, open_page, pay, sb_app, token_of  # noqa: F401

pytestmark = pytest.mark.filterwarnings("ignore:The HMAC key is")
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# --- (c) odd input ------------------------------------------------------------------------------


@pytest.mark.parametrize("inv_id", ["²", "٣", "१२", "1²", str(2**64), "-1", "1.0", " 1"])
def test_odd_inv_id_is_error_30(gw, inv_id):
    response, html = open_page(gw, inv_id=inv_id)
    assert response.status_code == 400 and 'data-error-code="30"' in html


@pytest.mark.parametrize("receipt", ['{"items":5}', '{"items":"abc"}', '{"items":[5]}', '{"items":{"a":1}}',
                                     '{"items":[["x"]]}', "[1,2]", '"text"', "5", "null", "{", "[" * 5000,
                                     '{"items":[{"name":"x"}], "sno": 1}' + "}" * 3])
def test_receipt_of_the_wrong_shape_is_error_30(gw, receipt):
    response, html = open_page(gw, receipt=quote(receipt))
    assert response.status_code == 400 and 'data-error-code="30"' in html
    assert not get_store().recent_operations()


def test_diagnosis_that_cannot_build_a_signature_still_answers_error_29(gw):
    # SuccessUrl2 without its method makes every signature build raise ValueError.
    response, html = open_page(gw, algorithm="sha256", SuccessUrl2="https://example.com/ok")
    assert response.status_code == 400 and 'data-error-code="29"' in html


@pytest.mark.parametrize("op_id", [str(2**63), str(2**80), "99999999999999999999999999"])
def test_resend_of_a_huge_operation_id_is_a_flash_not_a_500(gw, op_id):
    response = gw.post(f"{PREFIX}/operations/{op_id}/resend")
    assert response.status_code in (302, 404)


@pytest.mark.parametrize("inv_id", ["²", "٣", str(2**70)])
def test_recurring_with_an_odd_invoice_id_is_refused(gw, inv_id):
    response = gw.post(f"{PREFIX}/Merchant/Recurring", data={"MerchantLogin": LOGIN, "InvoiceID": inv_id,
                                                             "PreviousInvoiceID": "1", "OutSum": "10.00",
                                                             "SignatureValue": "0" * 32})
    assert response.status_code == 400 and response.data.startswith(b"ERROR")


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                     max_size=3), max_leaves=8)


@FUZZ
@given(value=json_values)
def test_any_json_receipt_gets_a_page_or_error_30(gw, value):
    response, html = open_page(gw, receipt=quote(json.dumps(value)))
    assert response.status_code in (200, 400)
    if response.status_code == 400:
        assert 'data-error-code="30"' in html or 'data-error-code="29"' in html


text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)


@FUZZ
@given(inv_id=text, out_sum=text, receipt=text, culture=text, extra=st.dictionaries(
    st.sampled_from(["SuccessUrl2", "SuccessUrl2Method", "FailUrl2", "FailUrl2Method", "OutSumCurrency",
                     "UserIp", "StepByStep", "ResultUrl2", "Token", "IsTest", "Shp_x", "Recurring"]), text))
def test_payment_page_never_answers_500(gw, inv_id, out_sum, receipt, culture, extra):
    fields = init_fields(out_sum="100.00", inv_id="12", receipt=receipt or None, **extra)
    fields.update({"InvId": inv_id, "OutSum": out_sum or fields["OutSum"], "Culture": culture})
    for response in (gw.post(f"{PREFIX}/Merchant/Index.aspx", data=fields),
                     gw.get(f"{PREFIX}/Merchant/Index.aspx", query_string=fields)):
        assert response.status_code in (200, 400)


# --- (a) bounded deliveries ---------------------------------------------------------------------


def test_pool_runs_at_most_its_workers_and_drops_beyond_its_queue(caplog):
    pool = delivery.DeliveryPool(workers=2, queue_size=1)
    release, running, lock = threading.Event(), [], threading.Lock()
    peak = []

    def job(n):
        with lock:
            running.append(n)
            peak.append(len(running))
        release.wait(10)
        with lock:
            running.remove(n)

    assert pool.submit(job, 1) and pool.submit(job, 2)
    deadline = time.monotonic() + 5
    while len(running) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pool.submit(job, 3)  # waits in the queue
    assert not pool.submit(job, 4)  # the queue is full: dropped
    assert sum(t.name.startswith("rk-sandbox-deliver") and t.is_alive() for t in pool.threads) == 2
    release.set()
    assert pool.join(10)
    assert max(peak) == 2 and not running


def test_start_delivery_is_bounded_by_config_and_logs_drops(tmp_path, monkeypatch):
    app = make_app(tmp_path, f"sqlite:///{tmp_path / 'b.sqlite'}", PMROBOKASSA_SANDBOX=True,
                   PMROBOKASSA_SANDBOX_SHOPS=[dict(SHOP)], PMROBOKASSA_SANDBOX_WORKERS=1,
                   PMROBOKASSA_SANDBOX_QUEUE=1, LOG_DIR=str(tmp_path / "logs"))
    release, started = threading.Event(), threading.Event()

    def slow_run(store, shop, op, mode, settings):
        started.set()
        release.wait(10)

    monkeypatch.setattr(delivery, "_run", slow_run)
    with app.app_context():
        shop = configured_shops()[0]
        cfg = delivery.settings_from_config()
        assert (cfg.workers, cfg.queue_size) == (1, 1)
        ops = [get_store().add_operation(shop=shop.login, inv_id=str(n), state=100, out_sum=1, fee=0,
                                         inc_curr_label="BankCardPSR", payment_method="BankCard", email="",
                                         description="", is_test=True, shp={}, culture="", fault="normal")
               for n in range(1, 4)]
        assert delivery.start_delivery(get_store(), shop, ops[0], "normal", cfg)
        assert started.wait(5)
        assert delivery.start_delivery(get_store(), shop, ops[1], "normal", cfg)
        assert not delivery.start_delivery(get_store(), shop, ops[2], "normal", cfg)
    release.set()
    assert delivery.join_deliveries(10)
    log_text = (tmp_path / "logs" / "pmrobokassa.log").read_text()
    assert "dropped" in log_text and "invoice 3" in log_text


# --- (b) where notifications go ------------------------------------------------------------------


def test_without_base_url_the_host_header_does_not_choose_the_notification_url(tmp_path):
    app = make_app(tmp_path, f"sqlite:///{tmp_path / 'h.sqlite'}", PMROBOKASSA_SANDBOX=True, BASE_URL="")
    with app.test_request_context("/sandbox/robokassa/", headers={"Host": "attacker.example:8443"}):
        shop = configured_shops()[0]
    for url in (shop.result_url, shop.success_url, shop.fail_url):
        assert "attacker" not in url
    assert shop.result_url == "http://127.0.0.1:5000/mancgi/rkresult"
    client = app.test_client()
    assert "attacker" not in client.get(f"{PREFIX}/", headers={"Host": "attacker.example"}).get_data(as_text=True)


def test_the_configured_server_name_is_used_when_base_url_is_unset(tmp_path):
    app = make_app(tmp_path, f"sqlite:///{tmp_path / 's.sqlite'}", PMROBOKASSA_SANDBOX=True, BASE_URL="",
                   SERVER_NAME="billing.internal:8000", PREFERRED_URL_SCHEME="https")
    with app.test_request_context("/", headers={"Host": "attacker.example"}):
        assert configured_shops()[0].result_url == "https://billing.internal:8000/mancgi/rkresult"
