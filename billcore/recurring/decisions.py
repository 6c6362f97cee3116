"""What ``recurring run`` does with a due profile, as pure decision tables (no database, no changes):
the facts go in, an action comes out, and the run's applier (:mod:`billcore.recurring.run`) carries it
out. Tested exhaustively in tests/test_recurring_decisions.py, like the payment service's allowed
transitions.

Two tables: :data:`PENDING_TABLE` decides from the profile's latest unsettled period and its child what
kind of claim this is (:class:`PendingAction`); :data:`CLAIM_TABLE` then decides from that and the
profile's other facts (:class:`ClaimFacts`) what to do (:class:`ClaimAction`).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Protocol

from ..models import Status
from .base import ACCEPTED, CLAIMED, FAILED


class PendingAction(enum.Enum):
    """What a run does with a profile's latest unsettled period (see :func:`decide_pending`)."""

    NEW_PERIOD = "new period"  # nothing unsettled: claim the next period
    WAIT = "wait"  # the gateway is working on the child: look again later (or book the outcome then)
    RECONCILE = "reconcile"  # the child was settled meanwhile: book its outcome on the period
    RETRY = "retry"  # charge the same period again (its child, if left ``new``, keeps its payment id)
    FAIL_AND_RETRY = "fail and retry"  # accepted without a child cannot happen: mark it failed, retry it


# (period state, child's payment status or None when the period has no child) -> action; ``ANY`` stands
# for every child status not listed for that period state. The first matching row decides.
ANY = "*"
PENDING_TABLE: tuple[tuple[str | None, str | None, PendingAction], ...] = (
    (None, None, PendingAction.NEW_PERIOD),
    (CLAIMED, Status.INPAY, PendingAction.WAIT),
    (CLAIMED, Status.NEW, PendingAction.RETRY),  # a child left ``new`` by an interrupted run
    (CLAIMED, None, PendingAction.RETRY),
    (CLAIMED, ANY, PendingAction.RECONCILE),
    (ACCEPTED, Status.INPAY, PendingAction.WAIT),
    (ACCEPTED, Status.NEW, PendingAction.WAIT),  # accepted: the gateway will tell
    (ACCEPTED, None, PendingAction.FAIL_AND_RETRY),
    (ACCEPTED, ANY, PendingAction.RECONCILE),
    (FAILED, ANY, PendingAction.RETRY),
    (FAILED, None, PendingAction.RETRY),
)


def decide_pending(state: str | None, child_status: str | None) -> PendingAction:
    """The action for a profile's latest unsettled period in ``state`` (None: there is none) whose child
    payment has ``child_status`` (None: no child yet). Pure: reads nothing, changes nothing."""
    for row_state, row_child, action in PENDING_TABLE:
        if row_state == state and (row_child == child_status or (row_child == ANY and child_status is not None)):
            return action
    raise ValueError(f"no rule for a {state!r} period with a {child_status!r} child")


class ChildKind(enum.Enum):
    """What the child of the period being retried allows (see :func:`classify_child`)."""

    NONE = "none"  # no child (yet): a new one is made
    KEPT = "kept"  # still ``new`` (the module failed or the run was interrupted): charged again, same id
    HELD = "held"  # flagged ``fraud``, or cancelled here while its outcome was unknown: never replaced
    REPLACEABLE = "replaceable"  # refused or cancelled by the gateway: a new child may be charged


def classify_child(status: str | None, held: bool) -> ChildKind:
    """The kind of a retried period's child of ``status`` (None: there is none); ``held`` says whether
    it must never be replaced (``periods.held_error`` found a reason), asked only of a settled child."""
    if status is None:
        return ChildKind.NONE
    if status == Status.NEW.value:
        return ChildKind.KEPT
    return ChildKind.HELD if held else ChildKind.REPLACEABLE


class ClaimAction(enum.Enum):
    """What a run does with a due profile (see :func:`decide_claim`)."""

    SKIP = "skip"  # no longer due, no longer active, or another host holds its lock: nothing
    WAIT = "wait"  # the gateway is working on the child: look again after the check interval
    RECONCILE = "reconcile"  # the child was settled meanwhile: book its outcome on the period
    NEXT_MONTH = "next month"  # fixed rule: this month's period exists already; due next month
    CHECK_LATER = "check later"  # threshold rule: the balance is enough; look again later
    HOLD = "hold"  # the retried period's child must never be replaced: suspend for an admin's check
    ABANDON = "abandon"  # threshold rule: topped up meanwhile, the failed top-up is no longer needed
    MONTHLY_MAX = "monthly max"  # a new child would exceed the monthly maximum: wait for next month
    CHARGE_NEW_PERIOD = "charge a new period"  # claim the next period, create its child, charge it
    CHARGE_AGAIN = "charge again"  # the same period with a new child (the old one was refused)
    CHARGE_SAME_CHILD = "charge the same child"  # the same period and child (same id: idempotent)


