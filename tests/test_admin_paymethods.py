"""The admin's payment methods: the add wizard, the method page, the edit tabs and the list's actions.

Walked with the test client for ``pmfake`` (tests/fake_module.py, the generic test double) and, once it
has its integration form, for the in-tree ``pmtemplate``.
"""
from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from flask_babel import gettext
from sqlalchemy import select

from billcore.accounts import create_admin, create_client
from billcore.crypto import decrypt_json
from billcore.db import db
from billcore.models import Payment, PaymentMethod, PaymethodDraft, utcnow
from billcore.paymethods import full_settings
from billcore.payments import service
from billcore.plugins import get_registry
from tests.conftest import ADMIN, CLIENT, add_paymethod, login, make_app

SECRET = "s3cret-Typed-In-Step2"
FAKE = {"pmfake": "tests.fake_module"}
STEP2 = {"shop_id": "shop-1", "secret": SECRET, "hash_algorithm": "md5", "test_mode": "y", "action": "next"}
STEP3 = {"name": "Cards", "name_ru": "Карты", "currency": "RUB", "min_amount": "10", "max_amount": "15000.50",
         "commission_amount": "1.20", "commission_percent": "2.5", "delete_after_days": "7", "active": "y",
         "sort_order": "5", "allow_refund": "y", "description": "Pay by card", "description_ru": "Картой",
         "comment": "internal", "action": "next"}


@pytest.fixture
def app_config():
    """Load the fake module beside the real ones."""
    return {"EXTRA_MODULES": FAKE}


@pytest.fixture
def fapp(app):
    """The app with the fake module loaded, on each configured backend."""
    return app


@pytest.fixture
def admin(fapp):
    """A test client logged in as an administrator."""
    create_admin(*ADMIN)
    c = fapp.test_client()
    assert login(c, *ADMIN).status_code == 302
    return c


def start(admin, module: str = "pmfake") -> str:
    """Step 1: choose ``module``; returns the step-2 URL."""
    resp = admin.post("/admin/paymethods/new", data={"module": module})
    assert resp.status_code == 302, resp.data
    assert re.fullmatch(r"/admin/paymethods/new/[\w-]{20,}/integration", resp.location)
    return resp.location


def step_url(step2: str, name: str) -> str:
    return step2.rsplit("/", 1)[0] + "/" + name


def walk(admin, step2_data=None, step3_data=None, module="pmfake") -> int:
    """The whole wizard; returns the new method's id."""
    step2 = start(admin, module)
    resp = admin.post(step2, data=step2_data or STEP2)
    assert resp.status_code == 302 and resp.location.endswith("/settings"), resp.data
    resp = admin.post(resp.location, data=step3_data or STEP3)
    assert resp.status_code == 302, resp.data
    match = re.fullmatch(r"/admin/paymethods/(\d+)", resp.location)
    assert match, resp.location
    return int(match.group(1))


def field_error(html: str, field: str) -> str:
    """The error texts rendered next to ``field`` (inside its ``.field.has-error`` block)."""
    i = html.find(f'name="{field}"')
    if i < 0:
        return ""
    start = html.rfind('<div class="field', 0, i)
    end = html.find('<div class="field', i)
    chunk = html[start:end if end > 0 else len(html)]
    if "has-error" not in chunk.split(">", 1)[0]:
        return ""
    return " ".join(re.findall(r'<div class="error">(.*?)</div>', chunk, flags=re.S))


def method() -> PaymentMethod:
    db.session.expire_all()
    return db.session.scalars(select(PaymentMethod)).one()


# --- the wizard -------------------------------------------------------------------------------------

def test_step1_shows_a_card_per_module_with_features(admin):
    html = admin.get("/admin/paymethods/new").get_data(as_text=True)
    assert 'data-module="pmfake"' in html
    card = html.split('data-module="pmfake"', 1)[1].split('data-module=', 1)[0]
    assert "Fake gateway" in card and "A gateway for tests" in card
    assert "Refunds" in card and "Test mode" in card and "Recurring" not in card
    assert "Bank cards, E-wallets" in card and "RUB, USD" in card
    for key in get_registry().modules:
        assert f'data-module="{key}"' in html


