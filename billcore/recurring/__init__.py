"""Recurring payments (auto top-ups): opt-in, profiles, due dates and ``recurring run``.

A customer marks a payment as the *parent* of future charges while paying (:func:`mark_parent`: the
module sends it as such, e.g. Robokassa's ``Recurring=true``); once it is paid, a profile is created from
it (:func:`create_profile`) with a rule: ``fixed`` (an amount every month on the parent's day) or
``threshold`` (an amount whenever the balance falls below a threshold), and a monthly maximum.

``flask --app billcore recurring run`` (cron) calls :func:`run_due`. For each due profile it *claims* a
period in a short transaction that locks the profile (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's
write lock) and inserts the ``(profile, period)`` row whose unique constraint makes a second charge of the
same period impossible, even from two hosts, and creates the child payment through the payment service
in that same transaction. Then the module is asked to charge it, with nothing held; its answer is booked
through the service together with the period's outcome, in one transaction (:mod:`.run`). A failed
charge is retried with backoff; after ``RECURRING_MAX_FAILURES`` failures the profile is suspended and the
customer sees a notice on the dashboard (:func:`notices_for_account`). A child whose outcome is unknown
(cancelled here while being charged) or that the service flagged ``fraud`` (another amount or currency
reported) is never replaced: the profile is suspended at once for an admin's check.

The package's parts: :mod:`.base` (rules, states, limits), :mod:`.schedule` (dates), :mod:`.errors`,
:mod:`.profiles` (opt-in and a profile's life), :mod:`.periods` (booking a period's outcome; children
being charged), :mod:`.decisions` (what a run does, as pure tables), :mod:`.run` (the run itself) and
:mod:`.notices`. Their public names are importable from ``billcore.recurring`` as before.
"""
from __future__ import annotations

from ..models import utcnow  # the clock the run uses (``recurring.utcnow()`` in tests)
from .base import (ABANDONED, ACCEPTED, ACTIVE, CANCELLED, CLAIMED, COUNTED, DEFAULT_CHECK_MINUTES,
                   DEFAULT_MAX_FAILURES, DEFAULT_RETRY_HOURS, FAILED, FIXED, FLAGGED, LEASE, LIVE,
                   LOCAL_CANCEL_KINDS, OPEN, PAID, PAID_CHILD, PARENT_FLAG, RULES, SOURCE, SUSPENDED, THRESHOLD,
                   UNKNOWN, UNSETTLED, charge_total)
from .decisions import (ANY, CLAIM_TABLE, PENDING_TABLE, ChildKind, ClaimAction, ClaimFacts, Facts, PendingAction,
                        decide_claim, decide_pending)
from .errors import TEXT, Err, RecurringError, error_text, profile_error, untranslated
from .notices import notices_for_account
from .periods import book_failed as _failed
from .periods import held_child_clause, is_held_child
from .profiles import (_offer_refusal, can_mark_parent, cancel_profile, create_profile, mark_parent, method_refusal,
                       offer_refusal, resume_profile, suspend_profile)
from .run import NO_ANSWER, Charge, RunResult, Ticket, _claim, _link, charge_ticket, due_profile_ids, run_due
from .schedule import (charge_date, fixed_period, max_failures, month_start, next_fixed_due, next_month_start,
                       retry_delay)

__all__ = [
    "ABANDONED", "ACCEPTED", "ACTIVE", "ANY", "CANCELLED", "CLAIMED", "CLAIM_TABLE", "COUNTED",
    "DEFAULT_CHECK_MINUTES", "DEFAULT_MAX_FAILURES", "DEFAULT_RETRY_HOURS", "FAILED", "FIXED", "FLAGGED", "LEASE",
    "LIVE", "LOCAL_CANCEL_KINDS", "NO_ANSWER", "OPEN", "PAID", "PAID_CHILD", "PARENT_FLAG", "PENDING_TABLE", "RULES",
    "SOURCE", "SUSPENDED", "TEXT", "THRESHOLD", "UNKNOWN", "UNSETTLED",
    "Charge", "ChildKind", "ClaimAction", "ClaimFacts", "Err", "Facts", "PendingAction", "RecurringError", "RunResult",
    "Ticket",
    "_claim", "_failed", "_link", "_offer_refusal",
    "can_mark_parent", "cancel_profile", "charge_date", "charge_ticket", "charge_total", "create_profile",
    "decide_claim", "decide_pending", "due_profile_ids", "error_text", "fixed_period", "held_child_clause",
    "is_held_child", "mark_parent", "max_failures", "method_refusal", "month_start", "next_fixed_due",
    "next_month_start", "notices_for_account", "offer_refusal", "profile_error", "resume_profile",
    "retry_delay", "run_due", "suspend_profile", "untranslated", "utcnow",
]
