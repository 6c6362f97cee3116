"""The API's request and response schemas (marshmallow; flask-smorest turns them into the OpenAPI document)."""
from __future__ import annotations

from decimal import Decimal, InvalidOperation

import marshmallow as ma
from marshmallow import fields, validate

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
# the same rule in Python and in the document's (ECMA) regex, whose \s is not Python's
TEXT = validate.Regexp(r"^[ \t\r\n]*[^ \t\r\n]", error="must not be blank")  # a reason someone has to read
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
    name = fields.String(required=True, validate=validate.Length(1, 200))
    currency = fields.String(required=True, validate=validate.OneOf(sorted(CURRENCIES)))
    balance = Money(dump_only=True)
    created_at = fields.DateTime(dump_only=True)


class AdjustmentSchema(Base):
    amount = Money(NONZERO_PATTERN, required=True, metadata={"description": "Positive: credit; negative: debit"})
    reason = fields.String(required=True, validate=[validate.Length(1, MAX_REASON), TEXT])


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
    date_from = fields.Date()
    date_to = fields.Date()
    amount_min = Money(FILTER_PATTERN)
    amount_max = Money(FILTER_PATTERN)


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
    description = fields.String(validate=validate.Length(max=255))


class TopUpResultSchema(Base):
    payment = fields.Nested(PaymentSchema)
    start_url = fields.String(metadata={"description": "Open this URL in the customer's browser to pay"})
    start_method = fields.String(metadata={"description": "GET (a link) or POST (submit start_fields)"})
    start_fields = fields.Dict(keys=fields.String(), values=fields.String())


class RefundRequestSchema(Base):
    amount = Money(POSITIVE_PATTERN, required=True)
    reason = fields.String(validate=validate.Length(max=500))


class RefundResultSchema(Base):
    refund = fields.Nested(RefundSchema)
    state = fields.String(metadata={"description": "finished, failed, pending or error"})
    info = fields.String(allow_none=True)


class ReasonSchema(Base):
    reason = fields.String(required=True, validate=[validate.Length(1, 500), TEXT])


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
