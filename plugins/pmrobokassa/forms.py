"""The integration settings form (wizard step 2 and edit) and the settings' validation rules.

Field names are the stored settings keys (never rename them): ``client``, ``identifier``, ``password1``-``password3``,
``hash_algorithm``, ``payment_method``, ``url``, ``test_mode`` and the ``receipt_*`` fields.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from flask import current_app, has_request_context, request
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from markupsafe import Markup, escape
from wtforms import BooleanField, PasswordField, RadioField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional, Regexp, ValidationError

from billcore.gateway import PaymentMethod

from . import gateway, protocol
from .common import CURRENCY, config

REGISTRATION_URL = "https://partner.robokassa.ru/Reg/Register"

def _choices(pairs) -> list[SelectChoice]:
    return [SelectChoice(value, label) for value, label in pairs]


HASH_CHOICES = [(name, name.upper()) for name in protocol.HASH_ALGORITHMS]  # MD5, SHA256...: names, not codes

# Robokassa's GetCurrencies group codes -> the payment categories billcore shows (docs/design.md §7).
CATEGORY_OF_GROUP = {
    "bankcard": "bank_cards", "card": "bank_cards", "bankcards": "bank_cards",
    "terminals": "cash", "cash": "cash",
    "emoney": "e_wallets", "ewallet": "e_wallets",
    "mobile": "mobile", "mobilepayments": "mobile",
    "bank": "online_banking", "internetbank": "online_banking", "onlinebanking": "online_banking",
}
CATEGORY_LABELS = {
    "bank_cards": _l("Bank cards"),
    "cash": _l("Cash"),
    "e_wallets": _l("E-wallets"),
    "mobile": _l("Mobile payments"),
    "online_banking": _l("Online banking"),
}

# The built-in list's options (used when GetCurrencies cannot be asked), in the reader's language; the
# brand names stay as they are. GetCurrencies' own answer comes in the language asked for.
BUILTIN_OPTION_LABELS = {
    "BankCardPSR": _l("Bank card (Visa, Mastercard, Maestro, Mir)"),
    "SBPPSR": _l("Faster Payments System (SBP)"),
    "TerminalsElecsnetOceanR": _l("Elecsnet terminals"),
    "RapidaOceanEurosetR": _l("Euroset stores"),
    "RapidaOceanSvyaznoyR": _l("Svyaznoy stores"),
    "VTB24R": _l("VTB Online"),
}

SNO_LABELS = {
    "osn": _l("General (OSN)"),
    "usn_income": _l("Simplified, income (USN income)"),
    "usn_income_outcome": _l("Simplified, income minus expenses"),
    "esn": _l("Unified agricultural tax (ESN)"),
    "patent": _l("Patent"),
}
TAX_LABELS = {
    "none": _l("No VAT"), "vat0": _l("VAT 0%"), "vat10": _l("VAT 10%"), "vat110": _l("VAT 10/110"),
    "vat22": _l("VAT 22%"), "vat122": _l("VAT 22/122"), "vat20": _l("VAT 20%"), "vat120": _l("VAT 20/120"),
    "vat5": _l("VAT 5%"), "vat7": _l("VAT 7%"),
    "vat105": _l("VAT 5/105"), "vat107": _l("VAT 7/107"),
}

# 54-FZ "payment method" and "payment object" attributes, in the words of the law's receipt forms
RECEIPT_METHOD_LABELS = {
    "full_prepayment": _l("Full prepayment"), "prepayment": _l("Partial prepayment"), "advance": _l("Advance"),
    "full_payment": _l("Full payment"), "partial_payment": _l("Partial payment and credit"),
    "credit": _l("Transfer on credit"), "credit_payment": _l("Credit repayment"),
}
RECEIPT_OBJECT_LABELS = {
    "commodity": _l("Goods"), "excise": _l("Excise goods"), "job": _l("Work"), "service": _l("Service"),
    "gambling_bet": _l("Gambling bet"), "gambling_prize": _l("Gambling prize"), "lottery": _l("Lottery ticket"),
    "lottery_prize": _l("Lottery prize"), "intellectual_activity": _l("Intellectual property"),
    "payment": _l("Payment"), "agent_commission": _l("Agent's commission"), "composite": _l("Composite item"),
    "resort_fee": _l("Resort fee"), "another": _l("Other"), "property_right": _l("Property right"),
    "non-operating_gain": _l("Non-operating income"), "insurance_premium": _l("Insurance premium"),
    "sales_tax": _l("Sales tax"),
}

LABEL_RE = re.compile(r"^[A-Za-z0-9_.\-]{0,64}$")
IDENTIFIER_RE = r"^[A-Za-z0-9_.\-]+$"


def password_problems(value: str, number: int) -> list[str]:
    """Robokassa's rules for Password #1/#2 (docs/robokassa.md §10), as clear messages; empty = fine."""
    problems = []
    if len(value) < 8:
        problems.append(_("Password #%(n)s must be at least 8 characters long.", n=number))
    if not any(ch.isalpha() for ch in value):
        problems.append(_("Password #%(n)s must contain at least one letter.", n=number))
    if not any(ch.isdigit() for ch in value):
        problems.append(_("Password #%(n)s must contain at least one digit.", n=number))
    return problems


