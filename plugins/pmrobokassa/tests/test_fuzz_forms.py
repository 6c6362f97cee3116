"""Property-based fuzzing of the add-wizard's forms (``/admin/paymethods/new`` and its steps) with the
Robokassa module: random, oversized, non-UTF-8 and missing fields never give a 500, and a password typed
into the form never comes back in any page.
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billcore.db import db
from billcore.models import PaymentMethod

from .test_wizard import STEP2, STEP3

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

values = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", "existing", "new", "md5", "sha512", "MD5", "ripemd160", "y", "n", "0", "-1", "1e9",
                     "100,5", "NaN", "RUB", "USD", "https://auth.robokassa.ru/Merchant/Index.aspx",
                     "javascript:alert(1)", "<script>alert(1)</script>", "x" * 5000, "\x00", "%FF",
                     "next", "back", "cancel"]),
)
# Passwords are recognisable so that their echo anywhere in a page can be detected.
secrets = st.from_regex(r"Zq[A-Za-z0-9]{8,14}7", fullmatch=True)
STEP2_NAMES = list(STEP2) + ["csrf_token", "unknown"]
STEP3_NAMES = list(STEP3) + ["min_amount", "max_amount", "delete_after_days", "description", "description_ru",
                             "name_ru", "comment", "recurring", "unknown"]


@pytest.fixture
def app_config() -> dict:
    """Never ask a fuzzed URL for Robokassa's currency list: no network in tests."""
    return {"PMROBOKASSA_FETCH_CURRENCIES": False}


def _body_clean(response, typed: list[str]) -> str:
    assert response.status_code < 500, response.get_data()[:300]
    body = response.get_data(as_text=True)
    for secret in typed:
        assert secret not in body
    return body


def _new_draft(admin) -> str:
    response = admin.post("/admin/paymethods/new", data={"module": "pmrobokassa"})
    assert response.status_code == 302
    return response.location


@FUZZ
@given(fields=st.dictionaries(st.sampled_from(["module", "action", "x"]), values, max_size=3))
def test_step1_random_fields(app, admin_client, fields):
    _body_clean(admin_client.post("/admin/paymethods/new", data=fields), [])


@FUZZ
@given(fields=st.dictionaries(st.sampled_from(STEP2_NAMES), values, max_size=10),
       passwords=st.dictionaries(st.sampled_from(["password1", "password2", "password3"]), secrets),
       base_valid=st.booleans())
def test_step2_random_fields_never_500_never_echo_passwords(app, admin_client, fields, passwords, base_valid):
    step2 = _new_draft(admin_client)
    data = {**(STEP2 if base_valid else {}), **fields, **passwords}
    typed = list(passwords.values())
    response = admin_client.post(step2, data=data)
    _body_clean(response, typed)
    # Whatever happened, every later page of the wizard keeps the typed passwords to itself.
    for url in {step2, response.location or step2}:
        _body_clean(admin_client.get(url), typed)


@FUZZ
@given(fields=st.dictionaries(st.sampled_from(STEP3_NAMES), values, max_size=10), base_valid=st.booleans())
def test_step3_random_fields(app, admin_client, fields, base_valid):
    step2 = _new_draft(admin_client)
    step3 = admin_client.post(step2, data=STEP2)
    assert step3.status_code == 302
    form = {**(STEP3 if base_valid else {}), **fields}
    methods_before = db.session.query(PaymentMethod).count()  # examples share the app: earlier ones made some
    db.session.rollback()
    response = admin_client.post(step3.location, data=form)
    body = _body_clean(response, [STEP2["password1"], STEP2["password2"], STEP2["password3"]])
    if response.status_code == 302 and "/paymethods/new" not in (response.location or ""):
        db.session.rollback()
        created = db.session.query(PaymentMethod).order_by(PaymentMethod.id.desc()).first()
        if form.get("action") == "cancel":  # the wizard's Cancel button: back to the list, nothing created
            assert db.session.query(PaymentMethod).count() == methods_before, body[:200]
            assert response.location.endswith("/admin/paymethods")
        else:
            assert db.session.query(PaymentMethod).count() == methods_before + 1, body[:200]
            assert created.currency == "RUB"
        _body_clean(admin_client.get(response.location), [STEP2["password1"], STEP2["password2"]])


@FUZZ
@given(raw=st.binary(max_size=300), step=st.sampled_from(["new", "integration", "settings"]))
def test_non_utf8_bodies(app, admin_client, raw, step):
    if step == "new":
        url = "/admin/paymethods/new"
    else:
        url = _new_draft(admin_client)
        if step == "settings":
            url = admin_client.post(url, data=STEP2).location
    body = b"action=next&name=" + raw + b"&password1=" + raw + b"&" + raw
    response = admin_client.post(url, data=body, content_type="application/x-www-form-urlencoded")
    _body_clean(response, [])


@pytest.mark.parametrize("field", ["name", "name_ru", "description", "description_ru", "comment"])
def test_nul_character_is_a_form_error_on_every_database(app, admin_client, field):
    """PostgreSQL refuses NUL in a text column (the fuzzing above found the 500): the form says so."""
    step3 = admin_client.post(_new_draft(admin_client), data=STEP2)
    response = admin_client.post(step3.location, data={**STEP3, field: "Robo\x00kassa"})
    assert response.status_code == 400  # the wizard's answer to a form with errors
    assert "Must not contain a NUL character." in response.get_data(as_text=True)
    db.session.rollback()
    assert db.session.query(PaymentMethod).count() == 0