CHARGES = frozenset({ClaimAction.CHARGE_NEW_PERIOD, ClaimAction.CHARGE_AGAIN, ClaimAction.CHARGE_SAME_CHILD})


class ClaimFacts(Protocol):
    """What :func:`decide_claim` may look at. The run's applier computes each fact on first use (some
    cost a query), so the table reads a fact only where a row needs it; tests pass plain values."""

    due: bool  # the profile exists, is active and due now, and this run holds its lock
    pending: PendingAction  # decide_pending of its latest unsettled period
    period_done: bool  # fixed rule: the period to claim exists already (never for the threshold rule)
    child: ChildKind  # the retried period's child
    topped_up: bool  # threshold rule: the balance is at or above the threshold (never for the fixed rule)
    over_max: bool  # one more child would take this month's charges over the monthly maximum


@dataclass(frozen=True)
class Facts:
    """Plain :class:`ClaimFacts` (tests, and anything that has them all at hand)."""

    due: bool
    pending: PendingAction
    period_done: bool
    child: ChildKind
    topped_up: bool
    over_max: bool


RETRYING = frozenset({PendingAction.RETRY, PendingAction.FAIL_AND_RETRY})
NEW_CHILD = frozenset({ChildKind.NONE, ChildKind.REPLACEABLE})
CLAIM_COLUMNS = ("due", "pending", "period_done", "child", "topped_up", "over_max")
# One row per situation (no two rows match the same facts; tested): the columns of CLAIM_COLUMNS, each a
# value, a frozenset of values, or ANY (not looked at), then the action. Columns are compared left to
# right and a row stops at its first mismatch, so a fact is computed only when a row gets to it.
CLAIM_TABLE: tuple[tuple[Any, ...], ...] = (
    (False, ANY, ANY, ANY, ANY, ANY, ClaimAction.SKIP),
    (True, PendingAction.WAIT, ANY, ANY, ANY, ANY, ClaimAction.WAIT),
    (True, PendingAction.RECONCILE, ANY, ANY, ANY, ANY, ClaimAction.RECONCILE),
    (True, PendingAction.NEW_PERIOD, True, ANY, ANY, ANY, ClaimAction.NEXT_MONTH),
    (True, PendingAction.NEW_PERIOD, False, ANY, True, ANY, ClaimAction.CHECK_LATER),
    (True, PendingAction.NEW_PERIOD, False, ANY, False, True, ClaimAction.MONTHLY_MAX),
    (True, PendingAction.NEW_PERIOD, False, ANY, False, False, ClaimAction.CHARGE_NEW_PERIOD),
    # a child left ``new`` is charged again whatever else changed: it may have been charged already, so
    # neither a top-up by hand nor the monthly maximum may drop it (a second child could double-charge)
    (True, RETRYING, ANY, ChildKind.KEPT, ANY, ANY, ClaimAction.CHARGE_SAME_CHILD),
    (True, RETRYING, ANY, ChildKind.HELD, ANY, ANY, ClaimAction.HOLD),
    (True, RETRYING, ANY, NEW_CHILD, True, ANY, ClaimAction.ABANDON),
    (True, RETRYING, ANY, NEW_CHILD, False, True, ClaimAction.MONTHLY_MAX),
    (True, RETRYING, ANY, NEW_CHILD, False, False, ClaimAction.CHARGE_AGAIN),
)


def _row_matches(cells: list[Any], facts: ClaimFacts) -> bool:
    """True when ``facts`` match a row's cells, read left to right up to the first mismatch."""
    for column, cell in zip(CLAIM_COLUMNS, cells):
        if cell is ANY:
            continue
        value = getattr(facts, column)
        if not (value in cell if isinstance(cell, frozenset) else value == cell):
            return False
    return True


def claim_rows(facts: ClaimFacts) -> list[ClaimAction]:
    """The actions of every row of :data:`CLAIM_TABLE` that ``facts`` match (tests: exactly one)."""
    return [action for *cells, action in CLAIM_TABLE if _row_matches(cells, facts)]


def decide_claim(facts: ClaimFacts) -> ClaimAction:
    """The action for a due profile with ``facts``: the first matching row of :data:`CLAIM_TABLE`.
    Pure: reads the facts it needs, changes nothing."""
    for *cells, action in CLAIM_TABLE:
        if _row_matches(cells, facts):
            return action
    raise ValueError(f"no rule for {facts!r}")