def test_happy_path_creates_the_method_and_shows_gateway_setup(admin, fapp):
    method_id = walk(admin)
    page = admin.get(f"/admin/paymethods/{method_id}").get_data(as_text=True)
    assert "Cards" in page and "created" in page
    assert 'data-copy="https://billing.example.com/mancgi/pmfake/result"' in page
    assert "Test mode is on" in page  # the module's warning
    assert "plain http" not in page  # BASE_URL is https
    m = method()
    assert (m.module, m.name, m.name_ru, m.currency) == ("pmfake", "Cards", "Карты", "RUB")
    assert (m.min_amount, m.max_amount, m.commission_amount) == (Decimal("10.00"), Decimal("15000.50"), Decimal("1.20"))
    assert m.commission_percent == Decimal("2.5")
    assert (m.delete_after_days, m.active, m.sort_order, m.allow_refund, m.recurring) == (7, True, 5, True, False)
    assert (m.description, m.description_ru, m.comment) == ("Pay by card", "Картой", "internal")
    assert m.settings == {"shop_id": "shop-1", "hash_algorithm": "md5", "test_mode": True}
    assert full_settings(m)["secret"] == SECRET
    assert db.session.scalar(select(db.func.count()).select_from(PaymethodDraft)) == 0


def test_step1_unknown_module_refused(admin):
    resp = admin.post("/admin/paymethods/new", data={"module": "nope"})
    assert resp.status_code == 400
    assert "Choose one of the payment modules." in resp.get_data(as_text=True)
    assert db.session.scalar(select(db.func.count()).select_from(PaymethodDraft)) == 0


def test_step2_form_and_module_errors_next_to_fields(admin):
    step2 = start(admin)
    resp = admin.post(step2, data={"shop_id": "", "secret": "", "action": "next"})
    assert resp.status_code == 400
    html = resp.get_data(as_text=True)
    assert "This field is required." in field_error(html, "shop_id")
    assert "This field is required." in field_error(html, "secret")
    resp = admin.post(step2, data=dict(STEP2, shop_id="bad-shop"))
    assert resp.status_code == 400
    html = resp.get_data(as_text=True)
    assert "The gateway does not know this shop." in field_error(html, "shop_id")
    assert 'value="bad-shop"' in html  # public values are kept
    assert SECRET not in html
    # The secret typed with the failed submit is kept (encrypted) in the draft: blank now means keep.
    assert "leave blank to keep" in html
    resp = admin.post(step2, data=dict(STEP2, secret=""))
    assert resp.status_code == 302 and resp.location.endswith("/settings")


@pytest.mark.parametrize("changes, field, message", [
    ({"name": ""}, "name", "This field is required."),
    ({"min_amount": "1.001"}, "min_amount", "at most 2 decimals"),
    ({"commission_amount": "-1"}, "commission_amount", "Must not be negative."),
    ({"min_amount": "20", "max_amount": "10"}, "max_amount", "must not be less than the minimum"),
    ({"max_amount": "abc"}, "max_amount", "Not a valid amount"),
    ({"commission_percent": "100"}, "commission_percent", "less than 100"),
    ({"commission_percent": "1.00001"}, "commission_percent", "at most 4 decimals"),
    ({"currency": "EUR"}, "currency", "accepts only these currencies: RUB, USD"),
    ({"currency": "XXX"}, "currency", "Choose a currency."),
    ({"currency": "USD"}, "currency", "USD payments cannot be tested."),  # the module's hook, with the currency
    ({"delete_after_days": "0"}, "delete_after_days", "Number must be between"),
])
def test_step3_validation_errors(admin, changes, field, message):
    step2 = start(admin)
    assert admin.post(step2, data=STEP2).status_code == 302
    resp = admin.post(step_url(step2, "settings"), data=dict(STEP3, **changes))
    assert resp.status_code == 400
    assert message in field_error(resp.get_data(as_text=True), field)
    assert db.session.scalar(select(db.func.count()).select_from(PaymentMethod)) == 0


def test_step3_currency_choices_restricted_to_the_module(admin):
    step2 = start(admin)
    admin.post(step2, data=STEP2)
    html = admin.get(step_url(step2, "settings")).get_data(as_text=True)
    select_html = html.split('name="currency"', 1)[1].split("</select>", 1)[0]
    assert re.findall(r'<option[^>]*value="(\w+)"', select_html) == ["RUB", "USD"]
    assert 'name="recurring"' not in html  # the module has no recurring payments
    assert 'name="allow_refund"' in html


