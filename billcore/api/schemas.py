"""The API's request and response schemas (marshmallow; flask-smorest turns them into the OpenAPI document)."""
from __future__ import annotations

from decimal import Decimal, InvalidOperation

import marshmallow as ma
from marshmallow import fields, validate

from .. import filters
from ..args import MAX_ID
from ..models import Status
from ..states import ProfileStatus
from ..money import CURRENCIES, MAX_AMOUNT
from ..payments.adjustments import MAX_REASON

_NONZERO = r"([1-9][0-9]{0,11}(\.[0-9]{1,2})?|0\.([1-9][0-9]?|0[1-9]))"
AMOUNT_PATTERN = r"^-?[0-9]{1,12}(\.[0-9]{1,2})?$"
NONZERO_PATTERN = rf"^-?{_NONZERO}$"  # an adjustment: a credit or a debit, never zero
POSITIVE_PATTERN = rf"^{_NONZERO}$"  # a payment's or a refund's amount
FILTER_PATTERN = r"^[0-9]{1,12}(\.[0-9]{1,2})?$"  # a bound of the amount filter
Id = lambda **kw: fields.Integer(validate=validate.Range(1, MAX_ID), **kw)  # noqa: E731


class Money(fields.String):
    """Money as a decimal string (``"100.00"``), never a float; loads into a Decimal."""

    def __init__(self, pattern: str = AMOUNT_PATTERN, **kwargs):
        self._shape = validate.Regexp(pattern, error="a decimal string such as \"100.00\"")
        super().__init__(metadata={"pattern": pattern, "examples": ["100.00"], **kwargs.pop("metadata", {})},
                         **kwargs)

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else str(value)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        self._shape(text)  # before Decimal(): the pattern bounds size and shape
        try:
            amount = Decimal(text)
        except InvalidOperation:
            raise ma.ValidationError("not a decimal amount") from None
        if abs(amount) > MAX_AMOUNT:
            raise ma.ValidationError("too large")
        return amount


# the characters filters.has_control_characters finds, as a regex class (ECMA and Python alike); in
# multi-line text tab, line feed and carriage return are allowed
_CONTROL = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
_CONTROL_MULTILINE = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029"


class Text(fields.String):
    """Text from a client: control characters are refused (PostgreSQL cannot store NUL in text, and none
    belongs in a name or a reason); ``multiline`` text may hold tabs and line breaks; ``not_blank`` text
    must have something besides white space. The document's ``pattern`` states the same rule."""

    def __init__(self, *, multiline: bool = False, not_blank: bool = False, **kwargs):
        self.multiline = multiline
        bad = _CONTROL_MULTILINE if multiline else _CONTROL
        pattern = rf"^[ \t\r\n]*[^ \t\r\n{bad}][^{bad}]*$" if not_blank else rf"^[^{bad}]*$"
        validators = list(kwargs.pop("validate", None) or [])
        if not_blank:
            validators.append(validate.Regexp(pattern, error="must not be blank"))
        super().__init__(validate=validators, metadata={"pattern": pattern, **kwargs.pop("metadata", {})}, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        checked = text.translate({9: None, 10: None, 13: None}) if self.multiline else text
        if filters.has_control_characters(checked):
            raise ma.ValidationError("must not contain control characters")
        return text


# the years filters.day takes (1900 to 9998), for the document
DAY_PATTERN = r"^(19[0-9]{2}|[2-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])-[0-9]{2}-[0-9]{2}$"


class Day(fields.Date):
    """A day of a filter, read by :func:`billcore.filters.day` (bounded so that the next day exists)."""

    def __init__(self, **kwargs):
        super().__init__(metadata={"pattern": DAY_PATTERN, **kwargs.pop("metadata", {})}, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):
            raise ma.ValidationError("a day such as \"2026-12-02\"")
        try:
            day = filters.day(value)
        except filters.BadFilter:
            raise ma.ValidationError(f"a day from {filters.FIRST_DAY} to {filters.LAST_DAY}") from None
        if day is None:
            raise ma.ValidationError("a day such as \"2026-12-02\"")
        return day


class FilterAmount(Money):
    """A bound of an amount filter, read by :func:`billcore.filters.amount` after the pattern."""

    def __init__(self, **kwargs):
        super().__init__(FILTER_PATTERN, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        super()._deserialize(value, attr, data, **kwargs)  # the documented shape
        try:
            return filters.amount(value)
        except filters.BadFilter:
            raise ma.ValidationError("not a decimal amount") from None


class Base(ma.Schema):
    """Unknown fields in a request are an error, not silently dropped."""

    class Meta:
        unknown = ma.RAISE


class ProblemSchema(ma.Schema):
    """RFC 9457 problem details."""

    type = fields.String(required=True)
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    detail = fields.String()
    errors = fields.Dict(metadata={"description": "Field -> messages, for a request that did not validate"})


class AccountSchema(Base):
    id = fields.Integer(dump_only=True)
    name = Text(required=True, validate=[validate.Length(1, 200)])
    currency = fields.String(required=True, validate=validate.OneOf(sorted(CURRENCIES)))
    balance = Money(dump_only=True)
    created_at = fields.DateTime(dump_only=True)


class AdjustmentSchema(Base):
    amount = Money(NONZERO_PATTERN, required=True, metadata={"description": "Positive: credit; negative: debit"})
    reason = Text(multiline=True, not_blank=True, required=True, validate=[validate.Length(1, MAX_REASON)])


class AdjustmentResultSchema(Base):
    account_id = fields.Integer()
    amount = Money()
    balance = Money()
    currency = fields.String()


class ListQuery(Base):
    before = Id(metadata={"description": "Keyset cursor: the next_before of the previous page"})
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 200))


