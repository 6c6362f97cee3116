"""The conformance suite: the contract every billcore payment module must keep, as pytest tests.

A module proves it keeps the contract with two small pieces of test code:

1. an **adapter**, a subclass of :class:`ConformanceAdapter` that tells the suite how to talk to the
   module (valid settings, bad settings, another merchant's settings, how to make a genuine, a forged and
   an unsigned notification, and, when the module has one, its address allow-list);
2. a **test class** that inherits the suite and names the adapter::

       # <your package>/tests/test_conformance.py
       from billcore.testing.conformance import ConformanceSuite
       from .adapter import MyAdapter

       class TestConformance(ConformanceSuite):
           adapter = MyAdapter()

The suite's tests use the ``app`` fixture (``billcore.testing.pytest_plugin`` or billcore's own
``tests/conftest.py``), so they run on SQLite and, with ``BILLCORE_TEST_DATABASE_URL``, on PostgreSQL.
The class turns CSRF protection **on** for its apps (:data:`SUITE_CONFIG`, as in production) and every
request goes through the app's real URL map: a notification view that billcore does not exempt from CSRF
fails here as it would in production. The success answer is the literal the module declares
(``ModuleInfo.success_answer``), never one the adapter supplies, and it is compared with the real HTTP
answer.

What it checks:

* the module is loaded and describes itself (a valid :class:`~billcore.paymodule.ModuleInfo` whose key
  is the adapter's ``module``; known features; each declared feature's hooks implemented; secret fields
  are fields of the integration form; a declared ``success_answer``);
* the integration form and the validation hook accept the adapter's valid settings (and the other
  merchants' and allow-list settings) and reject each of its bad ones;
* the gateway-setup hook answers a :class:`~billcore.paymodule.GatewaySetup` naming this installation;
* the start: the start hook answers a :class:`~billcore.paymodule.StartAction` without secrets, and the
  core's door (the payment page's Pay button, ``POST /payments/<id>/pay`` with the CSRF token) sends the
  owner there and marks the payment ``inpay``; another customer and an anonymous visitor (Pay button, the
  payment and return pages, the checkout, a start script of the module's own) never mark it ``inpay``
  nor see the gateway's request;
* unsigned and forged notifications, and genuine notifications signed for another merchant (whose
  payment method exists in the same billcore), are refused: no success answer, status and balance
  unchanged, and the attempt is recorded as a payment event;
* a genuine notification about a payment of another module changes nothing;
* with an address allow-list: a genuine notification from outside it (also when it claims an allowed
  address in ``X-Forwarded-For`` without a trusted proxy) is refused; from inside it is accepted;
* a genuine notification credits the payment exactly once with the declared success answer, and a repeat
  gets the very same answer (status and body) and credits nothing;
* a genuine notification for a different amount credits nothing;
* a database failure while crediting never gets the success answer (the gateway must retry), and the
  retry credits once;
* no secret value ever appears in a response body or header, a payment event, the stored public
  settings or a log file.
"""
from __future__ import annotations

import html
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from werkzeug.datastructures import MultiDict
from werkzeug.test import TestResponse

from ..accounts import create_client, find_user
from ..db import db
from ..models import Account, LedgerEntry, Payment, PaymentEvent, PaymentMethod, User
from ..paymethods import full_settings, store_settings
from ..paymodule import FEATURE_CHECKPAY, FEATURE_RECURRING, FEATURE_REFUND, FEATURES, Customer, GatewaySetup, \
    ModuleInfo, StartAction
from ..payments import service
from ..states import Status
from .fixtures import add_paymethod, csrf_token, login

# Hooks a module must implement when it declares a feature.
FEATURE_HOOKS = {
    FEATURE_CHECKPAY: ("billcore_check_payment",),
    FEATURE_REFUND: ("billcore_refund", "billcore_refund_status"),
    FEATURE_RECURRING: ("billcore_recurring_charge",),
}
REQUIRED_HOOKS = ("billcore_module_info", "billcore_integration_form", "billcore_validate_integration",
                  "billcore_gateway_setup", "billcore_start_payment", "billcore_blueprints")