def test_back_keeps_values(admin):
    step2 = start(admin)
    # Back from step 2 keeps what was typed (unvalidated) and preselects the module on step 1.
    resp = admin.post(step2, data=dict(STEP2, shop_id="typed-shop", action="back"))
    assert resp.status_code == 302 and resp.location == step_url(step2, "module")
    html = admin.get(resp.location).get_data(as_text=True)
    assert re.search(r'data-module="pmfake"[^>]*>', html) and "module-card selected" in html
    html = admin.get(step2).get_data(as_text=True)
    assert 'value="typed-shop"' in html and SECRET not in html and "leave blank to keep" in html
    # Step 3 -> Back -> Next keeps step 3's values.
    assert admin.post(step2, data=dict(STEP2, secret="", shop_id="shop-2")).status_code == 302
    resp = admin.post(step_url(step2, "settings"), data=dict(STEP3, name="Half typed", min_amount="3", action="back"))
    assert resp.status_code == 302 and resp.location == step2
    assert 'value="shop-2"' in admin.get(step2).get_data(as_text=True)
    assert admin.post(step2, data=dict(STEP2, secret="", shop_id="shop-2")).status_code == 302
    html = admin.get(step_url(step2, "settings")).get_data(as_text=True)
    assert 'value="Half typed"' in html and 'value="3"' in html
    # Choosing another module on step 1 forgets the first module's settings.
    draft = db.session.get(PaymethodDraft, step2.split("/")[-2])
    assert draft.settings["shop_id"] == "shop-2"


def test_step1_again_with_another_module_resets_integration(admin):
    other = next((k for k in get_registry().modules if k != "pmfake"), None)
    if other is None:
        pytest.skip("only one module loaded")
    step2 = start(admin)
    admin.post(step2, data=STEP2)
    resp = admin.post(step_url(step2, "module"), data={"module": other})
    assert resp.status_code == 302 and resp.location == step2
    db.session.expire_all()
    draft = db.session.get(PaymethodDraft, step2.split("/")[-2])
    assert (draft.module, draft.settings, draft.secrets_encrypted, draft.step) == (other, {}, None, 2)


@pytest.mark.parametrize("where", ["module", "integration", "settings", "cancel"])
def test_cancel_deletes_the_draft(admin, where):
    step2 = start(admin)
    admin.post(step2, data=STEP2)
    assert db.session.scalar(select(db.func.count()).select_from(PaymethodDraft)) == 1
    resp = admin.post(step_url(step2, where), data={"action": "cancel"})
    assert resp.status_code == 302 and resp.location == "/admin/paymethods"
    db.session.expire_all()
    assert db.session.scalar(select(db.func.count()).select_from(PaymethodDraft)) == 0
    assert db.session.scalar(select(db.func.count()).select_from(PaymentMethod)) == 0
    # The draft is gone: its pages send the admin back to the start.
    resp = admin.get(step2)
    assert resp.status_code == 302 and resp.location == "/admin/paymethods/new"


def test_jumping_ahead_to_step3_is_refused(admin):
    step2 = start(admin)
    for method_name in ("get", "post"):
        resp = getattr(admin, method_name)(step_url(step2, "settings"), data=STEP3)
        assert resp.status_code == 302 and resp.location == step2
    assert db.session.scalar(select(db.func.count()).select_from(PaymentMethod)) == 0
    # An invalid step 2 does not open step 3 either, nor does Back from a valid one.
    admin.post(step2, data=dict(STEP2, shop_id="bad-shop"))
    assert admin.get(step_url(step2, "settings")).location == step2
    admin.post(step2, data=STEP2)
    assert admin.get(step_url(step2, "settings")).status_code == 200
    admin.post(step2, data=dict(STEP2, action="back"))
    assert admin.get(step_url(step2, "settings")).location == step2


def test_draft_belongs_to_its_admin_and_expires(admin, fapp):
    step2 = start(admin)
    draft_id = step2.split("/")[-2]
    create_admin("second@test.example", "second-pass-1")
    other = fapp.test_client()
    login(other, "second@test.example", "second-pass-1")
    assert other.get(step2).location == "/admin/paymethods/new"
    assert db.session.get(PaymethodDraft, draft_id) is not None  # not deleted by the other admin
    # Expired: refused and removed by the next use of the wizard.
    draft = db.session.get(PaymethodDraft, draft_id)
    draft.expires_at = utcnow() - timedelta(minutes=1)
    db.session.commit()
    assert admin.get(step2).location == "/admin/paymethods/new"
    db.session.expire_all()
    assert db.session.get(PaymethodDraft, draft_id) is None
    ttl = fapp.config["WIZARD_DRAFT_TTL_MINUTES"]
    step2 = start(admin)
    draft = db.session.get(PaymethodDraft, step2.split("/")[-2])
    assert timedelta(minutes=ttl - 1) < draft.expires_at - utcnow() <= timedelta(minutes=ttl)


