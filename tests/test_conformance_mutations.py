"""The conformance suite must fail a module that breaks the contract: mutation tests of the suite itself.

They live here, in billcore's own tests, rather than beside pmtemplate's: a module generated from
pmtemplate rewrites its notification handler, which these tests edit line by line.

Each test plants one mistake in pmtemplate, a working module, and asserts that the specific suite test
fails with its specific message, so it fails if the suite ever loses that check. A mistake is planted as

* a copy of pmtemplate's notification module with one edit of its source (:func:`mutant`), installed as
  the app's notification view: a gateway author's slip, one line at a time;
* a view registered differently before the app is made (:func:`before_app`);
* or a patched core check (the start door, the payment lookup), for mistakes the core now prevents.

Everything runs in-process on the ``app`` fixture (SQLite, and PostgreSQL when configured), with CSRF on
as the suite's own test class has it.
"""
from __future__ import annotations

import inspect
import types
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from flask import abort, current_app
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

import billcore.callbacks as callbacks
import billcore.checkout.views as checkout_views
import pmtemplate.notification as notification
import pmtemplate.views as views
from billcore.db import db
from billcore.gateway import address_in
from billcore.models import Payment, PaymentMethod
from billcore.paymethods import full_settings
from billcore.testing.conformance import SUITE_CONFIG, ConformanceSuite

from pmtemplate.tests.adapter import KEY, TemplateAdapter

ENDPOINT = f"{KEY}.tplresult"
MERCHANT_CHECK = ('    if data.get("merchant_id") != settings.get("merchant_id"):\n'
                  '        raise Refuse("another merchant", answer="bad merchant")\n')
VERIFY = '    if not verify(data, str(settings.get("secret") or "")):\n'
DECORATOR = '@gateway_callback(KEY, source=SOURCE, id_field="payment_id", fields=FIELDS, log_file="tplresult")'
AFTER_LOG = '    log = file_logger("tplresult")\n'
PAID_ANSWER = '        return Answer(SUCCESS_ANSWER)\n    if state == "failed":'
PARSE_AMOUNT = 'amount = Decimal(data.get("amount", ""))'
NETWORKS = ["198.51.100.0/24"]  # TEST-NET-2 (RFC 5737): the allow-list of the adapter below


class _Suite(ConformanceSuite):
    adapter = TemplateAdapter()


class AllowListAdapter(TemplateAdapter):
    """pmtemplate's adapter for a copy of the module that takes a ``networks`` allow-list setting."""

    inside_address = "198.51.100.7"

    def allowlist_settings(self) -> dict[str, Any] | None:
        """The valid settings with the allow-list."""
        return {**self.valid_settings(), "networks": NETWORKS}


def before_app(patch: Callable[[pytest.MonkeyPatch], None]) -> Callable:
    """Run ``patch(monkeypatch)`` before the test's app is made (for mistakes in what a module registers)."""
    def mark(test: Callable) -> Callable:
        test.before_app = patch  # type: ignore[attr-defined]
        return test

    return mark


@pytest.fixture
def app_config(request, monkeypatch):
    """The suite's apps have CSRF on; a test's :func:`before_app` patch is applied first."""
    patch = getattr(request.function, "before_app", None)
    if patch is not None:
        patch(monkeypatch)
    return dict(SUITE_CONFIG)


def mutant(app, *edits: tuple[str, str], **names: Any) -> types.ModuleType:
    """Install a copy of pmtemplate's notification module, with each ``(old, new)`` of ``edits`` applied to
    its source, as the app's notification view; ``names`` are added to the copy's globals."""
    source = inspect.getsource(notification)
    for old, new in edits:
        assert source.count(old) == 1, f"pmtemplate/notification.py no longer has {old!r} once: update this mutation"
        source = source.replace(old, new)
    module = types.ModuleType(notification.__name__)
    module.__dict__.update(__file__=notification.__file__, __package__=KEY, **names)
    exec(compile(source, notification.__file__, "exec"), module.__dict__)  # noqa: S102 - our own file, edited
    assert ENDPOINT in app.view_functions
    app.view_functions[ENDPOINT] = module.handle_notification
    return module


def fails(app, test: str, match: str, suite: ConformanceSuite | None = None) -> None:
    """The suite's ``test`` fails on ``app`` with a message matching ``match``."""
    with pytest.raises(AssertionError, match=match):
        getattr(suite or _Suite(), test)(app)


# -- the harness itself ------------------------------------------------------------------------------

def test_an_unedited_copy_passes_the_suite(app):
    """The copy mechanism plants nothing by itself: the failures below are the planted mistakes'."""
    mutant(app)
    suite = _Suite()
    suite.test_genuine_notification_credits_exactly_once(app)
    suite.test_unsigned_and_forged_notifications_change_nothing(app)
    suite.test_another_merchants_notification_changes_nothing(app)


