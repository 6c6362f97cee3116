"""The recurring run's decision for a profile's latest unsettled period: a pure table, tested without a
database (the applier in ``_claim`` is covered by tests/test_recurring.py on SQLite and PostgreSQL)."""
from __future__ import annotations

import pytest

from billcore.recurring import PENDING_TABLE, PendingAction, decide_pending
from billcore.states import ChargeStatus, Status

A = PendingAction
UNSETTLED = (ChargeStatus.CLAIMED, ChargeStatus.ACCEPTED, ChargeStatus.FAILED)  # what _claim selects
SETTLED_CHILD = (Status.PAID, Status.CANCELLED, Status.FRAUD, Status.PENDING_RETURN, Status.RETURNED)


@pytest.mark.parametrize(("state", "child", "action"), [
    (None, None, A.NEW_PERIOD),
    # the gateway is working on it
    (ChargeStatus.CLAIMED, Status.INPAY, A.WAIT),
    (ChargeStatus.ACCEPTED, Status.INPAY, A.WAIT),
    (ChargeStatus.ACCEPTED, Status.NEW, A.WAIT),
    # an interrupted run left the child new, or made none: charge the same period again
    (ChargeStatus.CLAIMED, Status.NEW, A.RETRY),
    (ChargeStatus.CLAIMED, None, A.RETRY),
    # accepted without a child cannot happen: never left dangling
    (ChargeStatus.ACCEPTED, None, A.FAIL_AND_RETRY),
    # a failed period is retried, never replaced by a second one, whatever became of its child
    (ChargeStatus.FAILED, None, A.RETRY),
    *[(ChargeStatus.FAILED, s, A.RETRY) for s in Status],
    # the child was settled meanwhile: its outcome is booked on the period
    *[(ChargeStatus.CLAIMED, s, A.RECONCILE) for s in SETTLED_CHILD],
    *[(ChargeStatus.ACCEPTED, s, A.RECONCILE) for s in SETTLED_CHILD],
])
def test_decision(state, child, action):
    assert decide_pending(state, child) is action
    # the stored strings decide the same as the enums (rows read back are plain str)
    assert decide_pending(None if state is None else state.value, None if child is None else child.value) is action


def test_every_situation_a_run_can_meet_has_exactly_one_decision():
    for state in UNSETTLED:
        for child in (None, *Status):
            matching = [row for row in PENDING_TABLE if row[0] == state
                        and (row[1] == child or (row[1] == "*" and child is not None))]
            assert matching, (state, child)
            assert decide_pending(state, child) is matching[0][2]


def test_a_situation_outside_the_table_is_an_error_not_a_guess():
    with pytest.raises(ValueError, match="no rule"):
        decide_pending(ChargeStatus.PAID, Status.PAID)  # a settled period is never selected as pending
    with pytest.raises(ValueError, match="no rule"):
        decide_pending(None, Status.NEW)