def _session_payload(app, client) -> str:
    cookie = client.get_cookie(app.config.get("SESSION_COOKIE_NAME", "session"))
    if cookie is None:
        return ""
    return repr(app.session_interface.get_signing_serializer(app).loads(cookie.value))


def test_no_secret_in_any_response_or_session_cookie(admin, fapp):
    bodies, sessions = [], []

    def keep(resp):
        bodies.append(resp.get_data(as_text=True) + repr(dict(resp.headers)))
        sessions.append(_session_payload(fapp, admin))
        return resp

    step2 = start(admin)
    keep(admin.get(step2))
    keep(admin.post(step2, data=dict(STEP2, shop_id="bad-shop")))  # error page after typing the secret
    keep(admin.post(step2, data=dict(STEP2, action="back")))
    keep(admin.get(step_url(step2, "module")))
    keep(admin.get(step2))
    keep(admin.post(step2, data=STEP2))
    keep(admin.get(step_url(step2, "settings")))
    keep(admin.post(step_url(step2, "settings"), data=dict(STEP3, min_amount="x")))
    keep(admin.post(step_url(step2, "settings"), data=dict(STEP3, action="back")))
    keep(admin.post(step2, data=dict(STEP2, secret="")))
    resp = keep(admin.post(step_url(step2, "settings"), data=STEP3))
    for url in (resp.location, "/admin/paymethods", resp.location + "/edit", resp.location + "/edit?tab=settings"):
        keep(admin.get(url))
    keep(admin.post(resp.location + "/edit?tab=integration", data={"shop_id": "bad-shop", "secret": ""}))
    assert any("_user_id" in s for s in sessions)  # the cookie was really decoded
    for text in bodies + sessions:
        assert SECRET not in text
    assert full_settings(method())["secret"] == SECRET


def test_secrets_encrypted_at_rest(tmp_path):
    app = make_app(tmp_path, f"sqlite:///{tmp_path / 'rest.sqlite'}", EXTRA_MODULES=FAKE)
    with app.app_context():
        create_admin(*ADMIN)
        c = app.test_client()
        login(c, *ADMIN)
        step2 = start(c)
        c.post(step2, data=STEP2)
        # Committed data is in the database file or its write-ahead log: read both.
        draft_bytes = b"".join(p.read_bytes() for p in tmp_path.glob("rest.sqlite*"))
        assert b"shop-1" in draft_bytes  # the file is readable and holds the draft
        assert SECRET.encode() not in draft_bytes
        c.post(step_url(step2, "settings"), data=STEP3)
        raw = b"".join(p.read_bytes() for p in tmp_path.glob("rest.sqlite*"))
        assert b"Cards" in raw and SECRET.encode() not in raw
        m = db.session.scalars(select(PaymentMethod)).one()
        assert "secret" not in m.settings and decrypt_json(m.secrets_encrypted) == {"secret": SECRET}


# --- the method's page and the edit tabs ------------------------------------------------------------

def test_core_warns_about_plain_http_and_missing_base_url(admin, fapp):
    method_id = walk(admin)
    fapp.config["BASE_URL"] = "http://billing.example.com"
    page = admin.get(f"/admin/paymethods/{method_id}").get_data(as_text=True)
    assert "plain http" in page and 'data-copy="http://billing.example.com/mancgi/pmfake/result"' in page
    fapp.config["BASE_URL"] = ""
    page = admin.get(f"/admin/paymethods/{method_id}").get_data(as_text=True)
    assert "BILLCORE_BASE_URL is not set" in page
    assert 'data-copy="http://localhost/mancgi/pmfake/result"' in page


def test_method_page_labels_and_a_failing_setup_hook(admin, fapp):
    m = add_paymethod("pmfake", {"shop_id": "boom", "secret": SECRET, "test_mode": False}, name="Alpha")
    resp = admin.get(f"/admin/paymethods/{m.id}")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "could not describe the gateway" in html and SECRET not in html
    log = (Path(fapp.config["LOG_DIR"]) / "paymethods.log").read_text()
    assert "RuntimeError: cannot reach the gateway with ***" in log and SECRET not in log
    assert "<th scope=\"row\">Shop id</th><td>boom</td>" in html and "<th scope=\"row\">Test mode</th><td>No</td>" in html
    assert re.search(r"<th scope=\"row\">Secret key</th><td><span class=\"tag\">set</span>", html)


