"""The conformance suite: the contract every billcore payment module must keep, as pytest tests.

A module proves it keeps the contract with two small pieces of test code:

1. an **adapter**, a subclass of :class:`ConformanceAdapter` that tells the suite how to talk to the
   module (valid settings, bad settings, how to make a genuine, a forged and an unsigned notification,
   and what the gateway must hear back);
2. a **test class** that inherits the suite and names the adapter::

       # <your package>/tests/test_conformance.py
       from billcore.testing.conformance import ConformanceSuite
       from .adapter import MyAdapter

       class TestConformance(ConformanceSuite):
           adapter = MyAdapter()

The suite's tests use the ``app`` fixture (``billcore.testing.pytest_plugin`` or billcore's own
``tests/conftest.py``), so they run on SQLite and, with ``BILLCORE_TEST_DATABASE_URL``, on PostgreSQL.

What it checks:

* the module is loaded and describes itself (a valid :class:`~billcore.paymodule.ModuleInfo` whose key
  is the adapter's ``module``; known features; each declared feature's hooks implemented; secret fields
  are fields of the integration form);
* the integration form and the validation hook accept the adapter's valid settings and reject each of its
  bad ones;
* the gateway-setup hook answers a :class:`~billcore.paymodule.GatewaySetup` naming this installation;
* the start hook answers a :class:`~billcore.paymodule.StartAction`;
* unsigned and forged notifications are refused: no success answer, status and balance unchanged, and
  the attempt is recorded as a payment event;
* a genuine notification credits the payment exactly once with the success answer, and a repeat gets the
  very same answer and credits nothing;
* no secret value ever appears in a response body, a payment event or a log file.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.datastructures import MultiDict
from werkzeug.test import TestResponse

from ..accounts import create_client, find_user
from ..db import db
from ..models import Account, LedgerEntry, Payment, PaymentEvent, PaymentMethod
from ..paymethods import full_settings
from ..paymodule import (FEATURE_CHECKPAY, FEATURE_RECURRING, FEATURE_REFUND, FEATURES, Customer, GatewaySetup,
                         ModuleInfo, StartAction)
from ..payments import service
from .fixtures import add_paymethod, login

# Hooks a module must implement when it declares a feature.
FEATURE_HOOKS = {
    FEATURE_CHECKPAY: ("billcore_check_payment",),
    FEATURE_REFUND: ("billcore_refund", "billcore_refund_status"),
    FEATURE_RECURRING: ("billcore_recurring_charge",),
}
REQUIRED_HOOKS = ("billcore_module_info", "billcore_integration_form", "billcore_validate_integration",
                  "billcore_gateway_setup", "billcore_start_payment", "billcore_blueprints")
CONFORMANCE_USER = ("conformance@test.example", "conformance-pass-1")


@dataclass(frozen=True)
class Notification:
    """One HTTP request as the gateway would send it to billcore.

    ``path`` is local to billcore (``/mancgi/rkresult``), with or without a query string; ``data`` is
    sent as an urlencoded form body (POST) and ``query`` as query parameters.
    """

    path: str
    method: str = "POST"
    data: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)


class ConformanceAdapter:
    """How the suite talks to one module. Subclass it; the methods marked *required* must be overridden.

    Attributes:
        module: the module key (the entry-point name), e.g. ``"pmtemplate"``. *Required.*
        currency: the currency of the test payment method and of the suite's client account.
        amount: the amount of the test payment (text, e.g. ``"100.00"``); the method has no commission,
            so the payment's ``total`` equals it.
    """

    module: str = ""
    currency: str = "RUB"
    amount: str = "100.00"

    def valid_settings(self) -> dict[str, Any]:
        """*Required.* Complete, valid integration settings, secrets included (the values the admin would
        type in step 2). Secret values must be at least 4 characters long so leaks can be searched for."""
        raise NotImplementedError

    def invalid_settings(self) -> list[dict[str, Any]]:
        """*Required.* Settings that must be refused, each by the integration form or by the validation
        hook (for instance: a required field missing, a secret too short, a malformed URL)."""
        raise NotImplementedError

    def form_data(self, settings: dict[str, Any]) -> dict[str, str]:
        """The form post that enters ``settings`` in the integration form. The default turns values into
        text, ``True`` into ``"y"`` and leaves out ``False``/``None`` (as a browser does with a checkbox)."""
        data = {}
        for name, value in settings.items():
            if value is None or value is False:
                continue
            data[name] = "y" if value is True else str(value)
        return data

    def paymethod_fields(self) -> dict[str, Any]:
        """Extra columns of the test payment method (``{"allow_refund": True}`` ...); default none."""
        return {}

    def prepare_payment(self, client: FlaskClient, payment: Payment, paymethod: PaymentMethod) -> None:
        """Bring a ``new`` payment to where the gateway would notify about it, as the owner's browser
        (``client`` is logged in as the payment's owner). Default: press Pay on the payment's page, i.e.
        go through the core's payment door (``POST /payments/<id>/pay``), which asks the start hook for the
        gateway's request and marks the payment ``inpay``."""
        resp = client.post(f"/payments/{payment.id}/pay", data=_csrf(client, payment.id))
        assert resp.status_code in (200, 302), f"the payment door answered {resp.status_code}"

    def genuine_notification(self, payment: Payment, settings: dict[str, Any]) -> Notification:
        """*Required.* The gateway's notification that ``payment`` was paid in full (``payment.total`` in
        ``payment.currency``), correctly signed with ``settings``' secrets."""
        raise NotImplementedError

    def forged_notification(self, payment: Payment, settings: dict[str, Any]) -> Notification:
        """*Required.* The same notification with a signature that does not verify (made with a wrong
        secret, or with the amount changed after signing)."""
        raise NotImplementedError

    def unsigned_notification(self, payment: Payment, settings: dict[str, Any]) -> Notification:
        """*Required.* The same notification without any signature."""
        raise NotImplementedError

    def success_answer(self, payment: Payment) -> str:
        """The text the gateway expects in the body when billcore accepted a notification. Default: the
        module's ``ModuleInfo.success_answer`` for this payment (pmtemplate: ``"OK"``; Robokassa:
        ``"OK<InvId>"``)."""
        from ..plugins import get_registry

        info = get_registry().info(self.module)
        answer = info.expected_answer(payment.id) if info is not None else None
        assert answer is not None, f"module {self.module!r} declares no ModuleInfo.success_answer"
        return answer

    def is_success(self, response: TestResponse, payment: Payment) -> bool:
        """True when ``response`` is the success answer. Default: status 200 and the body equal to
        :meth:`success_answer` (surrounding whitespace ignored)."""
        return response.status_code == 200 and response.get_data(as_text=True).strip() == self.success_answer(payment)


def _csrf(client: FlaskClient, payment_id: int) -> dict[str, str]:
    """The Pay button's form data: with CSRF on, the token from the payment's page, as a browser has it."""
    from flask import current_app

    if not current_app.config.get("WTF_CSRF_ENABLED", True):
        return {}
    page = client.get(f"/payments/{payment_id}").get_data(as_text=True)
    found = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    return {"csrf_token": found.group(1)} if found else {}


def send(client: FlaskClient, notification: Notification) -> TestResponse:
    """Send a :class:`Notification` with a Flask test client."""
    return client.open(notification.path, method=notification.method, data=notification.data or None,
                       query_string=notification.query or None)


class ConformanceSuite:
    """The tests; inherit from it in a class named ``Test...`` that sets ``adapter``."""

    adapter: ConformanceAdapter

    # -- helpers ------------------------------------------------------------------------------------

    def registry(self, app: Flask):
        """The app's module registry."""
        return app.extensions["billcore.modules"]

    def info(self, app: Flask) -> ModuleInfo:
        """The module's description; fails the test when the module is not loaded."""
        registry = self.registry(app)
        info = registry.info(self.adapter.module)
        assert info is not None, (f"module {self.adapter.module!r} is not loaded: "
                                  f"{registry.errors.get(self.adapter.module, 'not found')}")
        return info

    def secrets(self, app: Flask) -> list[str]:
        """The secret values of the adapter's valid settings."""
        info = self.info(app)
        values = [str(v) for k, v in self.adapter.valid_settings().items() if k in info.secret_fields and v]
        assert all(len(v) >= 4 for v in values), "use secret values of at least 4 characters"
        return values

    def setup_payment(self, app: Flask) -> tuple[FlaskClient, Payment, PaymentMethod, dict[str, Any]]:
        """A client account, a logged-in test client, a method with valid settings and a prepared payment."""
        user = create_client(*CONFORMANCE_USER, currency=self.adapter.currency)
        settings = self.adapter.valid_settings()
        fields = {"currency": self.adapter.currency, **self.adapter.paymethod_fields()}
        method = add_paymethod(self.adapter.module, dict(settings), **fields)
        payment = service.create_payment(user.account_id, method.id, Decimal(self.adapter.amount), check_limits=False)
        client = app.test_client()
        assert login(client, *CONFORMANCE_USER).status_code == 302
        self.adapter.prepare_payment(client, self.fresh(payment.id), self.fresh_method(method.id))
        return client, self.fresh(payment.id), self.fresh_method(method.id), settings

    def fresh(self, payment_id: int) -> Payment:
        """The payment as the database has it now."""
        db.session.commit()  # end the read snapshot: others committed meanwhile
        return db.session.get(Payment, payment_id)

    def fresh_method(self, method_id: int) -> PaymentMethod:
        """The payment method as the database has it now."""
        db.session.commit()  # end the read snapshot: others committed meanwhile
        return db.session.get(PaymentMethod, method_id)

    def balance(self, account_id: int) -> Decimal:
        """The account's balance as the database has it now."""
        db.session.commit()  # end the read snapshot: others committed meanwhile
        return db.session.get(Account, account_id).balance

    def events(self, payment_id: int) -> list[PaymentEvent]:
        """The payment's events, oldest first."""
        db.session.commit()  # end the read snapshot: others committed meanwhile
        return db.session.query(PaymentEvent).filter_by(payment_id=payment_id).order_by(PaymentEvent.id).all()

    def start_action(self, app: Flask, payment: Payment, method: PaymentMethod) -> Any:
        """The start hook's answer for ``payment``, called as the core's payment door calls it."""
        user = find_user(CONFORMANCE_USER[0])
        return self.registry(app).call(self.adapter.module, "billcore_start_payment", payment=payment,
                                       paymethod=method, settings=full_settings(method),
                                       customer=Customer(user_id=user.id, email=user.email))

    def validate(self, app: Flask, settings: dict[str, Any]) -> dict[str, Any]:
        """The errors of ``settings`` posted through the integration form and then the validation hook."""
        registry = self.registry(app)
        form_class = registry.call(self.adapter.module, "billcore_integration_form", paymethod=None)
        with app.test_request_context(method="POST"):
            form = form_class(formdata=MultiDict(self.adapter.form_data(settings)))
            if not form.validate():
                return dict(form.errors)
        errors = registry.call(self.adapter.module, "billcore_validate_integration", settings=dict(settings),
                               currency=self.adapter.currency)
        assert isinstance(errors, dict), "billcore_validate_integration must return a dict"
        return errors

    # -- the module describes itself ------------------------------------------------------------------

    def test_module_describes_itself(self, app):
        """A valid ModuleInfo under the adapter's key, known features, each feature's hooks present."""
        assert self.adapter.module, "set ConformanceAdapter.module"
        info = self.info(app)
        assert isinstance(info, ModuleInfo) and info.key == self.adapter.module
        assert info.title, "a module needs a title"
        assert set(info.features) <= set(FEATURES)
        plugin = self.registry(app).pm.get_plugin(self.adapter.module)
        implemented = {impl.function.__name__ for hook in self.registry(app).pm.hook.__dict__.values()
                       if hasattr(hook, "get_hookimpls") for impl in hook.get_hookimpls() if impl.plugin is plugin}
        missing = [h for h in REQUIRED_HOOKS if h not in implemented]
        for feature in info.features:
            missing += [h for h in FEATURE_HOOKS.get(feature, ()) if h not in implemented]
        assert not missing, f"hooks not implemented: {missing}"
        if info.currencies:
            assert self.adapter.currency in info.currencies

    def test_secret_fields_are_form_fields(self, app):
        """Every declared secret is a field of the integration form (so it is entered, encrypted, kept)."""
        info = self.info(app)
        form_class = self.registry(app).call(self.adapter.module, "billcore_integration_form", paymethod=None)
        assert form_class is not None, "billcore_integration_form returned None for the module's own key"
        with app.test_request_context():
            names = {f.name for f in form_class(formdata=None)}
        assert set(info.secret_fields) <= names, f"secret fields missing from the form: {set(info.secret_fields) - names}"

    # -- integration settings -------------------------------------------------------------------------

    def test_valid_settings_are_accepted(self, app):
        """The adapter's valid settings pass the form and the validation hook."""
        assert self.validate(app, self.adapter.valid_settings()) == {}

    def test_invalid_settings_are_rejected(self, app):
        """Each of the adapter's bad settings is refused with at least one field error."""
        bad = self.adapter.invalid_settings()
        assert bad, "give at least one invalid settings example"
        for settings in bad:
            errors = self.validate(app, settings)
            assert errors, f"accepted invalid settings {sorted(settings)}"
            secrets = [str(settings.get(name) or "") for name in self.info(app).secret_fields]
            assert not any(len(s) >= 4 and s in str(errors) for s in secrets), "an error message echoes a secret"

    def test_gateway_setup(self, app):
        """The gateway-side instructions name this installation's absolute URLs and hold no secret."""
        registry = self.registry(app)
        method = add_paymethod(self.adapter.module, self.adapter.valid_settings(), currency=self.adapter.currency,
                               **self.adapter.paymethod_fields())
        setup = registry.call(self.adapter.module, "billcore_gateway_setup", paymethod=method,
                              settings=self.adapter.valid_settings(), base_url=app.config["BASE_URL"])
        assert isinstance(setup, GatewaySetup)
        text = " ".join([str(i.value) for i in setup.items] + [str(i.label) for i in setup.items]
                        + [str(w) for w in setup.warnings] + [str(n) for n in setup.notes])
        assert app.config["BASE_URL"] in text, "the callback URLs should be absolute URLs of this installation"
        assert not any(s in text for s in self.secrets(app))

    # -- paying ---------------------------------------------------------------------------------------

    def test_start_payment(self, app):
        """The start hook sends the browser somewhere, with no secret in the URL or the form fields."""
        client, payment, method, _ = self.setup_payment(app)
        action = self.start_action(app, payment, method)
        assert isinstance(action, StartAction) and action.url
        assert action.method.upper() in ("GET", "POST")
        text = action.url + " ".join(f"{k}={v}" for k, v in action.fields)
        assert not any(s in text for s in self.secrets(app))

    def test_unsigned_and_forged_notifications_change_nothing(self, app):
        """Refused, status and balance unchanged, and each attempt recorded as an event."""
        client, payment, method, settings = self.setup_payment(app)
        status, balance = payment.status, self.balance(payment.account_id)
        for make in (self.adapter.unsigned_notification, self.adapter.forged_notification):
            before = len(self.events(payment.id))
            resp = send(app.test_client(), make(payment, settings))
            assert not self.is_success(resp, payment), f"{make.__name__} got the success answer"
            assert self.fresh(payment.id).status == status, f"{make.__name__} changed the payment"
            assert self.balance(payment.account_id) == balance
            assert len(self.events(payment.id)) > before, f"{make.__name__} was not recorded as an event"

    def is_success(self, resp: TestResponse, payment: Payment) -> bool:
        """The adapter's judgement of a response."""
        return self.adapter.is_success(resp, payment)

    def test_genuine_notification_credits_exactly_once(self, app):
        """Paid with the success answer; a repeat gets the same answer and credits nothing more."""
        client, payment, method, settings = self.setup_payment(app)
        balance = self.balance(payment.account_id)
        first = send(app.test_client(), self.adapter.genuine_notification(payment, settings))
        assert self.is_success(first, payment), f"{first.status_code} {first.get_data(as_text=True)[:200]}"
        paid = self.fresh(payment.id)
        assert paid.status == service.PAID
        assert self.balance(payment.account_id) == balance + paid.amount
        for _ in range(2):
            again = send(app.test_client(), self.adapter.genuine_notification(payment, settings))
            assert (again.status_code, again.get_data()) == (first.status_code, first.get_data())
        assert self.balance(payment.account_id) == balance + paid.amount
        db.session.commit()  # end the read snapshot: others committed meanwhile
        credits = db.session.query(LedgerEntry).filter_by(payment_id=payment.id, kind="payment").count()
        assert credits == 1

    def test_secrets_never_leak(self, app):
        """No secret in any response of the flow, any payment event or any log file."""
        client, payment, method, settings = self.setup_payment(app)
        secrets = self.secrets(app)
        bodies = []
        for make in (self.adapter.unsigned_notification, self.adapter.forged_notification,
                     self.adapter.genuine_notification, self.adapter.genuine_notification):
            resp = send(app.test_client(), make(payment, settings))
            bodies.append(resp.get_data(as_text=True) + str(dict(resp.headers)))
        action = self.start_action(app, payment, method)
        if isinstance(action, StartAction) and action.url.startswith("/"):  # the owner's browser starts paying
            resp = client.open(action.url, method=action.method, data=dict(action.fields) or None)
            bodies.append(resp.get_data(as_text=True) + str(dict(resp.headers)))
        for text in bodies:
            assert not any(s in text for s in secrets), "a response carries a secret"
        db.session.commit()  # end the read snapshot: others committed meanwhile
        for event in db.session.query(PaymentEvent).all():
            text = f"{event.outcome} {event.answer} {event.data}"
            assert not any(s in text for s in secrets), f"event {event.id} ({event.kind}) carries a secret"
        stored = self.fresh_method(method.id)
        assert not any(s in str(stored.settings) for s in secrets), "a secret is stored unencrypted"
        for log in Path(app.config["LOG_DIR"]).glob("*.log"):
            text = log.read_text(encoding="utf-8", errors="replace")
            leaked = [s for s in secrets if re.search(re.escape(s), text)]
            assert not leaked, f"{log.name} contains a secret"
