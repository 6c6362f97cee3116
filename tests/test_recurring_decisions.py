"""The recurring run's decisions: for a profile's latest unsettled period, and for a due profile as a
whole (the claim), pure tables tested without a database (their applier, ``billcore.recurring.run``,
is covered by tests/test_recurring.py on SQLite and PostgreSQL)."""
from __future__ import annotations

import itertools

import pytest

from billcore.recurring import (PENDING_TABLE, ChildKind, ClaimAction, Facts, PendingAction, decide_claim,
                                decide_pending)
from billcore.recurring.decisions import claim_rows, classify_child
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


# --- the claim: what a run does with a due profile ------------------------------------------------------

C = ClaimAction
K = ChildKind
ALL_FACTS = [Facts(*values) for values in itertools.product(
    (False, True), PendingAction, (False, True), ChildKind, (False, True), (False, True))]


def test_every_set_of_claim_facts_matches_exactly_one_row():
    """The table is complete and unambiguous: its order does not matter, and no situation is guessed."""
    for facts in ALL_FACTS:
        assert len(claim_rows(facts)) == 1, facts
        assert decide_claim(facts) is claim_rows(facts)[0]


def facts(**given):
    """Facts of a due profile with a new period to claim, none of it topped up or over the maximum."""
    values = dict(due=True, pending=A.NEW_PERIOD, period_done=False, child=K.NONE, topped_up=False, over_max=False)
    return Facts(**{**values, **given})


@pytest.mark.parametrize(("given", "action"), [
    ({"due": False}, C.SKIP),
    *[({"due": False, "pending": p}, C.SKIP) for p in PendingAction],
    ({"pending": A.WAIT}, C.WAIT),
    ({"pending": A.WAIT, "over_max": True, "topped_up": True}, C.WAIT),
    ({"pending": A.RECONCILE}, C.RECONCILE),
    ({"pending": A.RECONCILE, "child": K.HELD}, C.RECONCILE),  # reconcile holds it itself
    # a new period
    ({}, C.CHARGE_NEW_PERIOD),
    ({"period_done": True}, C.NEXT_MONTH),
    ({"period_done": True, "over_max": True}, C.NEXT_MONTH),
    ({"topped_up": True}, C.CHECK_LATER),
    ({"topped_up": True, "over_max": True}, C.CHECK_LATER),
    ({"over_max": True}, C.MONTHLY_MAX),
    # the same period again
    ({"pending": A.RETRY, "child": K.NONE}, C.CHARGE_AGAIN),
    ({"pending": A.RETRY, "child": K.REPLACEABLE}, C.CHARGE_AGAIN),
    ({"pending": A.FAIL_AND_RETRY, "child": K.NONE}, C.CHARGE_AGAIN),
    ({"pending": A.RETRY, "child": K.KEPT}, C.CHARGE_SAME_CHILD),
    # a kept child may have been charged: neither a top-up nor the maximum drops it for a second child
    ({"pending": A.RETRY, "child": K.KEPT, "topped_up": True, "over_max": True}, C.CHARGE_SAME_CHILD),
    ({"pending": A.RETRY, "child": K.HELD}, C.HOLD),
    ({"pending": A.RETRY, "child": K.HELD, "topped_up": True}, C.HOLD),  # never replaced, never abandoned
    ({"pending": A.RETRY, "child": K.REPLACEABLE, "topped_up": True}, C.ABANDON),
    ({"pending": A.RETRY, "child": K.NONE, "topped_up": True, "over_max": True}, C.ABANDON),
    ({"pending": A.RETRY, "child": K.REPLACEABLE, "over_max": True}, C.MONTHLY_MAX),
    ({"pending": A.FAIL_AND_RETRY, "child": K.NONE, "over_max": True}, C.MONTHLY_MAX),
    # a retry never asks whether the (new) period exists: it is the pending one
    ({"pending": A.RETRY, "child": K.NONE, "period_done": True}, C.CHARGE_AGAIN),
])
def test_claim_decision(given, action):
    assert decide_claim(facts(**given)) is action


class Watched:
    """Facts that fail the test when the table reads one it must not need (each costs the run a query)."""

    def __init__(self, forbidden: set[str], **given):
        self._facts, self._forbidden = facts(**given), forbidden

    def __getattr__(self, name):
        assert name not in self._forbidden, f"{name} was read"
        return getattr(self._facts, name)


@pytest.mark.parametrize(("forbidden", "given", "action"), [
    ({"pending", "period_done", "child", "topped_up", "over_max"}, {"due": False}, C.SKIP),
    ({"period_done", "child", "topped_up", "over_max"}, {"pending": A.WAIT}, C.WAIT),
    ({"period_done", "child", "topped_up", "over_max"}, {"pending": A.RECONCILE}, C.RECONCILE),
    ({"child", "topped_up", "over_max"}, {"period_done": True}, C.NEXT_MONTH),
    ({"child", "over_max"}, {"topped_up": True}, C.CHECK_LATER),
    ({"child"}, {}, C.CHARGE_NEW_PERIOD),
    ({"period_done", "topped_up", "over_max"}, {"pending": A.RETRY, "child": K.KEPT}, C.CHARGE_SAME_CHILD),
    ({"period_done", "topped_up", "over_max"}, {"pending": A.RETRY, "child": K.HELD}, C.HOLD),
    ({"period_done", "over_max"}, {"pending": A.RETRY, "child": K.REPLACEABLE, "topped_up": True}, C.ABANDON),
])
def test_claim_reads_only_the_facts_it_needs(forbidden, given, action):
    assert decide_claim(Watched(forbidden, **given)) is action


@pytest.mark.parametrize(("status", "held", "kind"), [
    (None, False, K.NONE),
    (Status.NEW, False, K.KEPT),
    (Status.CANCELLED, False, K.REPLACEABLE),
    (Status.CANCELLED, True, K.HELD),
    (Status.FRAUD, True, K.HELD),
])
def test_child_kind(status, held, kind):
    assert classify_child(None if status is None else status.value, held) is kind


def test_a_claim_outside_the_table_is_an_error_not_a_guess():
    with pytest.raises(ValueError, match="no rule"):
        decide_claim(facts(pending="something else"))
