"""The admin's overview (money received, per-day charts as SVG with a table, paid share per method, what
needs attention, each a link to the filtered list) and the payments list's totals, paging and CSV export."""
from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlparse

from sqlalchemy import func, select

from billcore.db import db
from billcore.models import Payment, Refund
from billcore.payments import service
from tests.test_admin_payments import _ids, _inpay, _paid, admin, method, payer  # noqa: F401
from tests.test_checkout import app_config, capp  # noqa: F401


def _age(payment_id: int, **delta) -> None:
    """Move a payment's created/updated/paid times back by ``delta``."""
    with db.engine.begin() as conn:
        p = conn.execute(Payment.__table__.select().where(Payment.id == payment_id)).one()
        shift = timedelta(**delta)
        values = {"created_at": p.created_at - shift, "updated_at": p.updated_at - shift}
        if p.paid_at is not None:
            values["paid_at"] = p.paid_at - shift
        conn.execute(Payment.__table__.update().where(Payment.id == payment_id).values(**values))


def _links(html: str) -> dict[str, str]:
    """data-testid -> href of the overview's figures."""
    return {t: h.replace("&amp;", "&") for h, t in re.findall(r'href="([^"]+)"[^>]*data-testid="([\w-]+)"', html)} | \
        {t: h.replace("&amp;", "&") for t, h in re.findall(r'data-testid="([\w-]+)"[^>]*href="([^"]+)"', html)}


def test_overview_figures_charts_and_links(admin, payer, method):  # noqa: F811
    today = _paid(payer.account_id, method.id, "100.00")
    week = _paid(payer.account_id, method.id, "40.00")
    _age(week.id, days=3)
    old = _paid(payer.account_id, method.id, "7.00")
    _age(old.id, days=40)  # outside every window
    stuck = _inpay(payer.account_id, method.id, "10.00")
    _age(stuck.id, hours=5)
    _inpay(payer.account_id, method.id, "11.00")  # in pay for a moment only: not stuck
    fraud = service.create_payment(payer.account_id, method.id, Decimal("12.00"))
    service.set_fraud(fraud.id, source="test", reason="amount mismatch")

    html = admin.get("/admin/").get_data(as_text=True)
    money = dict(re.findall(r'data-testid="money-(today|7|30)".*?<strong>([^<]+)</strong>', html, re.S))
    assert money == {"today": "100.00 RUB", "7": "140.00 RUB", "30": "140.00 RUB"}
    attention = dict(re.findall(r'data-testid="attention-(\w+)".*?<strong>(\d+)</strong>', html, re.S))
    assert attention == {"fraud": "1", "refunds": "0", "suspended": "0", "stuck": "1"}
    # two server-drawn charts, each an image with a name and a table of the same figures
    assert html.count('<svg class="chart"') == 2 and 'role="img" aria-label="Payments per day by status"' in html
    assert "<script" not in html.split("<main")[1]
    table = html.split('data-testid="table-status"')[1].split("</table>")[0]
    rows = re.findall(r"<tr><td[^>]*>[^<]+</td>((?:<td[^>]*>\d+</td>)+)</tr>", table)
    assert len(rows) == 30
    # columns: paid, cancelled, fraud; today's row first, the week-old payment three rows down
    assert [re.findall(r">(\d+)<", r) for r in rows[:4]] == [["1", "0", "1"], ["0", "0", "0"], ["0", "0", "0"],
                                                           ["1", "0", "0"]]
    # the share paid per method: 2 of the 5 payments of the 30 days
    assert re.search(r"Fake card</a></td>\s*<td[^>]*>5</td>\s*<td[^>]*><a[^>]*>2</a></td>.*?40%", html, re.S)

    # every figure opens the list with the matching filter: the list shows exactly those payments
    links = _links(html)
    assert _ids(admin.get(links["money-today"]).get_data(as_text=True)) == [today.id]
    assert _ids(admin.get(links["money-7"]).get_data(as_text=True)) == [week.id, today.id]
    assert _ids(admin.get(links["attention-fraud"]).get_data(as_text=True)) == [fraud.id]
    assert _ids(admin.get(links["attention-stuck"]).get_data(as_text=True)) == [stuck.id]
    assert parse_qs(urlparse(links["attention-suspended"]).query) == {"status": ["suspended"]}


def test_overview_in_russian(admin, payer, method):  # noqa: F811
    _paid(payer.account_id, method.id, "1100.00")
    admin.post("/language/ru")
    html = admin.get("/admin/").get_data(as_text=True)
    assert "1\u00a0100,00\u00a0₽" in html and "Деньги поступили" in html
    assert "100\u00a0%" in html  # the paid share