def _password_rule(number: int):
    def check(form, field) -> None:
        if field.data:  # blank = keep the stored password; the validation hook checks the merged value
            problems = password_problems(field.data, number)
            if problems:
                raise ValidationError(" ".join(problems))
    return check


def _url_rule(form, field) -> None:
    try:
        protocol.endpoints_from_payment_url(field.data or "")
    except ValueError:
        raise ValidationError(_("Enter the http(s) address of the payment page, ending in /Merchant/Index.aspx.")) \
            from None


def _label_rule(form, field) -> None:
    if field.data and not LABEL_RE.match(field.data):
        raise ValidationError(_("Choose a payment option from the list."))


def _fetch_allowed(url: str) -> bool:
    fetch = config("PMROBOKASSA_FETCH_CURRENCIES")
    if fetch is None:
        # Under TESTING only a non-standard (sandbox) URL is asked: tests never reach the real gateway.
        return not current_app.testing or url != protocol.STANDARD_PAYMENT_URL
    return bool(fetch)


def payment_options(identifier: str | None, url: str | None, current: str | None = None) -> list[SelectChoice]:
    """The ``payment_method`` choices: "the payer chooses", then the options grouped by category.

    Taken from GetCurrencies for this identifier when the gateway answers, else from the built-in list.
    A stored value that is in neither list is kept as an option, so editing never loses it silently.
    """
    url = url or protocol.STANDARD_PAYMENT_URL
    groups = None
    if identifier and _fetch_allowed(url):
        language = "ru" if str(get_locale() or "en").startswith("ru") else "en"
        groups = gateway.get_currencies(identifier, url, language)
    choices = [SelectChoice("", str(_("The payer chooses on Robokassa's page")))]
    seen = {""}
    for group in groups or protocol.BUILTIN_CURRENCIES:
        category = CATEGORY_OF_GROUP.get(group.code.lower())
        group_label = str(CATEGORY_LABELS[category]) if category else (group.description or group.code)
        for item in group.items:
            if item.label in seen:
                continue
            seen.add(item.label)
            name = str(BUILTIN_OPTION_LABELS[item.label]) if groups is None and item.label in BUILTIN_OPTION_LABELS \
                else (item.name or item.label)
            choices.append(SelectChoice(item.label, name, optgroup=group_label))
    if current and current not in seen:
        choices.append(SelectChoice(current, current, optgroup=str(_("Current setting"))))
    return choices


def _submitted(name: str) -> str | None:
    if has_request_context() and request.method == "POST":
        value = request.form.get(name)
        return value.strip() if isinstance(value, str) else None
    return None