def test_edit_integration_keeps_blank_secret_and_validates(admin):
    method_id = walk(admin)
    url = f"/admin/paymethods/{method_id}/edit?tab=integration"
    html = admin.get(url).get_data(as_text=True)
    assert 'value="shop-1"' in html and SECRET not in html and "leave blank to keep" in html
    assert 'class="active" aria-current="page">Integration settings' in html
    resp = admin.post(url, data={"shop_id": "bad-shop", "secret": "", "hash_algorithm": "md5"})
    assert resp.status_code == 400
    assert "The gateway does not know this shop." in field_error(resp.get_data(as_text=True), "shop_id")
    # Blank secret: kept; the module is asked with the method's currency (RUB, so test mode is fine).
    resp = admin.post(url, data={"shop_id": "shop-9", "secret": "", "hash_algorithm": "sha256", "test_mode": "y"})
    assert resp.status_code == 302
    m = method()
    assert m.settings == {"shop_id": "shop-9", "hash_algorithm": "sha256", "test_mode": True}
    assert full_settings(m)["secret"] == SECRET
    assert admin.post(url, data={"shop_id": "shop-9", "secret": "new-secret-2"}).status_code == 302
    assert full_settings(method())["secret"] == "new-secret-2"


def test_edit_method_settings_tab(admin):
    method_id = walk(admin)
    url = f"/admin/paymethods/{method_id}/edit?tab=settings"
    html = admin.get(url).get_data(as_text=True)
    assert 'value="Cards"' in html and 'value="15000.50"' in html and 'value="2.5"' in html
    resp = admin.post(url, data=dict(STEP3, max_amount="5", min_amount="10"))
    assert resp.status_code == 400 and "must not be less than the minimum" in resp.get_data(as_text=True)
    # USD with the method's test mode on: the module's hook refuses it on the currency.
    resp = admin.post(url, data=dict(STEP3, currency="USD"))
    assert resp.status_code == 400 and "USD payments cannot be tested." in resp.get_data(as_text=True)
    data = dict(STEP3, name="Renamed", commission_percent="0", sort_order="")
    data.pop("active")
    assert admin.post(url, data=data).status_code == 302
    m = method()
    assert (m.name, m.commission_percent, m.active, m.sort_order) == ("Renamed", Decimal("0"), False, 5)
    assert admin.get(f"/admin/paymethods/{method_id}/edit?tab=nope").status_code == 404


# --- the list and its actions ------------------------------------------------------------------------

def _methods():
    db.session.expire_all()
    return [(m.name, m.sort_order) for m in db.session.scalars(
        select(PaymentMethod).order_by(PaymentMethod.sort_order, PaymentMethod.id))]


def test_list_shows_methods_with_counts_and_actions(admin):
    a = add_paymethod("pmfake", {"shop_id": "a", "secret": "xxxxxx1"}, name="Alpha", sort_order=1)
    add_paymethod("pmfake", {"shop_id": "b"}, name="Beta", sort_order=2, active=False)
    user = create_client(*CLIENT, currency="RUB")
    service.create_payment(user.account_id, a.id, Decimal("100"), source="test", actor="test")
    html = admin.get("/admin/paymethods").get_data(as_text=True)
    row_a = html.split(f'data-id="{a.id}"', 1)[1].split("</tr>", 1)[0]
    assert "Alpha" in row_a and "Fake gateway" in row_a and "RUB" in row_a and "Active" in row_a
    assert '<td data-label="Payments" class="num">1</td>' in row_a  # one payment
    assert "Disabled" in html.split("Beta", 1)[1].split("</tr>", 1)[0]
    assert "/admin/paymethods/new" in html and "xxxxxx1" not in html