def test_totals_row_and_paging_both_ways(capp, admin, payer, method):  # noqa: F811
    capp.config["ADMIN_PAGE_SIZE"] = 2
    ids = [service.create_payment(payer.account_id, method.id, Decimal(f"{10 + i}.00")).id for i in range(5)]
    first = admin.get("/admin/payments").get_data(as_text=True)
    totals = first.split('data-testid="totals"')[1].split("</tfoot>")[0]
    # the whole filtered set, not the page: 10+11+12+13+14 = 60, commission 5 each
    assert "All 5 matching payments" in totals and "60.00 RUB" in totals and "25.00 RUB" in totals \
        and "85.00 RUB" in totals
    pages, html = [_ids(first)], first
    while (m := re.search(r'rel="next" href="([^"]+)"', html)):
        html = admin.get(m.group(1).replace("&amp;", "&")).get_data(as_text=True)
        pages.append(_ids(html))
    assert pages == [ids[4:2:-1], ids[2:0:-1], ids[:1]]
    assert 'data-testid="page-first"' in html
    back = []
    while (m := re.search(r'rel="prev" href="([^"]+)"', html)):
        html = admin.get(m.group(1).replace("&amp;", "&")).get_data(as_text=True)
        back.append(_ids(html))
    assert back == [ids[2:0:-1], ids[4:2:-1]] and 'data-testid="page-first"' not in html


def test_csv_export_streams_the_filtered_set(capp, admin, payer, method):  # noqa: F811
    from billcore.admin import payments as view

    capp.config["ADMIN_PAGE_SIZE"] = 2
    paid = [_paid(payer.account_id, method.id, f"{20 + i}.00").id for i in range(5)]
    _inpay(payer.account_id, method.id)
    with db.engine.begin() as conn:  # a name a spreadsheet would run as a formula
        conn.execute(db.metadata.tables["accounts"].update().values(name="=HYPERLINK(1)"))
    original, view.CSV_BATCH = view.CSV_BATCH, 2
    try:
        response = admin.get("/admin/payments.csv?status=paid")
        assert response.is_streamed and response.mimetype == "text/csv"
        chunks = list(response.response)
    finally:
        view.CSV_BATCH = original
    # written batch by batch (2 rows each), not built whole
    assert len(chunks) >= 3
    rows = list(csv.DictReader(io.StringIO("".join(c.decode() if isinstance(c, bytes) else c for c in chunks))))
    assert [int(r["id"]) for r in rows] == sorted(paid, reverse=True)  # all pages, not the first
    assert {r["status"] for r in rows} == {"paid"} and rows[-1]["amount"] == "20.00"
    assert rows[0]["account"] == "'=HYPERLINK(1)"
    assert admin.get("/admin/payments.csv?amount_min=abc").status_code == 400


def test_refund_asks_first_with_amount_and_account(admin, payer, method):  # noqa: F811
    from tests.test_admin_payments import _state, refund_confirmed

    p = _paid(payer.account_id, method.id, "100.00")
    page = admin.post(f"/admin/payments/{p.id}/refund", data={"amount": "30,50", "reason": "asked"})
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'data-testid="refund-confirm"' in html
    assert ">30.50 RUB<" in html and f"(#{payer.account_id})" in html and "69.50 RUB" in html  # balance after
    assert _state(p.id) == ("paid", Decimal("0.00"), Decimal("100.00"))  # nothing refunded yet
    too_much = admin.post(f"/admin/payments/{p.id}/refund", data={"amount": "100.01"}, follow_redirects=True)
    assert "Enter an amount from 0.01 to 100.00" in too_much.get_data(as_text=True)
    # the confirmation sends back the amount as read in the first step, and a token to be used once
    assert '<input type="hidden" name="amount" value="30.50">' in html
    done = refund_confirmed(admin, p.id, {"amount": "30,50", "reason": "asked"})
    assert done.status_code == 302 and _state(p.id)[1] == Decimal("30.50")
    detail = admin.get(f"/admin/payments/{p.id}").get_data(as_text=True)
    # states as words on badges, never the codes
    assert re.search(r'<span class="status status-\w+" data-refund-state="\w+">Refund (done|requested)</span>', detail)
    assert ">requested<" not in detail and ">finished<" not in detail


