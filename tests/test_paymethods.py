"""Reading a payment method's settings: the callbacks' one-query context and the secrets cache."""
from __future__ import annotations

import logging
from decimal import Decimal

from billcore import logs
from billcore.db import db
from billcore.models import PaymentMethod
from billcore.paymethods import callback_context, full_settings, store_settings
from billcore.payments import service
from billcore.plugins import get_registry
from billcore.testing.fixtures import add_paymethod


def test_callback_context_reads_payment_and_full_settings(app, client_user):
    method = add_paymethod("pmtemplate", {"merchant_id": "shop-1", "secret": "s3cret-key-1"})
    payment = service.create_payment(client_user.account_id, method.id, "150.00")
    found = callback_context(payment.id)
    assert found is not None
    assert (found.payment_id, found.status, found.total, found.currency) == (payment.id, "new",
                                                                            Decimal("150.00"), "RUB")
    assert (found.account_id, found.paymethod_id, found.module, found.active) == (
        client_user.account_id, method.id, "pmtemplate", True)
    assert found.settings == full_settings(method)
    assert found.settings["secret"] == "s3cret-key-1"


def test_callback_context_of_an_unknown_payment_is_none(app):
    assert callback_context(987654321) is None


def test_changed_secret_is_read_at_once_despite_the_cache(app, client_user):
    method = add_paymethod("pmtemplate", {"merchant_id": "shop-1", "secret": "old-secret-1"})
    payment = service.create_payment(client_user.account_id, method.id, "10.00")
    assert callback_context(payment.id).settings["secret"] == "old-secret-1"
    stored = db.session.get(PaymentMethod, method.id)
    store_settings(stored, get_registry().info("pmtemplate"), {"merchant_id": "shop-1", "secret": "new-secret-2"})
    db.session.commit()
    settings = callback_context(payment.id).settings
    assert settings["secret"] == "new-secret-2" and settings["merchant_id"] == "shop-1"


def test_cached_file_logger_follows_a_changed_level(app):
    logger = logs.file_logger("leveltest")
    assert logs.file_logger("leveltest") is logger
    app.config["LOG_LEVELS"] = {"leveltest": "WARNING"}
    assert logs.file_logger("leveltest").level == logging.WARNING
    app.config["LOG_LEVELS"] = {}
    app.config["LOG_LEVEL"] = logging.DEBUG
    assert logs.file_logger("leveltest").level == logging.DEBUG