def build_form(paymethod: PaymentMethod | None) -> type[FlaskForm]:
    """Build the integration form class; the payment options depend on the identifier and URL known now
    (submitted ones, else the method's stored ones)."""
    stored: Mapping[str, Any] = (paymethod.settings or {}) if paymethod is not None else {}
    identifier = _submitted("identifier") or stored.get("identifier")
    url = _submitted("url") or stored.get("url")
    options = payment_options(identifier, url, stored.get("payment_method"))
    registration = Markup('{} <a href="{}" target="_blank" rel="noopener noreferrer">{}</a>').format(
        escape(_("To register a new shop, fill in Robokassa's registration form, then enter its identifier "
                 "and passwords here:")), REGISTRATION_URL, REGISTRATION_URL)
    keep_hint = _l("Leave blank to keep the stored password.") if paymethod is not None else ""

    class RobokassaIntegrationForm(FlaskForm):
        """Robokassa's integration settings (docs/design.md §7)."""

        client = RadioField(_l("Client"), default="existing", description=registration,
                            choices=_choices([("existing", _l("Use existing")), ("new", _l("Register new"))]))
        identifier = StringField(
            _l("Identifier"), validators=[DataRequired(), Length(max=64), Regexp(IDENTIFIER_RE, message=_l(
                "The identifier has only Latin letters, digits, dots, dashes and underscores."))],
            description=_l("The shop identifier (MerchantLogin) from My shops → Technical settings; "
                           "not the login of Robokassa's cabinet."))
        password1 = PasswordField(
            _l("Password #1"), validators=[Optional(), Length(max=128), _password_rule(1)],
            description=_l("Used to sign payments. At least 8 characters with a letter and a digit. %(keep)s",
                           keep=keep_hint))
        password2 = PasswordField(
            _l("Password #2"), validators=[Optional(), Length(max=128), _password_rule(2)],
            description=_l("Used to check Robokassa's notifications and status queries; must differ from "
                           "Password #1. %(keep)s", keep=keep_hint))
        password3 = PasswordField(
            _l("Password #3"), validators=[Optional(), Length(max=256)],
            description=_l("Optional: enables refunds through Robokassa's Refund API (request API refund "
                           "access in the cabinet, then generate Password #3). %(keep)s", keep=keep_hint))
        hash_algorithm = SelectField(
            _l("Hash algorithm"), choices=_choices(HASH_CHOICES), default="md5",
            description=_l("Must equal the algorithm chosen in Robokassa's technical settings."))
        payment_method = SelectField(
            _l("Payment method"), choices=options, default="", validate_choice=False,
            validators=[_label_rule],
            description=_l("The payment option the payer is sent to (IncCurrLabel); the payer may still "
                           "change it on Robokassa's page."))
        url = StringField(
            _l("URL"), default=protocol.STANDARD_PAYMENT_URL,
            validators=[DataRequired(), Length(max=500), _url_rule],
            description=_l("Change only for a non-standard gateway; the web service and refund addresses "
                           "are derived from it."))
        test_mode = BooleanField(
            _l("Test mode"), default=False,
            description=_l("Sends IsTest=1: the client is not charged, but the payment is processed as usual. "
                           "Enter the test pair of Password #1 and #2 from the technical settings."))
        receipt_enabled = BooleanField(_l("Send fiscal receipts (54-FZ)"), default=False)
        receipt_sno = SelectField(
            _l("Taxation system"), default="",
            choices=_choices([("", _l("As set in Robokassa's cabinet"))]
                             + [(v, SNO_LABELS[v]) for v in protocol.SNO_CHOICES]))
        receipt_tax = SelectField(_l("VAT rate"), default="none",
                                  choices=_choices((v, TAX_LABELS.get(v, v)) for v in protocol.TAX_CHOICES))
        receipt_payment_method = SelectField(_l("Payment method attribute"), default="full_payment",
                                             choices=_choices((v, RECEIPT_METHOD_LABELS.get(v, v))
                                                      for v in protocol.PAYMENT_METHOD_CHOICES))
        receipt_payment_object = SelectField(_l("Payment object attribute"), default="service",
                                             choices=_choices((v, RECEIPT_OBJECT_LABELS.get(v, v))
                                                      for v in protocol.PAYMENT_OBJECT_CHOICES))
        receipt_item_name = StringField(
            _l("Receipt item name"), validators=[Optional(), Length(max=protocol.RECEIPT_NAME_MAX)],
            default=lambda: str(_("Account top-up")))

    return RobokassaIntegrationForm


def validate_settings(settings: Mapping[str, Any], currency: str | None) -> dict[str, list[str]]:
    """Check the settings as they would be stored (secrets merged in); ``{field: [message]}``."""
    errors: dict[str, list[str]] = {}

    def add(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    if not str(settings.get("identifier") or "").strip():
        add("identifier", _("Enter the shop identifier (MerchantLogin)."))
    p1, p2 = str(settings.get("password1") or ""), str(settings.get("password2") or "")
    for number, value in ((1, p1), (2, p2)):
        field = f"password{number}"
        if not value:
            add(field, _("Password #%(n)s is required.", n=number))
        else:
            for problem in password_problems(value, number):
                add(field, problem)
    if p1 and p1 == p2:
        add("password2", _("Password #1 and Password #2 must be different."))
    if str(settings.get("hash_algorithm") or "md5").lower() not in protocol.HASH_ALGORITHMS:
        add("hash_algorithm", _("Choose one of the hash algorithms Robokassa offers."))
    try:
        protocol.endpoints_from_payment_url(str(settings.get("url") or protocol.STANDARD_PAYMENT_URL))
    except ValueError:
        add("url", _("Enter the http(s) address of the payment page, ending in /Merchant/Index.aspx."))
    label = str(settings.get("payment_method") or "")
    if not LABEL_RE.match(label):
        add("payment_method", _("Choose a payment option from the list."))
    if currency is not None and currency.upper() != CURRENCY:
        add("currency", _("Robokassa accepts payments in Russian roubles only: choose the currency RUB "
                          "(this method was set to %(currency)s).", currency=currency))
    if settings.get("receipt_enabled"):
        if settings.get("receipt_sno") and settings["receipt_sno"] not in protocol.SNO_CHOICES:
            add("receipt_sno", _("Choose a taxation system from the list."))
        if settings.get("receipt_tax", "none") not in protocol.TAX_CHOICES:
            add("receipt_tax", _("Choose a VAT rate from the list."))
        if settings.get("receipt_payment_method", "full_payment") not in protocol.PAYMENT_METHOD_CHOICES:
            add("receipt_payment_method", _("Choose a payment method attribute from the list."))
        if settings.get("receipt_payment_object", "service") not in protocol.PAYMENT_OBJECT_CHOICES:
            add("receipt_payment_object", _("Choose a payment object attribute from the list."))
        if not str(settings.get("receipt_item_name") or "").strip():
            add("receipt_item_name", _("Enter the item name printed on the receipt."))
    return errors