def test_robokassa_step2_shows_every_error_at_once(admin):  # noqa: F811
    from tests.test_admin_paymethods import field_error, start

    step2 = start(admin, "pmrobokassa")
    html = admin.post(step2, data={"identifier": "", "password1": "", "password2": "", "action": "next"}) \
        .get_data(as_text=True)
    assert "This field is required." in field_error(html, "identifier")
    assert "Password #1 is required." in field_error(html, "password1")
    assert "Password #2 is required." in field_error(html, "password2")
    # a refused password is not kept: no "set" under its error, and blank stays "required" next time
    html = admin.post(step2, data={"identifier": "shop", "password1": "short", "password2": "Good-pass-22",
                                   "action": "next"}).get_data(as_text=True)
    assert "at least 8 characters" in field_error(html, "password1")
    assert "leave blank to keep" not in field_error(html, "password1")
    html = admin.post(step2, data={"identifier": "shop", "password1": "", "password2": "", "action": "next"}) \
        .get_data(as_text=True)
    assert "Password #1 is required." in field_error(html, "password1")
    assert "Password #2" not in field_error(html, "password2")  # the good one was kept


def test_method_page_one_warning_per_problem_and_refunds_without_password3(capp, admin):  # noqa: F811
    from tests.conftest import add_paymethod

    capp.config["BASE_URL"] = "http://127.0.0.1:5000"
    method = add_paymethod("pmrobokassa", {"identifier": "demo", "password1": "Passw0rd-one",
                                           "password2": "Passw0rd-two", "receipt_payment_method": "full_payment"},
                           name="Robokassa", allow_refund=True)
    html = admin.get(f"/admin/paymethods/{method.id}").get_data(as_text=True)
    warnings = re.findall(r'<div class="warning" role="alert">([^<]+)</div>', html)
    assert len(warnings) == len(set(warnings)) == 4, warnings
    assert sum("http" in w for w in warnings) == 1  # plain http: once
    assert any("Password #3 is not set" in w for w in warnings)
    assert ">Full payment</td>" in html and ">full_payment<" not in html  # words, not the stored code


def test_method_page_warns_about_plain_http_once_and_keeps_the_module_s_own_warnings(capp, admin):  # noqa: F811
    from tests.conftest import add_paymethod

    capp.config["BASE_URL"] = "http://127.0.0.1:5000"
    method = add_paymethod("pmtemplate", {"merchant_id": "shop-1", "secret": "s3cr3t-shared-value"})
    html = admin.get(f"/admin/paymethods/{method.id}").get_data(as_text=True)
    warnings = re.findall(r'<div class="warning" role="alert">([^<]+)</div>', html)
    assert sum("plain http" in w for w in warnings) == 1, warnings  # the core's, the module says it no more
    assert sum("port 5000" in w for w in warnings) == 1, warnings  # the module's own concern, kept


def test_warnings_are_merged_by_text():
    from billcore.admin.paymethod_ui import merged_warnings

    core = ["The public address uses plain http.", "No public address."]
    module = ["the public  address uses PLAIN http.", "Port 8080 is unusual.", "", "No public address."]
    assert merged_warnings(core, module) == ["The public address uses plain http.", "No public address.",
                                             "Port 8080 is unusual."]


def test_robokassa_options_and_receipt_choices_in_russian(admin):  # noqa: F811
    from tests.test_admin_paymethods import start

    admin.post("/language/ru")
    html = admin.get(start(admin, "pmrobokassa")).get_data(as_text=True)
    assert "Банковская карта (Visa, Mastercard, Maestro, Мир)" in html and "Банковские карты" in html
    assert ">Полный расчёт<" in html and ">Услуга<" in html  # 54-FZ attributes in words
    assert ">full_payment<" not in html and ">service<" not in html


def test_refund_confirmed_twice_refunds_once(admin, payer, method):  # noqa: F811
    from tests.test_admin_payments import _state

    p = _paid(payer.account_id, method.id, "2000.00")
    # an amount written with a space and a comma is read in the first step and confirmed as read
    page = admin.post(f"/admin/payments/{p.id}/refund", data={"amount": "1 000,50", "reason": "asked"})
    html = page.get_data(as_text=True)
    form = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', html))
    assert form["amount"] == "1000.50" and form["confirmed"] == "1" and len(form["once"]) >= 16
    done = admin.post(f"/admin/payments/{p.id}/refund", data=form)
    assert done.status_code == 302 and _state(p.id)[1] == Decimal("1000.50")
    # the same confirmation again (a double click, Back and confirm again): no second refund
    again = admin.post(f"/admin/payments/{p.id}/refund", data=form, follow_redirects=True)
    assert "already made" in again.get_data(as_text=True)
    assert _state(p.id)[1] == Decimal("1000.50")
    assert db.session.scalar(select(func.count()).select_from(Refund).where(Refund.payment_id == p.id)) == 1
    # a confirmation without its token is only asked again, never acted on
    asked = admin.post(f"/admin/payments/{p.id}/refund", data={**form, "amount": "10", "once": ""})
    assert asked.status_code == 200 and 'data-testid="refund-confirm"' in asked.get_data(as_text=True)
    assert _state(p.id)[1] == Decimal("1000.50")
