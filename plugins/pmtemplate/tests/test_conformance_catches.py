"""The conformance suite must fail a module that breaks the contract (checked with pmtemplate, broken)."""
from __future__ import annotations

from pathlib import Path

import pytest

import pmtemplate.notification as notification
from billcore.testing.conformance import ConformanceSuite

from .adapter import TemplateAdapter


class _Suite(ConformanceSuite):
    adapter = TemplateAdapter()


def test_accepting_unsigned_notifications_fails_the_suite(app, monkeypatch):
    monkeypatch.setattr(notification, "verify", lambda params, secret: True)
    with pytest.raises(AssertionError, match="got the success answer|changed the payment"):
        _Suite().test_unsigned_and_forged_notifications_change_nothing(app)


def test_a_leaking_log_fails_the_suite(app, monkeypatch):
    real = notification._reject

    def leaky(payment_id, reason, data, answer, log):
        # A careless module writing its own file, past billcore's masking logger.
        with open(Path(app.config["LOG_DIR"]) / "careless.log", "a") as f:
            f.write("secret is conformance-secret-1\n")
        return real(payment_id, reason, data, answer, log)

    monkeypatch.setattr(notification, "_reject", leaky)
    with pytest.raises(AssertionError, match="contains a secret"):
        _Suite().test_secrets_never_leak(app)


def test_a_default_prepare_follows_the_start_url(app):
    class Plain(TemplateAdapter):
        prepare_payment = TemplateAdapter.__bases__[0].prepare_payment

    suite = _Suite()
    suite.adapter = Plain()
    _, payment, _, _ = suite.setup_payment(app)
    assert payment.status == "inpay"


def test_wrong_success_answer_fails_the_suite(app):
    class Wrong(TemplateAdapter):
        def success_answer(self, payment):
            return "YES"

    suite = _Suite()
    suite.adapter = Wrong()
    with pytest.raises(AssertionError):
        suite.test_genuine_notification_credits_exactly_once(app)