def test_enable_disable(admin):
    m = add_paymethod("pmfake", {}, name="Alpha")
    resp = admin.post(f"/admin/paymethods/{m.id}/disable")
    assert resp.status_code == 302 and resp.location == "/admin/paymethods"
    assert method().active is False
    resp = admin.post(f"/admin/paymethods/{m.id}/enable", data={"next": f"/admin/paymethods/{m.id}"})
    assert resp.location == f"/admin/paymethods/{m.id}"
    assert method().active is True
    assert admin.post(f"/admin/paymethods/{m.id}/enable", data={"next": "//evil.example/"}).location == "/admin/paymethods"
    assert admin.get(f"/admin/paymethods/{m.id}/disable").status_code == 405
    assert admin.post("/admin/paymethods/999/disable").status_code == 404


def test_disabled_method_still_completes_payments_in_progress(admin):
    m = add_paymethod("pmfake", {}, name="Alpha")
    user = create_client(*CLIENT, currency="RUB")
    payment = service.create_payment(user.account_id, m.id, Decimal("100"), source="test", actor="test")
    payment_id, total = payment.id, payment.total
    admin.post(f"/admin/paymethods/{m.id}/disable")
    outcome = service.set_paid(payment_id, amount=total, currency="RUB", source="pmfake", data={})
    assert outcome.changed
    db.session.expire_all()
    assert db.session.get(Payment, payment_id).status == "paid"


def test_move_up_and_down(admin):
    for name, order in (("A", 1), ("B", 2), ("C", 2)):
        add_paymethod("pmfake", {}, name=name, sort_order=order)
    ids = {name: db.session.scalars(select(PaymentMethod.id).where(PaymentMethod.name == name)).one()
           for name in "ABC"}
    assert admin.post(f"/admin/paymethods/{ids['C']}/move/up").status_code == 302
    assert _methods() == [("A", 1), ("C", 2), ("B", 3)]
    admin.post(f"/admin/paymethods/{ids['A']}/move/down")
    assert _methods() == [("C", 1), ("A", 2), ("B", 3)]
    admin.post(f"/admin/paymethods/{ids['C']}/move/up")  # already first: nothing changes
    admin.post(f"/admin/paymethods/{ids['B']}/move/down")
    assert _methods() == [("C", 1), ("A", 2), ("B", 3)]
    assert admin.post(f"/admin/paymethods/{ids['B']}/move/sideways").status_code == 404


def test_delete_unreferenced_and_refused_when_payments_refer(admin):
    keep = add_paymethod("pmfake", {}, name="Used")
    gone = add_paymethod("pmfake", {}, name="Unused")
    keep_id, gone_id = keep.id, gone.id
    user = create_client(*CLIENT, currency="RUB")
    service.create_payment(user.account_id, keep_id, Decimal("50"), source="test", actor="test")
    html = admin.get(f"/admin/paymethods/{keep_id}/delete").get_data(as_text=True)
    assert "cannot be deleted: 1 payment refers to it" in html and f"/admin/paymethods/{keep_id}/disable" in html
    resp = admin.post(f"/admin/paymethods/{keep_id}/delete", follow_redirects=True)
    assert "Disable it instead" in resp.get_data(as_text=True)
    assert "1 payment refers to it" in resp.get_data(as_text=True)  # singular for one (ngettext)
    service.create_payment(user.account_id, keep_id, Decimal("60"), source="test", actor="test")
    html = admin.get(f"/admin/paymethods/{keep_id}/delete").get_data(as_text=True)
    assert "cannot be deleted: 2 payments refer to it" in html
    db.session.expire_all()
    assert db.session.get(PaymentMethod, keep_id) is not None
    assert "Delete this payment method" in admin.get(f"/admin/paymethods/{gone_id}/delete").get_data(as_text=True)
    resp = admin.post(f"/admin/paymethods/{gone_id}/delete")
    assert resp.status_code == 302 and resp.location == "/admin/paymethods"
    db.session.expire_all()
    assert db.session.get(PaymentMethod, gone_id) is None


# --- access, CSRF, language --------------------------------------------------------------------------

PAGES = ["/admin/paymethods", "/admin/paymethods/new", "/admin/paymethods/{id}", "/admin/paymethods/{id}/edit",
         "/admin/paymethods/{id}/delete", "/admin/paymethods/new/{draft}/integration",
         "/admin/paymethods/new/{draft}/settings", "/admin/paymethods/new/{draft}/module"]
ACTIONS = ["/admin/paymethods/new", "/admin/paymethods/{id}/enable", "/admin/paymethods/{id}/disable",
           "/admin/paymethods/{id}/move/up", "/admin/paymethods/{id}/delete", "/admin/paymethods/{id}/edit",
           "/admin/paymethods/new/{draft}/cancel", "/admin/paymethods/new/{draft}/integration"]