CONFORMANCE_USER = ("conformance@test.example", "conformance-pass-1")
OTHER_USER = ("conformance-other@test.example", "conformance-pass-2")
# The module key of "another module's" payment method: no module needs to be loaded under it.
OTHER_MODULE = "pmconformanceother"
# The suite's apps: CSRF on, as in production (billcore's test fixtures turn it off for convenience).
SUITE_CONFIG: dict[str, Any] = {"WTF_CSRF_ENABLED": True}
SIGNATURE_MIN = 16  # request values this long are signatures or tokens: they must not reach a stranger
_TOKEN = re.compile(r"[A-Za-z0-9+/=_.-]+")


@dataclass(frozen=True)
class Notification:
    """One HTTP request as the gateway would send it to billcore.

    ``path`` is local to billcore (``/mancgi/rkresult``), with or without a query string; ``data`` is
    sent as an urlencoded form body (POST) and ``query`` as query parameters; ``headers`` are added to
    the request; ``remote_addr`` is the address it comes from (None: the test client's ``127.0.0.1``).
    """

    path: str
    method: str = "POST"
    data: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    remote_addr: str | None = None


class ConformanceAdapter:
    """How the suite talks to one module. Subclass it; the methods marked *required* must be overridden.

    The success answer is not the adapter's business: the suite uses the module's declared
    ``ModuleInfo.success_answer``. Never import the module's own constants into an adapter: the suite
    would then compare the module with itself.

    Attributes:
        module: the module key (the entry-point name), e.g. ``"pmtemplate"``. *Required.*
        currency: the currency of the test payment method and of the suite's client account.
        amount: the amount of the test payment (text, e.g. ``"100.00"``); the method has no commission,
            so the payment's ``total`` equals it.
        inside_address: with an allow-list (:meth:`allowlist_settings`), an address the gateway calls from.
        outside_address: an address outside the allow-list (default from TEST-NET-3, RFC 5737).
    """

    module: str = ""
    currency: str = "RUB"
    amount: str = "100.00"
    inside_address: str | None = None
    outside_address: str = "203.0.113.9"

    def valid_settings(self) -> dict[str, Any]:
        """*Required.* Complete, valid integration settings, secrets included (the values the admin would
        type in step 2). Secret values must be at least 4 characters long so leaks can be searched for."""
        raise NotImplementedError

    def invalid_settings(self) -> list[dict[str, Any]]:
        """*Required.* Settings that must be refused, each by the integration form or by the validation
        hook (for instance: a required field missing, a secret too short, a malformed URL)."""
        raise NotImplementedError

    def other_merchant_settings(self) -> list[dict[str, Any]]:
        """*Required.* Valid settings of one or more OTHER merchants (shops) at the same gateway, each with
        its own merchant id and secrets. When the gateway's notification names the merchant, add one that
        shares :meth:`valid_settings`' secret: then only the module's merchant check can tell them apart.
        The suite creates a payment method for each, in the same billcore."""
        raise NotImplementedError

    def allowlist_settings(self) -> dict[str, Any] | None:
        """Valid settings with the module's address allow-list on (None, the default: the module has no
        allow-list, and the suite skips that test saying so). Set :attr:`inside_address` too."""
        return None

    def allowlist_config(self) -> dict[str, Any]:
        """App settings that turn the allow-list on when it is configured by the app rather than the
        payment method (``{"PMROBOKASSA_CHECK_IP": True}``); the suite sets them for that test only."""
        return {}

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
        (``client`` is logged in as the payment's owner). Default: press Pay on the payment's page
        (the core's door, :func:`start_as_owner`), which marks the payment ``inpay``."""
        resp = start_as_owner(client, payment.id)
        db.session.commit()  # end the read snapshot: the door committed meanwhile
        status = db.session.get(Payment, payment.id).status
        assert status == Status.INPAY, (f"the owner's Pay left payment {payment.id} {status}: the door answered "
                                        f"{resp.status_code} {resp.headers.get('Location', '')}")

    def genuine_notification(self, payment: Payment, settings: dict[str, Any],
                             amount: Decimal | None = None) -> Notification:
        """*Required.* The gateway's notification that ``payment`` was paid, correctly signed with
        ``settings``' secrets (and naming their merchant). ``amount`` is what the gateway says it received
        (default: ``payment.total``, in ``payment.currency``)."""
        raise NotImplementedError

    def forged_notification(self, payment: Payment, settings: dict[str, Any]) -> Notification:
        """*Required.* The same notification with a signature that does not verify (made with a wrong
        secret, or with the amount changed after signing)."""
        raise NotImplementedError

    def unsigned_notification(self, payment: Payment, settings: dict[str, Any]) -> Notification:
        """*Required.* The same notification without any signature."""
        raise NotImplementedError

    def other_merchant_notification(self, payment: Payment, settings: dict[str, Any]) -> Notification:
        """The notification that ``payment`` was paid, genuinely made and signed for the other merchant
        ``settings`` (one of :meth:`other_merchant_settings`). Default: :meth:`genuine_notification` with
        those settings."""
        return self.genuine_notification(payment, settings)


def send(client: FlaskClient, notification: Notification) -> TestResponse:
    """Send a :class:`Notification` with a Flask test client (from its ``remote_addr``, with its
    ``headers``)."""
    environ = {"REMOTE_ADDR": notification.remote_addr} if notification.remote_addr else {}
    return client.open(notification.path, method=notification.method, data=notification.data or None,
                       query_string=notification.query or None, headers=notification.headers or None,
                       environ_base=environ)


def csrf_enabled(app: Flask) -> bool:
    """True when ``app`` checks CSRF tokens (Flask-WTF's default)."""
    return bool(app.config.get("WTF_CSRF_ENABLED", True))


def start_as_owner(client: FlaskClient, payment_id: int) -> TestResponse:
    """Press Pay on the payment's page as the logged-in ``client`` does: ``POST /payments/<id>/pay`` with
    the page's CSRF token. The core's door checks the payment, asks the module's start hook, marks the
    payment ``inpay`` and answers a redirect (GET) or an auto-submitting form (POST)."""
    data = {"csrf_token": csrf_token(client, f"/payments/{payment_id}")} if csrf_enabled(client.application) else {}
    return client.post(f"/payments/{payment_id}/pay", data=data)


def seen(resp: TestResponse) -> str:
    """What a browser is shown by ``resp``: its ``Location`` and its body, HTML entities decoded, as
    they are and URL-decoded."""
    text = html.unescape(resp.headers.get("Location", "") + "\n" + resp.get_data(as_text=True))
    return text + "\n" + unquote_plus(text)


def request_marks(action: StartAction) -> list[str]:
    """What identifies the gateway's request: the target's address (unless it is a script of this site
    that the browser POSTs to, whose path a login page may name) and the values of its query and fields
    that look like signatures or tokens (long, no spaces, not URLs)."""
    parts = urlsplit(action.url)
    values = [v for _name, v in parse_qsl(parts.query)] + [str(v) for _name, v in action.fields]
    # an absolute target is marked by its whole address: its path alone (say ``/pay``) may be part of any
    # page's own links
    target = f"{parts.scheme}://{parts.netloc}{parts.path}" if parts.netloc else parts.path
    marks = [target] if parts.path not in ("", "/") and not action.posts_to_this_site else []
    return marks + [v for v in values if len(v) >= SIGNATURE_MIN and _TOKEN.fullmatch(v)]


@contextmanager
def configured(app: Flask, values: dict[str, Any]) -> Iterator[None]:
    """``app`` with ``values`` in its config for the duration of the block."""
    saved = {name: app.config[name] for name in values if name in app.config}
    app.config.update(values)
    try:
        yield
    finally:
        for name in values:
            app.config.pop(name, None)
        app.config.update(saved)


@contextmanager
def failing_writes(engine: Engine) -> Iterator[None]:
    """Every INSERT, UPDATE and DELETE on ``engine`` fails as if the database went away, for the block."""
    def fail(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip()[:6].upper() in ("INSERT", "UPDATE", "DELETE"):
            raise OperationalError(statement[:80], None, ConnectionError("the database went away (conformance test)"))

    event.listen(engine, "before_cursor_execute", fail)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", fail)


class ConformanceSuite:
    """The tests; inherit from it in a class named ``Test...`` that sets ``adapter``."""

    adapter: ConformanceAdapter

    @pytest.fixture
    def app_config(self, app_config: dict) -> dict:
        """The suite's apps: the module's own ``app_config`` with :data:`SUITE_CONFIG` (CSRF on)."""
        return {**app_config, **SUITE_CONFIG}

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

    def require_csrf(self, app: Flask) -> None:
        """Fail unless ``app`` checks CSRF tokens: with CSRF off, a notification view billcore does not
        exempt would pass here and get 400 for every notification in production."""
        assert csrf_enabled(app), ("the conformance suite must run with CSRF on (WTF_CSRF_ENABLED=True, see "
                                   "SUITE_CONFIG): inherit ConformanceSuite in a Test class, whose app_config "
                                   "fixture turns it on")

    def secret_values(self, app: Flask, settings: dict[str, Any]) -> list[str]:
        """The secret values of ``settings``."""
        info = self.info(app)
        values = [str(v) for k, v in settings.items() if k in info.secret_fields and v]
        assert all(len(v) >= 4 for v in values), "use secret values of at least 4 characters"
        return values

    def secrets(self, app: Flask) -> list[str]:
        """The secret values of all the adapter's valid settings (its own, the other merchants', the
        allow-list's)."""
        settings = [self.adapter.valid_settings(), *self.adapter.other_merchant_settings(),
                    self.adapter.allowlist_settings() or {}]
        return sorted({value for s in settings for value in self.secret_values(app, s)})

    def expected_answer(self, app: Flask, payment: Payment) -> str:
        """The literal the gateway must hear for an accepted notification about ``payment``: the module's
        declared ``ModuleInfo.success_answer``."""
        answer = self.info(app).expected_answer(payment.id)
        assert answer, (f"{self.adapter.module} declares no ModuleInfo.success_answer: declare the literal body "
                        "the gateway must hear for an accepted notification (e.g. 'OK' or 'OK{payment_id}')")
        return answer

    def is_success(self, app: Flask, resp: TestResponse, payment: Payment) -> bool:
        """True when ``resp`` is, or could pass for, the success answer (status 200, the declared answer
        as its body, surrounding whitespace ignored)."""
        return resp.status_code == 200 and resp.get_data(as_text=True).strip() == self.expected_answer(app, payment)

    def user(self, account: tuple[str, str] = CONFORMANCE_USER) -> User:
        """The suite's client user ``account`` (e-mail, password), created with an account on first use."""
        return find_user(account[0]) or create_client(*account, currency=self.adapter.currency)

    def logged_in(self, app: Flask, account: tuple[str, str] = CONFORMANCE_USER) -> FlaskClient:
        """A test client logged in as ``account`` (through the login form, with its CSRF token)."""
        self.user(account)
        client = app.test_client()
        assert login(client, *account).status_code == 302, f"could not log in as {account[0]}"
        return client

    def add_method(self, settings: dict[str, Any], **columns: Any) -> PaymentMethod:
        """A payment method of the module with ``settings``."""
        fields = {"currency": self.adapter.currency, **self.adapter.paymethod_fields(), **columns}
        return add_paymethod(self.adapter.module, dict(settings), **fields)

    def new_payment(self, method: PaymentMethod, account: tuple[str, str] = CONFORMANCE_USER) -> Payment:
        """A ``new`` payment of the adapter's amount by ``account`` through ``method``."""
        payment = service.create_payment(self.user(account).account_id, method.id, Decimal(self.adapter.amount),
                                         check_limits=False)
        return self.fresh(payment.id)

    def setup_payment(self, app: Flask, settings: dict[str, Any] | None = None, *, prepare: bool = True,
                      ) -> tuple[FlaskClient, Payment, PaymentMethod, dict[str, Any]]:
        """A client account, a test client logged in as its owner, a method with ``settings`` (default:
        the adapter's valid ones) and a payment, prepared by the adapter unless ``prepare`` is False."""
        self.require_csrf(app)
        settings = dict(settings if settings is not None else self.adapter.valid_settings())
        method = self.add_method(settings)
        payment = self.new_payment(method)
        client = self.logged_in(app)
        if prepare:
            self.adapter.prepare_payment(client, payment, self.fresh_method(method.id))
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

    def credits(self, payment_id: int) -> int:
        """How many times the payment was credited (its ledger entries of kind ``payment``)."""
        db.session.commit()  # end the read snapshot: others committed meanwhile
        return db.session.query(LedgerEntry).filter_by(payment_id=payment_id, kind="payment").count()

    def events(self, payment_id: int) -> list[PaymentEvent]:
        """The payment's events, oldest first."""
        db.session.commit()  # end the read snapshot: others committed meanwhile
        return db.session.query(PaymentEvent).filter_by(payment_id=payment_id).order_by(PaymentEvent.id).all()

    def validate(self, app: Flask, settings: dict[str, Any]) -> dict[str, Any]:
        """The errors of ``settings`` posted through the integration form and then the validation hook."""
        registry = self.registry(app)
        form_class = registry.call(self.adapter.module, "billcore_integration_form", paymethod=None)
        with app.test_request_context(method="POST"):
            # the form's own fields are checked here, not the session's CSRF token
            form = form_class(formdata=MultiDict(self.adapter.form_data(settings)), meta={"csrf": False})
            if not form.validate():
                return dict(form.errors)
        errors = registry.call(self.adapter.module, "billcore_validate_integration", settings=dict(settings),
                               currency=self.adapter.currency)
        assert isinstance(errors, dict), "billcore_validate_integration must return a dict"
        return errors

    def gateway_request(self, app: Flask, payment: Payment, method: PaymentMethod) -> StartAction:
        """What the start hook answers for ``payment`` and its owner (called directly, in a request)."""
        owner = self.user()
        with app.test_request_context("/"):
            action = self.registry(app).call(self.adapter.module, "billcore_start_payment", payment=payment,
                                             paymethod=method, settings=full_settings(method),
                                             customer=Customer(user_id=owner.id, email=owner.email, language="en"))
        assert isinstance(action, StartAction) and action.url, f"the start hook answered {action!r}, not a StartAction"
        return action

    def assert_refused(self, app: Flask, payment: Payment, notification: Notification, what: str, *,
                       recorded: bool = True) -> TestResponse:
        """Send ``notification`` and check it was refused: no success answer, the payment's status, the
        balance and the credits unchanged, and (``recorded``) a new event of the payment."""
        status, balance = self.fresh(payment.id).status, self.balance(payment.account_id)
        credits, before = self.credits(payment.id), len(self.events(payment.id))
        resp = send(app.test_client(), notification)
        answer = f"{resp.status_code} {resp.get_data(as_text=True)[:100]!r}"
        assert not self.is_success(app, resp, payment), f"{what} got the success answer ({answer})"
        now = self.fresh(payment.id).status
        assert now == status, f"{what} changed the payment ({status} -> {now}, answered {answer})"
        assert self.balance(payment.account_id) == balance, f"{what} changed the balance"
        assert self.credits(payment.id) == credits, f"{what} credited the payment"
        if recorded:
            assert len(self.events(payment.id)) > before, (
                f"{what} was not recorded as a payment event (answered {answer}): refuse with Refuse, which "
                "billcore records, instead of answering an error yourself")
        return resp

    def assert_credited_once(self, app: Flask, payment: Payment, resp: TestResponse, what: str,
                             balance: Decimal) -> None:
        """``resp`` is exactly the declared success answer, and ``payment`` is paid and credited once."""
        expected = self.expected_answer(app, payment)
        body = resp.get_data(as_text=True)
        hint = ""
        if resp.status_code == 400 and "csrf" in body.lower():
            hint = (": the notification view is not exempt from CSRF; make it with gateway_callback (billcore "
                    "exempts exactly those views when it registers the module's blueprints)")
        assert (resp.status_code, body.strip()) == (200, expected), (
            f"{what} answered {resp.status_code} {body[:200]!r}, the gateway expects 200 {expected!r}{hint}")
        paid = self.fresh(payment.id)
        assert paid.status == Status.PAID, f"{what} left the payment {paid.status}"
        assert self.balance(payment.account_id) == balance + paid.amount, f"{what} credited a wrong amount"
        assert self.credits(payment.id) == 1, f"{what} credited the payment {self.credits(payment.id)} times"

    # -- the module describes itself ------------------------------------------------------------------

    def test_module_describes_itself(self, app):
        """A valid ModuleInfo under the adapter's key, known features, each feature's hooks present, and
        the success answer declared."""
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
        assert info.success_answer, (f"{self.adapter.module} declares no ModuleInfo.success_answer: declare the "
                                     "literal body the gateway must hear for an accepted notification")

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
        """The adapter's valid settings, its other merchants' and its allow-list's pass the form and the
        validation hook."""
        others = self.adapter.other_merchant_settings()
        assert others, "give at least one other merchant's settings (other_merchant_settings)"
        mine = self.adapter.valid_settings()
        for settings in [mine, *others, self.adapter.allowlist_settings() or mine]:
            assert self.validate(app, settings) == {}, f"settings refused: {sorted(settings)}"

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
        method = self.add_method(self.adapter.valid_settings())
        setup = registry.call(self.adapter.module, "billcore_gateway_setup", paymethod=method,
                              settings=self.adapter.valid_settings(), base_url=app.config["BASE_URL"])
        assert isinstance(setup, GatewaySetup)
        text = " ".join([str(i.value) for i in setup.items] + [str(i.label) for i in setup.items]
                        + [str(w) for w in setup.warnings] + [str(n) for n in setup.notes])
        assert app.config["BASE_URL"] in text, "the callback URLs should be absolute URLs of this installation"
        assert not any(s in text for s in self.secrets(app))

    # -- the start ------------------------------------------------------------------------------------

    def test_start_payment(self, app):
        """The start hook answers a StartAction without secrets; the owner's Pay (the core's door) marks
        the payment inpay and sends the browser to that request."""
        client, payment, method, _ = self.setup_payment(app, prepare=False)
        action = self.gateway_request(app, payment, method)
        assert action.method.upper() in ("GET", "POST")
        text = action.url + " ".join(f"{k}={v}" for k, v in action.fields)
        assert not any(s in text for s in self.secrets(app)), "the gateway's request carries a secret"
        resp = start_as_owner(client, payment.id)
        shown = seen(resp)
        assert self.fresh(payment.id).status == Status.INPAY, f"the owner's Pay answered {resp.status_code}"
        assert all(mark in shown for mark in request_marks(action)), "the owner was not sent to the gateway"
        assert not any(s in shown for s in self.secrets(app)), "the start's answer carries a secret"

    def test_start_needs_the_owner(self, app):
        """Another customer and an anonymous visitor can neither start the payment (it stays ``new``) nor
        see the gateway's request, through the core's door, the payment's pages, the checkout or a start
        script of the module's own; the owner then can."""
        owner, payment, method, _ = self.setup_payment(app, prepare=False)
        action = self.gateway_request(app, payment, method)
        marks = request_marks(action)
        other = self.logged_in(app, OTHER_USER)
        strangers = (("another customer", other, "/payments/new"), ("an anonymous visitor", app.test_client(), "/login"))
        db.session.commit()
        payments = db.session.query(Payment).count()
        for who, client, form_page in strangers:
            token = csrf_token(client, form_page)  # their own valid token: the door itself must refuse them
            answers = [client.get(f"/payments/{payment.id}"),
                       client.post(f"/payments/{payment.id}/pay", data={"csrf_token": token}),
                       client.get(f"/payments/{payment.id}/return/pending")]
            if who == "an anonymous visitor":  # the checkout's confirming post, as if confirmed
                answers.append(client.post("/payments/new", data={
                    "csrf_token": token, "paymethod": str(method.id), "amount": self.adapter.amount, "confirm": "1",
                    "total": str(payment.total), "intent": "conformance"}))
            if action.posts_to_this_site:  # the module's own start script
                answers.append(client.post(action.url, data={**dict(action.fields), "csrf_token": token}))
            for resp in answers:
                shown = seen(resp)
                leaked = [m for m in marks if m in shown]
                assert not leaked, f"{who} was shown the gateway's request ({resp.request.path}: {leaked[0]!r})"
            now = self.fresh(payment.id).status
            assert now == Status.NEW, f"{who} started another customer's payment (it is {now})"
            assert not [e for e in self.events(payment.id) if e.status_to == Status.INPAY], f"{who} started the payment"
        db.session.commit()
        assert db.session.query(Payment).count() == payments, "a stranger created a payment"
        resp = start_as_owner(owner, payment.id)  # the marks are what the owner is sent to
        assert self.fresh(payment.id).status == Status.INPAY and all(m in seen(resp) for m in marks)

    # -- notifications --------------------------------------------------------------------------------

    def test_unsigned_and_forged_notifications_change_nothing(self, app):
        """Refused, status and balance unchanged, and each attempt recorded as an event."""
        client, payment, method, settings = self.setup_payment(app)
        self.assert_refused(app, payment, self.adapter.unsigned_notification(payment, settings), "unsigned_notification")
        self.assert_refused(app, payment, self.adapter.forged_notification(payment, settings), "forged_notification")

    def test_another_merchants_notification_changes_nothing(self, app):
        """A notification genuinely signed for another merchant, whose payment method exists in the same
        billcore, is refused for this merchant's payment (and credits the other merchant's own payment)."""
        client, payment, method, settings = self.setup_payment(app)
        others = self.adapter.other_merchant_settings()
        assert others, "give at least one other merchant's settings (other_merchant_settings)"
        for number, other in enumerate(others, 1):
            other_method = self.add_method(other, name=f"{self.adapter.module} other merchant {number}")
            self.assert_refused(app, payment, self.adapter.other_merchant_notification(payment, other),
                                f"a notification for other merchant #{number}")
            # ... and it is genuine: for the other merchant's own payment it is accepted
            own = self.new_payment(other_method)
            self.adapter.prepare_payment(client, own, self.fresh_method(other_method.id))
            balance = self.balance(own.account_id)
            resp = send(app.test_client(), self.adapter.other_merchant_notification(own, other))
            self.assert_credited_once(app, own, resp, f"other merchant #{number}'s notification for its own payment",
                                      balance)

    def test_another_modules_payment_is_not_touched(self, app):
        """A genuine notification naming a payment of another module changes nothing."""
        self.user()
        settings = self.adapter.valid_settings()
        foreign = PaymentMethod(module=OTHER_MODULE, name="another module", currency=self.adapter.currency,
                                active=True, settings={}, commission_amount=Decimal(0), commission_percent=Decimal(0))
        store_settings(foreign, self.info(app), dict(settings))
        db.session.add(foreign)
        db.session.commit()
        payment = self.new_payment(foreign)
        service.set_in_pay(payment.id, source="conformance")
        self.assert_refused(app, self.fresh(payment.id), self.adapter.genuine_notification(payment, settings),
                            "a notification for another module's payment", recorded=False)

    def test_address_allowlist(self, app):
        """With an allow-list, a genuine notification from outside it is refused (also when it claims an
        allowed address in X-Forwarded-For without a trusted proxy), and from inside it is accepted."""
        settings = self.adapter.allowlist_settings()
        if settings is None:
            pytest.skip(f"{self.adapter.module}: the adapter declares no address allow-list (allowlist_settings() "
                        "is None); if the gateway publishes the addresses it calls from, check them")
        inside = self.adapter.inside_address
        assert inside, "set the adapter's inside_address: an address of the allow-list"
        with configured(app, self.adapter.allowlist_config()):
            client, payment, method, settings = self.setup_payment(app, settings)
            genuine = self.adapter.genuine_notification(payment, settings)
            outside = replace(genuine, remote_addr=self.adapter.outside_address)
            self.assert_refused(app, payment, outside, f"a notification from {self.adapter.outside_address}")
            if not app.config.get("TRUSTED_PROXIES"):
                spoofed = replace(outside, headers={**outside.headers, "X-Forwarded-For": inside})
                self.assert_refused(app, payment, spoofed, "a notification claiming an allowed X-Forwarded-For")
            balance = self.balance(payment.account_id)
            resp = send(app.test_client(), replace(genuine, remote_addr=inside))
            self.assert_credited_once(app, payment, resp, f"a notification from {inside}", balance)

    def test_genuine_notification_credits_exactly_once(self, app):
        """Paid with the declared success answer; a repeat gets the same answer and credits nothing more."""
        client, payment, method, settings = self.setup_payment(app)
        balance = self.balance(payment.account_id)
        first = send(app.test_client(), self.adapter.genuine_notification(payment, settings))
        self.assert_credited_once(app, payment, first, "the genuine notification", balance)
        for _ in range(2):
            again = send(app.test_client(), self.adapter.genuine_notification(payment, settings))
            assert (again.status_code, again.get_data()) == (first.status_code, first.get_data()), (
                f"a repeat answered {again.status_code} {again.get_data()[:100]!r}, the first "
                f"{first.status_code} {first.get_data()[:100]!r}: the gateway must hear the same")
        self.assert_credited_once(app, payment, first, "the repeats", balance)

    def test_a_different_amount_is_never_credited(self, app):
        """A genuine notification for half the payment's total credits nothing and gets no success answer."""
        client, payment, method, settings = self.setup_payment(app)
        balance, half = self.balance(payment.account_id), payment.total / 2
        resp = send(app.test_client(), self.adapter.genuine_notification(payment, settings, amount=half))
        assert not self.is_success(app, resp, payment), f"a notification for {half} got the success answer"
        assert self.fresh(payment.id).status != Status.PAID, f"a notification for {half} paid {payment.total}"
        assert self.balance(payment.account_id) == balance and self.credits(payment.id) == 0

    def test_a_database_failure_is_never_success(self, app):
        """When the database fails while crediting, the gateway does not hear success (so it retries) and
        nothing changes; the retry then credits once."""
        client, payment, method, settings = self.setup_payment(app)
        balance, status = self.balance(payment.account_id), payment.status
        with failing_writes(db.engine):
            resp = send(app.test_client(), self.adapter.genuine_notification(payment, settings))
        assert not self.is_success(app, resp, payment), "answered success while the database failed"
        assert resp.status_code >= 500, f"answered {resp.status_code} to a database failure: answer 5xx so it retries"
        assert self.fresh(payment.id).status == status and self.balance(payment.account_id) == balance
        retry = send(app.test_client(), self.adapter.genuine_notification(payment, settings))
        self.assert_credited_once(app, payment, retry, "the retry after a database failure", balance)

    def test_secrets_never_leak(self, app):
        """No secret in any response of the flow, any payment event or any log file."""
        client, payment, method, settings = self.setup_payment(app)
        secrets = self.secrets(app)
        bodies = []
        for make in (self.adapter.unsigned_notification, self.adapter.forged_notification,
                     self.adapter.genuine_notification, self.adapter.genuine_notification):
            resp = send(app.test_client(), make(payment, settings))
            bodies.append(resp.get_data(as_text=True) + str(dict(resp.headers)))
        other = self.adapter.other_merchant_settings()[0]
        resp = send(app.test_client(), self.adapter.other_merchant_notification(payment, other))
        bodies.append(resp.get_data(as_text=True) + str(dict(resp.headers)))
        resp = start_as_owner(client, self.new_payment(method).id)  # the owner's browser is sent to the gateway
        bodies.append(seen(resp) + str(dict(resp.headers)))
        for text in bodies:
            assert not any(s in text for s in secrets), "a response carries a secret"
        db.session.commit()  # end the read snapshot: others committed meanwhile
        for event_row in db.session.query(PaymentEvent).all():
            text = f"{event_row.outcome} {event_row.answer} {event_row.data}"
            assert not any(s in text for s in secrets), f"event {event_row.id} ({event_row.kind}) carries a secret"
        stored = self.fresh_method(method.id)
        assert not any(s in str(stored.settings) for s in secrets), "a secret is stored unencrypted"
        for log in Path(app.config["LOG_DIR"]).glob("*.log"):
            text = log.read_text(encoding="utf-8", errors="replace")
            leaked = [s for s in secrets if re.search(re.escape(s), text)]
            assert not leaked, f"{log.name} contains a secret"
