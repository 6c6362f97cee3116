"""The state enums: stored strings unchanged, result types validated when they are built."""
from __future__ import annotations

import pytest

from billcore import paymodule, states
from billcore.models import RecurringCharge, RecurringProfile, Refund
from billcore.paymodule import ChargeResult, GatewayStatus, RefundResult
from billcore.states import (ChargeState, ChargeStatus, GatewayState, InvalidState, ProfileStatus, RefundState,
                             RefundStatus, Status, parse_state)


def test_stored_strings_are_unchanged():
    # these strings are in existing databases and in modules' answers: renaming one is a migration
    assert [s.value for s in Status] == ["new", "inpay", "paid", "cancelled", "fraud", "pending_return", "returned"]
    assert [s.value for s in RefundStatus] == ["requested", "finished", "failed"]
    assert [s.value for s in ProfileStatus] == ["active", "suspended", "cancelled"]
    assert [s.value for s in ChargeStatus] == ["claimed", "accepted", "paid", "failed", "abandoned"]
    assert [s.value for s in GatewayState] == ["paid", "cancelled", "pending"]
    assert [s.value for s in RefundState] == ["finished", "pending", "failed"]
    assert [s.value for s in ChargeState] == ["accepted", "paid", "failed", "error"]
    # a member is its string: compared, formatted and hashed as one
    assert Status.PAID == "paid" and f"{Status.PAID}" == "paid" and str(RefundStatus.REQUESTED) == "requested"
    assert {"paid": 1}[Status.PAID] == 1


def test_model_defaults_are_the_enum_values():
    assert Refund.__table__.c.status.default.arg == RefundStatus.REQUESTED == "requested"
    assert RecurringProfile.__table__.c.status.default.arg == ProfileStatus.ACTIVE == "active"
    assert RecurringCharge.__table__.c.state.default.arg == ChargeStatus.CLAIMED == "claimed"


@pytest.mark.parametrize(("kind", "good", "enum"), [(GatewayStatus, "cancelled", GatewayState),
                                                    (RefundResult, "finished", RefundState),
                                                    (ChargeResult, "accepted", ChargeState)])
def test_result_types_take_a_string_or_a_member_and_hold_the_member(kind, good, enum):
    built = kind(good)
    assert built.state is enum(good) and type(built.state) is enum
    assert kind(enum(good)).state is enum(good)


@pytest.mark.parametrize(("kind", "bad"), [(GatewayStatus, "canceled"), (GatewayStatus, "PAID"), (GatewayStatus, ""),
                                           (GatewayStatus, None), (RefundResult, "done"), (RefundResult, "requested"),
                                           (ChargeResult, "ok"), (ChargeResult, "cancelled"), (ChargeResult, 1)])
def test_an_unknown_state_is_refused_when_the_result_is_built(kind, bad):
    with pytest.raises(InvalidState) as caught:
        kind(bad)
    assert repr(bad) in str(caught.value)  # says what came, and what may
    assert isinstance(caught.value, ValueError)


def test_parse_state_names_the_allowed_values():
    assert parse_state(RefundStatus, "failed") is RefundStatus.FAILED
    with pytest.raises(InvalidState, match=r"'canceled' is not a state \(one of 'paid', 'cancelled', 'pending'\)"):
        parse_state(GatewayState, "canceled")


def test_modules_reach_the_enums_through_paymodule():
    for name in ("Status", "GatewayState", "RefundState", "ChargeState", "RefundStatus", "ProfileStatus",
                 "ChargeStatus", "InvalidState"):
        assert getattr(paymodule, name) is getattr(states, name)