class AccountPageSchema(Base):
    items = fields.List(fields.Nested(AccountSchema))
    next_before = fields.Integer(allow_none=True)


class PaymentQuery(ListQuery):
    status = fields.String(validate=validate.OneOf([s.value for s in Status]))
    paymethod_id = Id()
    account_id = Id()
    date_from = Day()
    date_to = Day()
    amount_min = FilterAmount()
    amount_max = FilterAmount()


class PaymentSchema(Base):
    id = fields.Integer()
    account_id = fields.Integer()
    paymethod_id = fields.Integer()
    status = fields.String()
    amount = Money()
    commission = Money()
    total = Money()
    refunded_amount = Money()
    currency = fields.String()
    external_id = fields.String(allow_none=True)
    description = fields.String(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    paid_at = fields.DateTime(allow_none=True)


class PaymentPageSchema(Base):
    items = fields.List(fields.Nested(PaymentSchema))
    next_before = fields.Integer(allow_none=True)


class EventSchema(Base):
    id = fields.Integer()
    kind = fields.String()
    source = fields.String()
    status_from = fields.String(allow_none=True)
    status_to = fields.String(allow_none=True)
    outcome = fields.String()
    actor = fields.String(allow_none=True)
    created_at = fields.DateTime()


class RefundSchema(Base):
    id = fields.Integer()
    payment_id = fields.Integer()
    amount = Money()
    status = fields.String()
    reason = fields.String(allow_none=True)
    created_at = fields.DateTime()


class PaymentDetailSchema(PaymentSchema):
    events = fields.List(fields.Nested(EventSchema))
    refunds = fields.List(fields.Nested(RefundSchema))


class TopUpSchema(Base):
    account_id = Id(required=True)
    paymethod_id = Id(required=True)
    amount = Money(POSITIVE_PATTERN, required=True)
    description = Text(validate=[validate.Length(max=255)])


class TopUpResultSchema(Base):
    payment = fields.Nested(PaymentSchema)
    start_url = fields.String(metadata={"description": "Open this URL in the customer's browser to pay"})
    start_method = fields.String(metadata={"description": "Always GET: the customer's payment page, whose Pay "
                                                          "button starts the payment"})
    start_fields = fields.Dict(keys=fields.String(), values=fields.String())


class RefundRequestSchema(Base):
    amount = Money(POSITIVE_PATTERN, required=True)
    reason = Text(multiline=True, validate=[validate.Length(max=500)])


class RefundResultSchema(Base):
    refund = fields.Nested(RefundSchema)
    state = fields.String(metadata={"description": "finished, failed, pending or error"})
    info = fields.String(allow_none=True)


class ReasonSchema(Base):
    reason = Text(multiline=True, not_blank=True, required=True, validate=[validate.Length(1, 500)])


class OutcomeSchema(Base):
    payment = fields.Nested(PaymentSchema)
    changed = fields.Boolean()


class PaymethodSchema(Base):
    id = fields.Integer()
    module = fields.String()
    name = fields.String()
    name_ru = fields.String(allow_none=True)
    currency = fields.String()
    active = fields.Boolean()
    min_amount = Money(allow_none=True)
    max_amount = Money(allow_none=True)
    commission_amount = Money()
    commission_percent = fields.String()
    allow_refund = fields.Boolean()
    recurring = fields.Boolean()
    settings = fields.Dict(metadata={"description": "Public settings only; secrets are never shown"})


class PaymethodListSchema(Base):
    items = fields.List(fields.Nested(PaymethodSchema))


class ProfileQuery(ListQuery):
    status = fields.String(validate=validate.OneOf([s.value for s in ProfileStatus]))


class ProfileSchema(Base):
    id = fields.Integer()
    account_id = fields.Integer()
    paymethod_id = fields.Integer()
    parent_payment_id = fields.Integer()
    rule = fields.String()
    amount = Money()
    threshold = Money(allow_none=True)
    monthly_max = Money()
    charge_day = fields.Integer(allow_none=True)
    status = fields.String()
    next_charge_at = fields.DateTime(allow_none=True)
    failures = fields.Integer()
    last_error = fields.String(allow_none=True)
    created_at = fields.DateTime()


class ProfilePageSchema(Base):
    items = fields.List(fields.Nested(ProfileSchema))
    next_before = fields.Integer(allow_none=True)
