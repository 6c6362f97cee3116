"""Adding and editing a Robokassa method through the admin wizard (the core's wizard pages, this module's form)."""
from __future__ import annotations

import re

from billcore.db import db
from billcore.models import PaymentMethod
from billcore.paymethods import full_settings

from .helpers import P1, P2, P3

STEP2 = {"client": "existing", "identifier": "demo", "password1": P1, "password2": P2, "password3": P3,
         "hash_algorithm": "sha256", "payment_method": "BankCardPSR",
         "url": "https://auth.robokassa.ru/Merchant/Index.aspx", "receipt_sno": "", "receipt_tax": "none",
         "receipt_payment_method": "full_payment", "receipt_payment_object": "service",
         "receipt_item_name": "Hosting", "action": "next"}
STEP3 = {"name": "Robokassa", "currency": "RUB", "commission_amount": "0", "commission_percent": "0",
         "active": "y", "sort_order": "1", "allow_refund": "y", "action": "next"}


def _step2(admin) -> str:
    response = admin.post("/admin/paymethods/new", data={"module": "pmrobokassa"})
    assert response.status_code == 302, response.data
    return response.location


def test_wizard_adds_a_robokassa_method(app, admin_client):
    step2 = _step2(admin_client)
    page = admin_client.get(step2).get_data(as_text=True)
    for name in ("identifier", "password1", "password2", "password3", "hash_algorithm", "payment_method", "url",
                 "test_mode", "receipt_enabled"):
        assert f'name="{name}"' in page
    assert "partner.robokassa.ru/Reg/Register" in page
    refused = admin_client.post(step2, data={**STEP2, "password2": P1})
    assert refused.status_code == 400 and "must be different" in refused.get_data(as_text=True)
    short = admin_client.post(step2, data={**STEP2, "password1": "abc"})
    assert short.status_code == 400 and "at least 8 characters" in short.get_data(as_text=True)
    response = admin_client.post(step2, data=STEP2)
    assert response.status_code == 302, response.get_data(as_text=True)
    usd = admin_client.post(response.location, data={**STEP3, "currency": "USD"})
    assert usd.status_code == 400 and "RUB" in usd.get_data(as_text=True)
    done = admin_client.post(response.location, data=STEP3)
    assert done.status_code == 302
    method_id = int(re.fullmatch(r"/admin/paymethods/(\d+)", done.location).group(1))
    method = db.session.get(PaymentMethod, method_id)
    settings = full_settings(method)
    assert settings["password1"] == P1 and settings["password3"] == P3 and settings["hash_algorithm"] == "sha256"
    assert P1 not in str(method.settings) and P2 not in str(method.settings)
    view = admin_client.get(done.location).get_data(as_text=True)
    assert "https://billing.example.com/mancgi/rkresult" in view and "SHA256" in view
    assert P1 not in view and P2 not in view and P3 not in view

    # Editing with blank passwords keeps them; a new one replaces only itself.
    edit = f"/admin/paymethods/{method_id}/edit?tab=integration"
    form = admin_client.get(edit).get_data(as_text=True)
    assert P1 not in form and P2 not in form
    saved = admin_client.post(edit, data={**STEP2, "password1": "", "password2": "", "password3": "",
                                          "hash_algorithm": "md5"})
    assert saved.status_code == 302, saved.get_data(as_text=True)
    db.session.expire_all()
    settings = full_settings(db.session.get(PaymentMethod, method_id))
    assert (settings["password1"], settings["password2"], settings["password3"]) == (P1, P2, P3)
    assert settings["hash_algorithm"] == "md5"
    clash = admin_client.post(edit, data={**STEP2, "password1": "", "password2": P1, "password3": ""})
    assert clash.status_code == 400 and "must be different" in clash.get_data(as_text=True)