def test_the_suite_refuses_to_run_with_csrf_off(app):
    """With CSRF off a notification view that is not exempt would pass (how mistake 1 once slipped by)."""
    app.config["WTF_CSRF_ENABLED"] = False
    fails(app, "test_genuine_notification_credits_exactly_once", "must run with CSRF on")


# -- the notification's signature ---------------------------------------------------------------------

def test_verifying_with_the_wrong_secret_fails_the_suite(app):
    mutant(app, (VERIFY, VERIFY.replace('"secret"', '"merchant_id"')))
    fails(app, "test_genuine_notification_credits_exactly_once",
          r"the genuine notification answered 400 'bad signature', the gateway expects 200 'OK'")


def test_accepting_unsigned_notifications_fails_the_suite(app, monkeypatch):
    monkeypatch.setattr(notification, "verify", lambda params, secret: True)
    fails(app, "test_unsigned_and_forged_notifications_change_nothing", "unsigned_notification got the success answer")


def test_no_event_on_a_refusal_fails_the_suite(app):
    """Answering an error without Refuse bypasses billcore's record of the refusal."""
    mutant(app, ('        raise Refuse("no signature" if not data.get("signature") else "bad signature", '
                 'answer="bad signature")', '        return Answer("bad signature", 400)'))
    fails(app, "test_unsigned_and_forged_notifications_change_nothing",
          "unsigned_notification was not recorded as a payment event")


# -- the answer -----------------------------------------------------------------------------------------

def test_a_different_answer_on_repeats_fails_the_suite(app):
    mutant(app, (PAID_ANSWER, PAID_ANSWER.replace("Answer(SUCCESS_ANSWER)",
                                                  'Answer(SUCCESS_ANSWER if outcome.changed else "DUPLICATE")')))
    fails(app, "test_genuine_notification_credits_exactly_once", r"a repeat answered 200 b'DUPLICATE', the first 200 b'OK'")


def test_a_wrong_success_answer_fails_the_suite(app):
    """The module answers what it likes; the suite holds it to what it declares (ModuleInfo)."""
    mutant(app, ('SUCCESS_ANSWER = "OK"', 'SUCCESS_ANSWER = "YES"'))
    fails(app, "test_genuine_notification_credits_exactly_once", r"answered 200 'YES', the gateway expects 200 'OK'")


def test_no_declared_success_answer_fails_the_suite(app, monkeypatch):
    registry = app.extensions["billcore.modules"]
    monkeypatch.setitem(registry.modules, KEY, replace(registry.info(KEY), success_answer=None))
    fails(app, "test_module_describes_itself", "declares no ModuleInfo.success_answer")
    fails(app, "test_genuine_notification_credits_exactly_once", "declares no ModuleInfo.success_answer")


def test_success_on_a_database_error_fails_the_suite(app):
    """A module that swallows a database error and answers OK: the gateway never retries, nothing is paid."""
    mutant(app, ("        except IllegalTransition as exc:\n            # Only",
                 "        except SQLAlchemyError:\n            return Answer(SUCCESS_ANSWER)\n"
                 "        except IllegalTransition as exc:\n            # Only"), SQLAlchemyError=SQLAlchemyError)
    fails(app, "test_a_database_failure_is_never_success", "answered success while the database failed")


# -- money ----------------------------------------------------------------------------------------------

def test_a_float_amount_fails_the_suite(app):
    mutant(app, (PARSE_AMOUNT, 'amount = float(data.get("amount", ""))'))
    fails(app, "test_genuine_notification_credits_exactly_once", "the genuine notification answered 500")


def test_crediting_the_payments_own_amount_fails_the_suite(app):
    """The module credits the payment's total whatever the gateway says it received."""
    mutant(app, (PARSE_AMOUNT, "amount = Decimal(call.payment.total)"))
    fails(app, "test_a_different_amount_is_never_credited", "a notification for 50.00 got the success answer")


# -- secrets --------------------------------------------------------------------------------------------

def careless_log(text: str) -> None:
    """A module writing its own file, past billcore's masking logger."""
    with open(Path(current_app.config["LOG_DIR"]) / "careless.log", "a", encoding="utf-8") as f:
        f.write(text + "\n")


def test_a_secret_in_a_log_fails_the_suite(app):
    mutant(app, (AFTER_LOG, AFTER_LOG + "    careless_log(f'notification {dict(call.params)} with {call.payment.settings}')\n"),
           careless_log=careless_log)
    fails(app, "test_secrets_never_leak", "careless.log contains a secret")


def test_a_secret_in_an_answer_fails_the_suite(app):
    mutant(app, ('answer="bad signature")', 'answer=f"bad signature, expected one made with {settings[\'secret\']}")'))
    fails(app, "test_secrets_never_leak", "a response carries a secret")


# -- the door: CSRF, merchant, module, addresses ------------------------------------------------------------

