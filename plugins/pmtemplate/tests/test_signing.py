"""The fake gateway's signature recipe: the signed text is unambiguous, so no field can shift into another."""
from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from pmtemplate.signing import SIGNATURE_FIELD, canonical, sign, signed, verify

SECRET = "s3cr3t-shared-value"


def test_a_newline_cannot_shift_a_field_into_the_next():
    honest = {"amount": "1000.00", "payment_id": "7"}
    shifted = {"amount": "1000.00\npayment_id=7"}  # the same text under "name=value" lines
    assert canonical(honest) != canonical(shifted)
    assert sign(honest, SECRET) != sign(shifted, SECRET)
    assert not verify({**shifted, SIGNATURE_FIELD: sign(honest, SECRET)}, SECRET)


def test_an_equals_sign_cannot_move_the_boundary_between_name_and_value():
    assert canonical({"a": "b=c"}) != canonical({"a=b": "c"})


def test_signature_field_is_left_out_and_values_become_text():
    assert canonical({"a": 1, SIGNATURE_FIELD: "x"}) == canonical({"a": "1"}) == b'{"a":"1"}'


def test_verify_refuses_a_missing_signature_or_secret():
    params = signed({"a": "1"}, SECRET)
    assert verify(params, SECRET)
    assert not verify(params, "")
    assert not verify({"a": "1"}, SECRET)
    assert not verify(params, SECRET + "x")


fields = st.dictionaries(st.text(max_size=8).filter(lambda name: name != SIGNATURE_FIELD), st.text(max_size=12),
                         max_size=5)


@given(fields)
def test_the_signed_text_decodes_back_to_exactly_the_fields(params):
    """Injective: the canonical text determines the fields, so different fields never sign alike."""
    assert json.loads(canonical(params)) == params
    assert verify(signed(params, SECRET), SECRET)


@given(fields, fields)
def test_different_fields_never_share_the_signed_text(a, b):
    assert (canonical(a) == canonical(b)) == (a == b)