def test_clients_and_anonymous_refused(admin, fapp):
    m = add_paymethod("pmfake", {}, name="Alpha")
    draft = start(admin).split("/")[-2]
    create_client(*CLIENT, currency="RUB")
    client = fapp.test_client()
    login(client, *CLIENT)
    anonymous = fapp.test_client()
    for url in PAGES:
        url = url.format(id=m.id, draft=draft)
        assert client.get(url).status_code == 403, url
        resp = anonymous.get(url)
        assert resp.status_code == 302 and resp.location.startswith("/login"), url
    for url in ACTIONS:
        url = url.format(id=m.id, draft=draft)
        assert client.post(url, data={"module": "pmfake", "action": "cancel"}).status_code == 403, url
        assert anonymous.post(url).status_code == 302, url
    db.session.expire_all()
    assert db.session.get(PaymethodDraft, draft) is not None
    assert method().active is True


def test_csrf_required_for_wizard_and_actions(tmp_path):
    app = make_app(tmp_path, f"sqlite:///{tmp_path / 'csrf.sqlite'}", EXTRA_MODULES=FAKE, WTF_CSRF_ENABLED=True)
    with app.app_context():
        create_admin(*ADMIN)
        m = add_paymethod("pmfake", {}, name="Alpha")
        c = app.test_client()
        page = c.get("/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
        c.post("/login", data={"email": ADMIN[0], "password": ADMIN[1], "csrf_token": token})
        assert c.post("/admin/paymethods/new", data={"module": "pmfake"}).status_code == 400
        assert c.post(f"/admin/paymethods/{m.id}/disable").status_code == 400
        html = c.get("/admin/paymethods/new").get_data(as_text=True)
        token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
        assert c.post("/admin/paymethods/new", data={"module": "pmfake", "csrf_token": token}).status_code == 302


def test_pages_follow_accept_language(admin, fapp):
    add_paymethod("pmfake", {}, name="Alpha", name_ru="Альфа")
    with fapp.test_request_context(headers={"Accept-Language": "ru"}):
        expected = [gettext(t) for t in ("Add a payment method", "Payment methods", "Select a payment module")]
    assert expected[0] != "Add a payment method"  # the Russian catalogue translates the wizard
    html = admin.get("/admin/paymethods/new", headers={"Accept-Language": "ru"}).get_data(as_text=True)
    assert all(text in html for text in expected)
    for url in ("/admin/paymethods", "/admin/paymethods/new"):
        html = admin.get(url, headers={"Accept-Language": "ru"}).get_data(as_text=True)
        assert '<html lang="ru">' in html
    assert "Альфа" in admin.get("/admin/paymethods", headers={"Accept-Language": "ru"}).get_data(as_text=True)
    assert '<html lang="en">' in admin.get("/admin/paymethods", headers={"Accept-Language": "en"}).get_data(as_text=True)


# --- the in-tree template module ---------------------------------------------------------------------

def test_wizard_with_pmtemplate(admin):
    info = get_registry().info("pmtemplate")
    form_cls = get_registry().call("pmtemplate", "billcore_integration_form", paymethod=None)
    if info is None or form_cls is None or not hasattr(form_cls, "merchant_id"):
        pytest.skip("pmtemplate has no integration form yet")
    step2 = start(admin, "pmtemplate")
    html = admin.get(step2).get_data(as_text=True)
    assert 'name="merchant_id"' in html and 'name="secret"' in html
    resp = admin.post(step2, data={"merchant_id": "shop 1", "secret": "tmpl-secret-123", "action": "next"})
    assert resp.status_code == 400 and "tmpl-secret-123" not in resp.get_data(as_text=True)
    resp = admin.post(step2, data={"merchant_id": "shop-1", "secret": "", "test_mode": "y", "action": "next"})
    assert resp.status_code == 302, resp.get_data(as_text=True)
    resp = admin.post(resp.location, data=dict(STEP3, currency="RUB"))
    assert resp.status_code == 302, resp.get_data(as_text=True)
    m = method()
    assert m.module == "pmtemplate" and m.settings["merchant_id"] == "shop-1"
    assert full_settings(m)["secret"] == "tmpl-secret-123"
    page = admin.get(resp.location).get_data(as_text=True)
    assert "tmpl-secret-123" not in page and "gateway-setup" in page
