"""A FreeKassa payment module for billcore, written on the payment door: the worked example of
docs/plugins.md ("A second gateway: FreeKassa").

The protocol is in :mod:`.protocol` (signatures, fields, addresses). Here: the module's description, the
integration settings (shop ID, the two secret words, the addresses FreeKassa notifies from), the setup
instructions, the payment form (a signed GET), the notification and the payer's return pages. Everything
from billcore comes from :mod:`billcore.gateway`.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Flask
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length, Optional

from billcore.gateway import (Answer, CallbackRequest, Customer, GatewaySetup, IllegalTransition, ModuleInfo,
                              MoneyError, Payment, Refuse, SetupItem, StartAction, format_amount, gateway_callback,
                              gateway_return, hookimpl, parse_amount, set_paid)

from . import protocol

KEY = "pmfreekassa"
RESULT, SUCCESS, FAIL = "/mancgi/fkresult", "/mancgi/fksuccess", "/mancgi/fkfail"
MISMATCH = "amount mismatch"


@hookimpl
def billcore_module_info() -> ModuleInfo:
    """FreeKassa: two secret words (one signs the form, the other the notifications), answer ``YES``."""
    return ModuleInfo(key=KEY, title="FreeKassa", description="Cards, SBP and e-wallets through FreeKassa.",
                      version="0.1.0", categories=("card", "wallet"), currencies=protocol.CURRENCIES,
                      secret_fields=("secret1", "secret2"), registration_url="https://freekassa.com/",
                      api_version="3.0", success_answer=protocol.ANSWER)


# --- the integration settings ----------------------------------------------------------------------

def networks(settings: dict[str, Any]) -> list[str]:
    """The addresses and networks of the ``networks`` setting (comma- or space-separated)."""
    return [part for part in re.split(r"[\s,]+", str(settings.get("networks") or "")) if part]


class IntegrationForm(FlaskForm):
    """What the admin copies from FreeKassa's cabinet (the shop's settings page)."""

    merchant_id = StringField(_l("Shop ID"), validators=[DataRequired(), Length(max=20)])
    secret1 = PasswordField(_l("Secret word 1"), validators=[Optional(), Length(max=200)],
                            description=_l("Signs the payment form. Leave blank to keep the stored one."))
    secret2 = PasswordField(_l("Secret word 2"), validators=[Optional(), Length(max=200)],
                            description=_l("Checks the notifications. Leave blank to keep the stored one."))
    networks = StringField(_l("Notification addresses"), default=", ".join(protocol.NETWORKS),
                           validators=[Optional(), Length(max=1000)],
                           description=_l("The addresses FreeKassa notifies from, separated by commas. Blank: "
                                          "any address (notifications are still signed)."))


@hookimpl
def billcore_integration_form(paymethod: Any) -> type[IntegrationForm]:
    """The settings form (billcore encrypts ``secret1`` and ``secret2``)."""
    return IntegrationForm


@hookimpl
def billcore_validate_integration(settings: dict[str, Any], currency: str | None) -> dict[str, list[str]]:
    """A numeric shop ID, both secret words, and addresses that parse; never a secret in a message."""
    errors: dict[str, list[str]] = {}
    if not re.fullmatch(r"\d{1,20}", str(settings.get("merchant_id") or "")):
        errors["merchant_id"] = [_("The shop ID is the number FreeKassa gave the shop.")]
    for name in ("secret1", "secret2"):
        if len(str(settings.get(name) or "")) < 4:
            errors[name] = [_("Copy the secret word from the shop's settings at FreeKassa.")]
    bad = [entry for entry in networks(settings) if not _is_network(entry)]
    if bad:
        errors["networks"] = [_("Not an address or a network: %(entries)s.", entries=", ".join(bad)[:100])]
    return errors


def _is_network(entry: str) -> bool:
    """True when ``entry`` is an IPv4 or IPv6 address or network (``10.0.0.0/8``)."""
    try:
        ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False
    return True


@hookimpl
def billcore_gateway_setup(paymethod: Any, settings: dict[str, Any], base_url: str) -> GatewaySetup:
    """What the admin enters on the shop's settings page at FreeKassa."""
    base = base_url.rstrip("/")
    warnings = () if networks(settings) else (_("No notification addresses: any address may send notifications "
                                                "(they are still checked by their signature)."),)
    return GatewaySetup(items=(SetupItem(_("Notification URL"), base + RESULT),
                               SetupItem(_("Notification method"), "POST", copy=False),
                               SetupItem(_("Success URL"), base + SUCCESS), SetupItem(_("Fail URL"), base + FAIL)),
                        warnings=warnings)