def _plain_notification_view(monkeypatch: pytest.MonkeyPatch) -> None:
    real = notification.handle_notification

    def tplresult():  # a plain view around the handler, as a module that skips gateway_callback registers
        return real()

    monkeypatch.setattr(views, "handle_notification", tplresult)


@before_app(_plain_notification_view)
def test_no_csrf_exemption_fails_the_suite(app):
    """In production every notification would get 400 and nothing would ever be credited."""
    assert f"{KEY}.tplresult" in app.view_functions  # the plain view is the one registered
    fails(app, "test_genuine_notification_credits_exactly_once", "answered 400 .*not exempt from CSRF")


def merchant_settings(merchant_id: str | None) -> dict[str, Any] | None:
    """The settings of the pmtemplate method of ``merchant_id`` (what a module that trusts the
    notification's merchant looks up)."""
    methods = db.session.execute(select(PaymentMethod).where(PaymentMethod.module == KEY)).scalars()
    return next((s for s in map(full_settings, methods) if s.get("merchant_id") == merchant_id), None)


def test_no_merchant_check_fails_the_suite(app):
    """Another merchant sharing the secret: only the merchant check refuses its notification."""
    mutant(app, (MERCHANT_CHECK, ""))
    fails(app, "test_another_merchants_notification_changes_nothing", "other merchant #2 got the success answer")


def test_verifying_with_the_named_merchants_secret_fails_the_suite(app):
    """The module checks the signature of whichever merchant the notification names."""
    mutant(app, (VERIFY, '    settings = merchant_settings(data.get("merchant_id")) or settings\n' + VERIFY),
           merchant_settings=merchant_settings)
    fails(app, "test_another_merchants_notification_changes_nothing", "other merchant #1 got the success answer")


def test_a_lazy_other_merchant_notification_fails_the_suite(app):
    """An adapter cannot pass the merchant test with a notification that is merely forged."""
    class Lazy(TemplateAdapter):
        def other_merchant_notification(self, payment, settings):
            return self.forged_notification(payment, settings)

    suite = _Suite()
    suite.adapter = Lazy()
    fails(app, "test_another_merchants_notification_changes_nothing",
          "its own payment answered 400 'bad signature', the gateway expects 200 'OK'", suite)


def test_accepting_another_modules_payment_fails_the_suite(app, monkeypatch):
    real = callbacks.callback_context
    monkeypatch.setattr(callbacks, "callback_context",
                        lambda payment_id: (lambda found: found and replace(found, module=KEY))(real(payment_id)))
    fails(app, "test_another_modules_payment_is_not_touched", "another module's payment got the success answer")


def _with_allowlist(app) -> None:
    mutant(app, (DECORATOR, DECORATOR[:-1] + ", allowed_addresses=lambda settings: settings.get('networks'))"))


def test_an_allowlist_passes_the_suite(app):
    _with_allowlist(app)
    suite = _Suite()
    suite.adapter = AllowListAdapter()
    suite.test_address_allowlist(app)


def test_a_disabled_allowlist_fails_the_suite(app):
    """The module keeps the allow-list setting but never checks it (the real pmtemplate has none)."""
    suite = _Suite()
    suite.adapter = AllowListAdapter()
    fails(app, "test_address_allowlist", "a notification from 203.0.113.9 got the success answer", suite)


def test_trusting_x_forwarded_for_fails_the_suite(app):
    """The module checks the allow-list itself, against a header anyone can send."""
    mutant(app, (AFTER_LOG, AFTER_LOG + (
        "    if not address_in(call.headers.get('X-Forwarded-For') or call.address, settings_of(call)):\n"
        "        raise Refuse('forbidden', status=403)\n")),
        address_in=address_in, settings_of=lambda call: call.payment.settings.get("networks") or ())
    suite = _Suite()
    suite.adapter = AllowListAdapter()
    fails(app, "test_address_allowlist", "claiming an allowed X-Forwarded-For got the success answer", suite)


def test_no_allowlist_is_a_skip_that_says_so(app):
    with pytest.raises(pytest.skip.Exception, match="declares no address allow-list"):
        _Suite().test_address_allowlist(app)


# -- the start ------------------------------------------------------------------------------------------------

def test_a_start_another_customer_may_open_fails_the_suite(app, monkeypatch):
    """The Pay button's owner check gone: another customer starts the payment and sees the gateway's request."""
    monkeypatch.setattr(checkout_views, "own_payment", lambda payment_id: db.session.get(Payment, payment_id) or abort(404))
    fails(app, "test_start_needs_the_owner", "another customer was shown the gateway's request")


def test_the_default_prepare_goes_through_the_door(app):
    """The owner's Pay marks the payment inpay, recorded as the checkout's start with the gateway's URL."""
    _, payment, _, _ = _Suite().setup_payment(app)
    assert payment.status == "inpay"
    starts = [e for e in _Suite().events(payment.id) if e.status_to == "inpay"]
    assert [e.source for e in starts] == ["checkout"] and "/fakegw/pay" in starts[0].data["url"]
