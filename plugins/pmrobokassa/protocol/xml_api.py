"""Robokassa protocol: XML interfaces (§6).

Part of :mod:`pmrobokassa.protocol` (a pure layer: no Flask, no database, no network).
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal


from .errors import GatewayError, MalformedField, MalformedMessage
from .amounts import _require_decimal, parse_amount
from .compact_json import _decimal_json


AUTH_XML_NAMESPACE = "http://auth.robokassa.ru/Merchant/WebService/"
LEGACY_XML_NAMESPACE = "http://merchant.roboxchange.com/WebService/"

# OpStateExt Result/Code (§6.1)
RESULT_OK = 0
RESULT_BAD_SIGNATURE = 1
RESULT_SHOP_NOT_FOUND = 2
RESULT_NO_OPERATION = 3
RESULT_DUPLICATE_OPERATIONS = 4
RESULT_INTERNAL_ERROR = 1000

# OpStateExt State/Code (§6.1)
STATE_INITIATED = 5
STATE_CANCELLED = 10
STATE_HOLD = 20
STATE_RECEIVED = 50
STATE_RETURNED = 60
STATE_SUSPENDED = 80
STATE_PAID = 100

_CODE_RE = re.compile(r"-?[0-9]{1,9}")


def _local(tag: object) -> str:
    # "{namespace}Name" -> "Name": two namespaces are seen in the wild (§6), so we match local names.
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _child(parent: ET.Element | None, name: str) -> ET.Element | None:
    if parent is None:
        return None
    for element in parent:
        if _local(element.tag) == name:
            return element
    return None


def _children(parent: ET.Element | None, name: str) -> list[ET.Element]:
    return [] if parent is None else [e for e in parent if _local(e.tag) == name]


def _text(parent: ET.Element | None, name: str) -> str | None:
    element = _child(parent, name)
    if element is None:
        return None
    return (element.text or "").strip()


def _int_field(text: str | None, what: str) -> int | None:
    if text is None or text == "":
        return None
    if not _CODE_RE.fullmatch(text):
        raise MalformedField(f"{what}: {text[:20]!r} is not an integer code")
    return int(text)


def _optional_amount(text: str | None, what: str) -> Decimal | None:
    return None if text is None or text == "" else parse_amount(text, what)


def _parse_xml_root(xml_text: str | bytes, expected_root: str) -> ET.Element:
    if isinstance(xml_text, bytes):
        probe = xml_text.decode("latin-1").lower()
    elif isinstance(xml_text, str):
        probe = xml_text.lower()
    else:
        raise MalformedMessage(f"{expected_root}: expected XML text, got {type(xml_text).__name__}")
    if "<!doctype" in probe or "<!entity" in probe:
        # Robokassa never sends a DTD; refusing them rules out entity-expansion tricks cheaply.
        raise MalformedMessage(f"{expected_root}: DTDs are not allowed in answers")
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise MalformedMessage(f"{expected_root}: not well-formed XML ({exc})") from None
    if _local(root.tag) != expected_root:
        raise MalformedMessage(f"expected a {expected_root} document, got {_local(root.tag)!r}")
    return root


def _parse_result(root: ET.Element) -> tuple[int, str]:
    result = _child(root, "Result")
    code = _int_field(_text(result, "Code"), "Result/Code")
    if code is None:
        raise MalformedMessage(f"{_local(root.tag)}: missing Result/Code")
    return code, _text(result, "Description") or ""


def _xml_root(name: str, namespace: str | None) -> ET.Element:
    # A literal xmlns attribute puts the whole tree in the default namespace without touching
    # ElementTree's global prefix registry (register_namespace is process-wide).
    return ET.Element(name, {"xmlns": namespace} if namespace else {})


def _sub_text(parent: ET.Element, name: str, text: str | None) -> None:
    if text is not None:
        ET.SubElement(parent, name).text = text


def _serialise_xml(root: ET.Element) -> str:
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode")


def _result_element(root: ET.Element, code: int, description: str) -> None:
    result = ET.SubElement(root, "Result")
    _sub_text(result, "Code", str(code))
    if description:
        _sub_text(result, "Description", description)


def _xml_amount(value: Decimal | None) -> str | None:
    if value is None:
        return None
    # Robokassa writes money with six decimals ("100.000000"); the sandbox imitates that.
    return format(_require_decimal(value, "amount").quantize(Decimal("0.000001")), "f")


@dataclass(frozen=True)
class OpState:
    """The useful part of an OpStateExt answer (§6.1).

    ``result_code`` 0 means the request was answered; only then are the other fields filled.
    ``state_code`` 100 means paid (see the ``STATE_*`` constants). Dates are kept as the raw ISO
    strings Robokassa sends (they may carry seven fractional digits). ``payment_method`` is the
    ``Info/PaymentMethod/Code`` (e.g. ``BankCard``); ``user_fields`` are the echoed ``Shp_*`` values.
    """

    result_code: int
    description: str = ""
    state_code: int | None = None
    state_date: str | None = None
    request_date: str | None = None
    op_key: str | None = None
    out_sum: Decimal | None = None
    inc_sum: Decimal | None = None
    inc_curr_label: str | None = None
    payment_method: str | None = None
    user_fields: dict[str, str] = field(default_factory=dict)

    @property
    def is_paid(self) -> bool:
        """True when Robokassa reports the payment as completed and credited (state 100)."""
        return self.result_code == RESULT_OK and self.state_code == STATE_PAID


def parse_opstate(xml_text: str | bytes) -> OpState:
    """Parse an ``OperationStateResponse`` (OpStateExt answer), ignoring XML namespaces.

    Raises :class:`MalformedMessage` for unparsable XML or a missing ``Result/Code`` and
    :class:`MalformedField` for malformed codes or amounts. A non-zero result code is not an
    exception: it is returned in ``result_code`` with its description.
    """
    root = _parse_xml_root(xml_text, "OperationStateResponse")
    code, description = _parse_result(root)
    if code != RESULT_OK:
        return OpState(result_code=code, description=description)
    state, info = _child(root, "State"), _child(root, "Info")
    # PaymentMethod is a {Code, Description} element; tolerate a bare text value too.
    method = _child(info, "PaymentMethod")
    if _child(method, "Code") is not None:
        method_code = _text(method, "Code")
    else:
        method_code = _text(info, "PaymentMethod")
    user_fields: dict[str, str] = {}
    for field_element in _children(_child(root, "UserField"), "Field"):
        name = _text(field_element, "Name")
        if name:
            user_fields[name] = _text(field_element, "Value") or ""
    return OpState(
        result_code=code,
        description=description,
        state_code=_int_field(_text(state, "Code"), "State/Code"),
        state_date=_text(state, "StateDate") or None,
        request_date=_text(state, "RequestDate") or None,
        op_key=_text(info, "OpKey") or None,
        out_sum=_optional_amount(_text(info, "OutSum"), "Info/OutSum"),
        inc_sum=_optional_amount(_text(info, "IncSum"), "Info/IncSum"),
        inc_curr_label=_text(info, "IncCurrLabel") or None,
        payment_method=method_code or None,
        user_fields=user_fields,
    )


def build_opstate_xml(state: OpState, *, namespace: str | None = AUTH_XML_NAMESPACE) -> str:
    """Render ``state`` as the ``OperationStateResponse`` XML a Robokassa server answers (for the sandbox).

    With a non-zero ``result_code`` only ``Result`` is written, as the real service does (§6).
    ``parse_opstate(build_opstate_xml(s)) == s`` for every ``OpState`` this module produces.
    """
    root = _xml_root("OperationStateResponse", namespace)
    _result_element(root, state.result_code, state.description)
    if state.result_code != RESULT_OK:
        return _serialise_xml(root)
    if state.state_code is not None or state.state_date or state.request_date:
        element = ET.SubElement(root, "State")
        _sub_text(element, "Code", None if state.state_code is None else str(state.state_code))
        _sub_text(element, "RequestDate", state.request_date)
        _sub_text(element, "StateDate", state.state_date)
    info = ET.SubElement(root, "Info")
    _sub_text(info, "IncCurrLabel", state.inc_curr_label)
    _sub_text(info, "IncSum", _xml_amount(state.inc_sum))
    if state.payment_method is not None:
        _sub_text(ET.SubElement(info, "PaymentMethod"), "Code", state.payment_method)
    _sub_text(info, "OutSum", _xml_amount(state.out_sum))
    _sub_text(info, "OpKey", state.op_key)
    if state.user_fields:
        user_field = ET.SubElement(root, "UserField")
        for name, value in state.user_fields.items():
            element = ET.SubElement(user_field, "Field")
            _sub_text(element, "Name", name)
            _sub_text(element, "Value", value)
    return _serialise_xml(root)


@dataclass(frozen=True)
class Currency:
    """One payment option of GetCurrencies; ``label`` is what goes into ``IncCurrLabel``."""

    label: str
    alias: str
    name: str
    min_value: Decimal | None = None
    max_value: Decimal | None = None


@dataclass(frozen=True)
class CurrencyGroup:
    """A group of payment options (``Group@Code``, ``Group@Description``) of GetCurrencies."""

    code: str
    description: str
    items: tuple[Currency, ...] = ()


def parse_currencies(xml_text: str | bytes) -> list[CurrencyGroup]:
    """Parse a ``CurrenciesList`` (GetCurrencies answer) into groups, ignoring XML namespaces.

    Raises :class:`GatewayError` when Robokassa answered with a non-zero result code (for example
    2 = shop not found), :class:`MalformedMessage`/:class:`MalformedField` for broken answers.
    """
    root = _parse_xml_root(xml_text, "CurrenciesList")
    code, description = _parse_result(root)
    if code != RESULT_OK:
        raise GatewayError(code, description)
    groups = []
    for group in _children(_child(root, "Groups"), "Group"):
        items = tuple(
            Currency(
                label=currency.get("Label", ""),
                alias=currency.get("Alias", ""),
                name=currency.get("Name", ""),
                min_value=_optional_amount(currency.get("MinValue"), "Currency@MinValue"),
                max_value=_optional_amount(currency.get("MaxValue"), "Currency@MaxValue"),
            )
            for currency in _children(_child(group, "Items"), "Currency")
        )
        groups.append(CurrencyGroup(group.get("Code", ""), group.get("Description", ""), items))
    return groups


def build_currencies_xml(
    groups: Iterable[CurrencyGroup], *, namespace: str | None = AUTH_XML_NAMESPACE
) -> str:
    """Render groups as the ``CurrenciesList`` XML GetCurrencies answers (for the sandbox)."""
    root = _xml_root("CurrenciesList", namespace)
    _result_element(root, RESULT_OK, "")
    groups_element = ET.SubElement(root, "Groups")
    for group in groups:
        group_element = ET.SubElement(groups_element, "Group", {"Code": group.code,
                                                                "Description": group.description})
        items_element = ET.SubElement(group_element, "Items")
        for item in group.items:
            attributes = {"Label": item.label, "Alias": item.alias, "Name": item.name}
            if item.min_value is not None:
                attributes["MinValue"] = _decimal_json(_require_decimal(item.min_value, "MinValue"))
            if item.max_value is not None:
                attributes["MaxValue"] = _decimal_json(_require_decimal(item.max_value, "MaxValue"))
            ET.SubElement(items_element, "Currency", attributes)
    return _serialise_xml(root)


# A plausible offline list of Robokassa payment options (docs/design.md §7), used to fill the
# "Payment method" select when GetCurrencies cannot be asked (no network, sandbox). Labels follow the
# real naming seen in captured GetCurrencies answers; a live shop's list may differ.
BUILTIN_CURRENCIES: tuple[CurrencyGroup, ...] = (
    CurrencyGroup("BankCard", "Bank cards", (
        Currency("BankCardPSR", "BankCard", "Bank card (Visa, Mastercard, Maestro, Mir)"),
        Currency("SBPPSR", "SBP", "Faster Payments System (SBP)"),
        Currency("YandexPayPSR", "YandexPay", "Yandex Pay", max_value=Decimal("100000")),
        Currency("MirPayPSR", "MirPay", "Mir Pay"),
        Currency("SberPayPSR", "SberPay", "SberPay"),
    )),
    CurrencyGroup("Terminals", "Cash", (
        Currency("TerminalsElecsnetOceanR", "Elecsnet", "Elecsnet terminals", max_value=Decimal("15000")),
        Currency("RapidaOceanEurosetR", "Euroset", "Euroset stores", max_value=Decimal("15000")),
        Currency("RapidaOceanSvyaznoyR", "Svyaznoy", "Svyaznoy stores", max_value=Decimal("15000")),
    )),
    CurrencyGroup("EMoney", "E-wallets", (
        Currency("Qiwi40PS", "QiwiWallet", "QIWI Wallet", max_value=Decimal("15000")),
        Currency("YandexMerchantPS5R", "YandexMoney", "YooMoney", max_value=Decimal("15000")),
        Currency("WMR20PM", "WMR", "WebMoney WMR"),
    )),
    CurrencyGroup("Mobile", "Mobile payments", (
        Currency("RuRuBeelinePSR", "PhoneBeeline", "Beeline", Decimal("10"), Decimal("14354")),
        Currency("MixplatMegafonRIBR", "PhoneMegafon", "MegaFon", Decimal("10"), Decimal("15000")),
        Currency("MixplatMTSRIBR", "PhoneMTS", "MTS", Decimal("10"), Decimal("15000")),
        Currency("MixplatTele2RIBR", "PhoneTele2", "Tele2", Decimal("10"), Decimal("15000")),
    )),
    CurrencyGroup("Bank", "Online banking", (
        Currency("AlfaBankOceanR", "AlfaBank", "Alfa-Click"),
        Currency("VTB24R", "VTB24", "VTB Online"),
    )),
)