# --- paying ----------------------------------------------------------------------------------------

@hookimpl
def billcore_start_payment(payment: Payment, settings: dict[str, Any], customer: Customer) -> StartAction:
    """FreeKassa's payment page for ``payment``: a GET of the signed form fields."""
    fields = {"m": str(settings["merchant_id"]), "oa": format_amount(payment.total, payment.currency),
              "currency": payment.currency, "o": str(payment.id)}
    fields["s"] = protocol.form_signature(fields["m"], fields["oa"], str(settings["secret1"]), fields["currency"],
                                          fields["o"])
    fields.update(lang=customer.language, em=customer.email)
    return StartAction(protocol.PAY_URL + "?" + urlencode(fields))


# --- the notification and the returns --------------------------------------------------------------

@gateway_callback(KEY, source="fkresult", id_field="MERCHANT_ORDER_ID", fields=protocol.NOTIFICATION_FIELDS,
                  prefixes=("us_",), allowed_addresses=networks)
def notification(call: CallbackRequest) -> Answer:
    """A payment FreeKassa received: credit it once and answer ``YES`` (also to every repeat)."""
    params, settings, payment = dict(call.params), call.payment.settings, call.payment
    if not protocol.notification_is_signed(params, str(settings.get("secret2") or "")):
        raise Refuse("bad signature" if params.get("SIGN") else "no signature", answer="bad sign")
    if params.get("MERCHANT_ID") != str(settings.get("merchant_id")):
        raise Refuse("another shop", answer="bad shop")
    try:
        amount = parse_amount(params.get("AMOUNT", ""), payment.currency)
    except MoneyError:
        raise Refuse("bad amount", answer="bad amount") from None
    try:
        # FreeKassa names no currency: the payment's own, now that the amount is known to be one of it
        outcome = set_paid(payment.payment_id, amount=amount, currency=payment.currency, source="fkresult",
                           data=params, external_id=params.get("intid") or None,
                           answer=lambda outcome: MISMATCH if outcome.result == "fraud" else protocol.ANSWER)
    except IllegalTransition as exc:  # flagged as fraud before: a repeat hears the same answer
        raise Refuse(str(exc), answer=MISMATCH) from None
    return Answer(MISMATCH, 400) if outcome.result == "fraud" else Answer(protocol.ANSWER)


fksuccess = gateway_return(KEY, source="fksuccess", id_field="MERCHANT_ORDER_ID", outcome="success",
                           fields=("MERCHANT_ORDER_ID", "intid"))
fkfail = gateway_return(KEY, source="fkfail", id_field="MERCHANT_ORDER_ID", outcome="fail",
                        fields=("MERCHANT_ORDER_ID", "intid"))


@hookimpl
def billcore_blueprints(app: Flask) -> list[Blueprint]:
    """The notification and the two return pages (billcore exempts exactly these from CSRF)."""
    bp = Blueprint(KEY, __name__)
    bp.add_url_rule(RESULT, view_func=notification, methods=["POST"])
    bp.add_url_rule(SUCCESS, view_func=fksuccess, methods=["GET", "POST"])
    bp.add_url_rule(FAIL, view_func=fkfail, methods=["GET", "POST"])
    return [bp]
