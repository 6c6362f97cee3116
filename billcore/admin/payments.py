"""The admin's payments: a filtered list with keyset paging, a payment's page and its actions.

The list is ordered newest first and paged by "the last id seen" (``?before=<id>``) instead of OFFSET,
so a deep page costs the same as the first one even with millions of payments; every filter has an
index that starts with its column and ends with ``id`` (see ``Payment.__table_args__``). Figures:
``docs/performance.md`` (``bench/admin_payments.py``).
"""
from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from flask import (Response, abort, current_app, flash, redirect, render_template, request, stream_with_context,
                   url_for)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import Select, func, select, tuple_
from wtforms import HiddenField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length

from ..auth import admin_required
from ..db import db
from ..models import Account, LedgerEntry, Payment, PaymentEvent, PaymentMethod, Refund, Status, User, utcnow
from ..templating import language, user_timezone
from ..payments import polling, refunds, service
from ..payments.messages import error_text
from ..paymodule import FEATURE_REFUND
from ..states import RefundStatus
from ..plugins import get_registry
from . import bp
from .. import filters as parse
from ..args import row_id

STATUSES = [s.value for s in Status]
MANUAL_PAY_FROM = (Status.NEW, Status.INPAY, Status.CANCELLED, Status.FRAUD)
CANCEL_FROM = (Status.NEW, Status.INPAY)


# status values of the filter that stand for several statuses
STATUS_GROUPS = {"received": (Status.PAID, Status.PENDING_RETURN, Status.RETURNED)}
FILTER_LABELS = {"status": _l("Status"), "paymethod_id": _l("Payment method"), "account_id": _l("Account"),
                 "date_from": _l("From"), "date_to": _l("To"), "paid_from": _l("Paid from"),
                 "waiting_hours": _l("Awaiting payment for more than (hours)"),
                 "amount_min": _l("Amount from"), "amount_max": _l("Amount to")}
MAX_TRAIL = 30  # "previous page" cursors kept in the links


@dataclass
class PaymentFilters:
    """The list's filters as typed values; ``errors`` names the ones that could not be read (the list then
    shows nothing rather than everything)."""

    status: str | None = None
    paymethod_id: int | None = None
    account_id: int | None = None
    account_text: str | None = None  # part of an account's e-mail or name
    date_from: date | None = None
    date_to: date | None = None
    paid_from: date | None = None
    waiting_hours: int | None = None
    amount_min: Decimal | None = None
    amount_max: Decimal | None = None
    errors: list[str] = field(default_factory=list)

    @classmethod
    def from_args(cls, args) -> PaymentFilters:
        """Read the filters from a query string (:mod:`billcore.filters`); values that cannot be used are
        named in ``errors`` (the page then shows nothing and answers 400)."""
        f = cls()
        status = (args.get("status") or "").strip()
        if status:
            if status in STATUSES or status in STATUS_GROUPS:
                f.status = status
            else:
                f.errors.append("status")
        try:
            f.paymethod_id = parse.ident(args.get("paymethod_id"))
        except parse.BadFilter:
            f.errors.append("paymethod_id")
        text = (args.get("account_id") or "").strip()
        if text:
            # "#12" or "12": the account's number; anything else: part of an e-mail or of the name
            try:
                if text.lstrip("#").isascii() and text.lstrip("#").isdigit():
                    f.account_id = parse.ident(text)
                else:
                    f.account_text = parse.text(text, 254).lower()
            except parse.BadFilter:
                f.errors.append("account_id")
        for name in ("date_from", "date_to", "paid_from"):
            try:
                setattr(f, name, parse.day(args.get(name)))
            except parse.BadFilter:
                f.errors.append(name)
        text = (args.get("waiting_hours") or "").strip()
        if text:
            if text.isascii() and text.isdigit() and 0 < int(text) <= 24 * 366:
                f.waiting_hours = int(text)
            else:
                f.errors.append("waiting_hours")
        for name in ("amount_min", "amount_max"):
            try:
                setattr(f, name, parse.amount((args.get(name) or "").replace(" ", "")))
            except parse.BadFilter:
                f.errors.append(name)
        return f

    def as_args(self) -> dict[str, str]:
        """The filters as query-string values (for the paging links and the export)."""
        values = {"status": self.status, "paymethod_id": self.paymethod_id,
                  "account_id": self.account_id if self.account_id is not None else self.account_text,
                  "date_from": self.date_from, "date_to": self.date_to, "paid_from": self.paid_from,
                  "waiting_hours": self.waiting_hours, "amount_min": self.amount_min, "amount_max": self.amount_max}
        return {k: str(v) for k, v in values.items() if v is not None}

    def error_labels(self) -> list[str]:
        """The names of the refused filters, as the form labels them."""
        return [str(FILTER_LABELS.get(name, name)) for name in self.errors]


def _day_start(day: date) -> datetime:
    """The first instant of ``day`` in the reader's time zone (the configured default outside a request)."""
    return datetime.combine(day, time.min, tzinfo=user_timezone())


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def filter_conditions(filters: PaymentFilters) -> list:
    """The WHERE conditions of ``filters`` except the created-at range (see :func:`payments_query`)."""
    conditions = []
    if filters.status in STATUS_GROUPS:
        conditions.append(Payment.status.in_(STATUS_GROUPS[filters.status]))
    elif filters.status:
        conditions.append(Payment.status == filters.status)
    if filters.paymethod_id is not None:
        conditions.append(Payment.paymethod_id == filters.paymethod_id)
    if filters.account_id is not None:
        conditions.append(Payment.account_id == filters.account_id)
    if filters.account_text:
        like = _like(filters.account_text)
        by_user = select(User.account_id).where(func.lower(User.email).like(like, escape="\\"))
        by_name = select(Account.id).where(func.lower(Account.name).like(like, escape="\\"))
        conditions.append(Payment.account_id.in_(by_user.union(by_name)))
    if filters.paid_from is not None:
        conditions.append(Payment.paid_at >= _day_start(filters.paid_from))
    if filters.waiting_hours is not None:
        conditions.append(Payment.updated_at < utcnow() - timedelta(hours=filters.waiting_hours))
    if filters.amount_min is not None:
        conditions.append(Payment.amount >= filters.amount_min)
    if filters.amount_max is not None:
        conditions.append(Payment.amount <= filters.amount_max)
    return conditions


def _date_range(filters: PaymentFilters) -> tuple[datetime | None, datetime | None]:
    date_from = _day_start(filters.date_from) if filters.date_from is not None else None
    # inclusive: the whole "to" day
    date_to = _day_start(filters.date_to + timedelta(days=1)) if filters.date_to is not None else None
    return date_from, date_to


def payments_query(filters: PaymentFilters, before: int | None = None, limit: int = 50) -> Select:
    """The admin list's query: payments matching ``filters`` with id < ``before``, newest first.

    Fetches ``limit`` rows (ask for one more than shown to know whether there is a next page). Shared
    with ``bench/admin_payments.py`` so the benchmark times exactly what the page runs.
    """
    query = (select(Payment, PaymentMethod.name, Account.name)
             .join(PaymentMethod, PaymentMethod.id == Payment.paymethod_id)
             .join(Account, Account.id == Payment.account_id))
    query = query.where(*filter_conditions(filters))
    date_from, date_to = _date_range(filters)
    if date_from is not None:
        query = query.where(Payment.created_at >= date_from)
    if date_from is not None or date_to is not None:
        # A date range is served in (created_at, id) order from its index: ordered by id alone, the
        # database either walks the primary key past every newer payment or sorts the whole range
        # (measured: 200-300 ms for one month of a million payments). Ids grow with time, so the order
        # is the same "newest first"; the cursor is still the last id shown, its time looked up by key.
        if before is not None:
            anchor = select(Payment.created_at).where(Payment.id == before)
            if date_to is not None:  # a cursor outside the range gives an empty page, never wrong rows
                anchor = anchor.where(Payment.created_at < date_to)
            anchor = anchor.scalar_subquery()
            # "created_at <= anchor" (implied by the tuple, and itself < date_to) is the single upper
            # bound, so SQLite's index scan starts at the cursor instead of at the end of the range
            query = query.where(Payment.created_at <= anchor,
                                tuple_(Payment.created_at, Payment.id) < tuple_(anchor, before))
        elif date_to is not None:
            query = query.where(Payment.created_at < date_to)
        return query.order_by(Payment.created_at.desc(), Payment.id.desc()).limit(limit)
    if before is not None:
        query = query.where(Payment.id < before)
    return query.order_by(Payment.id.desc()).limit(limit)


def totals_query(filters: PaymentFilters) -> Select:
    """Per currency: the number of payments matching ``filters`` and the sums of their amounts,
    commissions and totals (the whole filtered set, not one page)."""
    query = (select(Payment.currency, func.count(), func.sum(Payment.amount), func.sum(Payment.commission),
                    func.sum(Payment.total))
             .where(*filter_conditions(filters)))
    date_from, date_to = _date_range(filters)
    if date_from is not None:
        query = query.where(Payment.created_at >= date_from)
    if date_to is not None:
        query = query.where(Payment.created_at < date_to)
    return query.group_by(Payment.currency).order_by(Payment.currency)


def list_page(filters: PaymentFilters, before: int | None, size: int) -> tuple[list[Any], int | None]:
    """One page of the list and the ``before`` value of the next page (None on the last page)."""
    rows = db.session.execute(payments_query(filters, before, size + 1)).all()
    next_before = rows[size - 1][0].id if len(rows) > size else None
    return rows[:size], next_before


def _trail(text: str | None) -> list[int]:
    """The cursors of the pages before this one (0: the first page), from the ``trail`` argument."""
    out = []
    for part in (text or "").split(",")[-MAX_TRAIL:]:
        if part == "0":
            out.append(0)
        else:
            try:
                out.append(row_id(part))
            except ValueError:
                return []
    return out


@bp.route("/payments")
@admin_required
def payments():
    """Every payment, filtered by status, method, account (number, e-mail or name), dates and amount;
    keyset paging with first / previous / next; a totals row for the whole filtered set."""
    filters = PaymentFilters.from_args(request.args)
    before = request.args.get("before", type=row_id)
    trail = _trail(request.args.get("trail")) if before else []
    size = int(current_app.config.get("ADMIN_PAGE_SIZE") or 50)
    methods = db.session.execute(select(PaymentMethod).order_by(PaymentMethod.sort_order, PaymentMethod.id)).scalars().all()
    if filters.errors:  # a refused filter: show nothing rather than everything
        rows, next_before, totals = [], None, []
    else:
        rows, next_before = list_page(filters, before, size)
        totals = db.session.execute(totals_query(filters)).all()
    filter_args = filters.as_args()
    pages = {"next": url_for(".payments", before=next_before, trail=",".join(map(str, trail + [before or 0])),
                             **filter_args) if next_before else None,
             "first": url_for(".payments", **filter_args) if before else None,
             "previous": None}
    if before:
        previous = trail[-1] if trail else 0
        pages["previous"] = (url_for(".payments", before=previous, trail=",".join(map(str, trail[:-1])) or None,
                                     **filter_args) if previous else url_for(".payments", **filter_args))
    return render_template("admin/payments/list.html", rows=rows, filters=filters, before=before,
                           next_before=next_before, methods=methods, statuses=STATUSES, pages=pages,
                           filter_args=filter_args, totals=totals, raw=request.args,
                           language=language()), 400 if filters.errors else 200


CSV_COLUMNS = ("id", "created_at", "paid_at", "account_id", "account", "paymethod", "status", "amount",
               "commission", "total", "currency", "refunded", "external_id")


def _csv_cell(value: Any) -> str:
    """A value for a spreadsheet: text that a spreadsheet would run as a formula is quoted with '."""
    text = "" if value is None else str(value)
    if isinstance(value, str) and text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        text = "'" + text
    return text


@bp.route("/payments.csv")
@admin_required
def payments_csv():
    """The filtered list as CSV, streamed: rows are read from the database in batches and written as they
    come, so an export of millions of payments never holds them all in memory."""
    filters = PaymentFilters.from_args(request.args)
    if filters.errors:
        abort(400, _("Some filters were not understood: %(names)s.", names=", ".join(filters.error_labels())))
    query = (select(Payment.id, Payment.created_at, Payment.paid_at, Payment.account_id, Account.name,
                    PaymentMethod.name, Payment.status, Payment.amount, Payment.commission, Payment.total,
                    Payment.currency, Payment.refunded_amount, Payment.external_id)
             .join(PaymentMethod, PaymentMethod.id == Payment.paymethod_id)
             .join(Account, Account.id == Payment.account_id)
             .where(*filter_conditions(filters)))
    date_from, date_to = _date_range(filters)
    if date_from is not None:
        query = query.where(Payment.created_at >= date_from)
    if date_to is not None:
        query = query.where(Payment.created_at < date_to)
    query = query.order_by(Payment.id.desc()).execution_options(yield_per=CSV_BATCH)

    def generate():
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        result = db.session.execute(query)
        for batch in result.partitions():
            for row in batch:
                writer.writerow([_csv_cell(v.isoformat() if isinstance(v, datetime) else v) for v in row])
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
        yield buffer.getvalue()

    stamp = utcnow().strftime("%Y%m%d-%H%M")
    return Response(stream_with_context(generate()), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="payments-{stamp}.csv"',
                             "Cache-Control": "no-store"})


CSV_BATCH = 1000  # rows read from the database at a time by the export


class RefundForm(FlaskForm):
    """Refund all or part of a paid payment."""

    amount = StringField(_l("Amount to refund"), validators=[DataRequired(), Length(max=32)])
    reason = StringField(_l("Reason"), validators=[Length(max=500)])
    # set by the confirmation page: the admin saw the amount, the account and the balance after
    confirmed = HiddenField()


class ReasonForm(FlaskForm):
    """An admin action that must say why (mark paid, cancel)."""

    reason = TextAreaField(_l("Reason"), validators=[DataRequired(_l("Say why: the reason is kept in the payment's history.")),
                                                     Length(max=500)])


class ActionForm(FlaskForm):
    """A POST button with a CSRF token."""


# the two buttons of a stuck refund's form (name "result")
SETTLE_RESULTS = (RefundStatus.FINISHED, RefundStatus.FAILED)


def _payment_or_404(payment_id: int) -> Payment:
    db.session.expire_all()
    payment = db.session.get(Payment, payment_id)
    if payment is None:
        abort(404)
    return payment


def _actor() -> str:
    return current_user.email


@bp.route("/payments/<int:payment_id>")
@admin_required
def payment(payment_id: int):
    """A payment: amounts, status, every event with its raw data (less secrets), refunds, ledger, actions."""
    item = _payment_or_404(payment_id)
    method = db.session.get(PaymentMethod, item.paymethod_id)
    events = db.session.execute(select(PaymentEvent).where(PaymentEvent.payment_id == item.id)
                                .order_by(PaymentEvent.id)).scalars().all()
    refund_rows = db.session.execute(select(Refund).where(Refund.payment_id == item.id).order_by(Refund.id)).scalars().all()
    ledger = db.session.execute(select(LedgerEntry).where(LedgerEntry.payment_id == item.id)
                                .order_by(LedgerEntry.id)).scalars().all()
    refund_form = RefundForm(formdata=None, amount=str(item.refundable))
    return render_template(
        "admin/payments/detail.html", payment=item, method=method, events=events, refunds=refund_rows,
        ledger=ledger, module_info=get_registry().info(method.module) if method else None,
        can_check=polling.can_check(method) and item.status in polling.POLLABLE,
        can_refund=refunds.can_refund(method) and item.status == Status.PAID and item.refundable > 0,
        can_follow=method is not None and get_registry().has_feature(method.module, FEATURE_REFUND),
        can_mark_paid=item.status in MANUAL_PAY_FROM, can_cancel=item.status in CANCEL_FROM,
        stuck={r.id for r in refund_rows if refunds.is_stuck(r)},
        settle_later={r.id for r in refund_rows if refunds.settle_waits(r)},
        settle_grace_minutes=f"{refunds.settle_grace().total_seconds() / 60:g}",
        overdue={r.id for r in refund_rows if refunds.is_overdue(r)},
        refund_form=refund_form, reason_form=ReasonForm(formdata=None), action_form=ActionForm())


@bp.route("/payments/<int:payment_id>/check", methods=["POST"])
@admin_required
def payment_check(payment_id: int):
    """Ask the gateway about the payment now and apply its answer."""
    item = _payment_or_404(payment_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        outcome = polling.check_payment(item.id, "admin", actor=_actor())
    except polling.PollError as exc:
        flash(_("The status could not be checked: %(error)s", error=error_text(exc)), "error")
    except service.PaymentError as exc:
        flash(_("The gateway's answer could not be applied: %(error)s", error=error_text(exc)), "error")
    else:
        db.session.expire_all()
        status = db.session.get(Payment, item.id).status
        if outcome is not None and outcome.result == Status.FRAUD:
            flash(_("The gateway's data did not match the payment; it was marked as fraud: %(info)s",
                    info=outcome.message), "warning")
        elif outcome is not None and outcome.changed:
            flash(_("Status updated: %(status)s.", status=_status(status)), "success")
        else:
            flash(_("No change: the payment is %(status)s.", status=_status(status)), "info")
    return redirect(url_for(".payment", payment_id=item.id))


def _status(status: str) -> str:
    from ..templating import status_label

    return status_label(status)


@bp.route("/payments/<int:payment_id>/refund", methods=["POST"])
@admin_required
def payment_refund(payment_id: int):
    """Refund all or part of the payment through the gateway."""
    item = _payment_or_404(payment_id)
    form = RefundForm()
    if not form.validate_on_submit():
        flash(_("Enter the amount to refund."), "error")
        return redirect(url_for(".payment", payment_id=item.id))
    if form.confirmed.data != "1":
        # first the confirmation: what is refunded, from which account, and the balance afterwards
        text = form.amount.data.strip().replace(",", ".").replace(" ", "").replace("\u00a0", "")
        try:
            value = Decimal(text)
            if not value.is_finite() or value <= 0 or value > item.refundable:
                raise InvalidOperation
        except InvalidOperation:
            flash(_("The refund was refused: %(error)s",
                    error=_("Enter an amount from 0.01 to %(amount)s.", amount=item.refundable)), "error")
            return redirect(url_for(".payment", payment_id=item.id))
        form.confirmed.data = "1"
        return render_template("admin/payments/refund_confirm.html", payment=item, form=form, amount=value,
                               balance_after=item.account.balance - value)
    try:
        result = refunds.refund_payment(item.id, form.amount.data.strip().replace(",", "."), _actor(),
                                        form.reason.data or None)
    except service.PaymentError as exc:
        flash(_("The refund was refused: %(error)s", error=error_text(exc)), "error")
        return redirect(url_for(".payment", payment_id=item.id))
    if result.state == "pending" and not db.session.get(Refund, result.refund_id).external_id:
        flash(_("The gateway did not confirm the refund; it stays requested and the amount stays held. %(info)s",
                info=result.info), "warning")
        return redirect(url_for(".payment", payment_id=item.id))
    messages = {
        "finished": (_("The refund was made."), "success"),
        "failed": (_("The gateway refused the refund; the amount is back on the balance. %(info)s", info=result.info), "error"),
        "pending": (_("The gateway accepted the refund and is processing it."), "info"),
        "error": (_("The gateway could not be reached; the refund stays requested. Check it later. %(info)s",
                    info=result.info), "warning"),
    }
    flash(*messages[result.state])
    return redirect(url_for(".payment", payment_id=item.id))


@bp.route("/payments/<int:payment_id>/refunds/<int:refund_id>/follow", methods=["POST"])
@admin_required
def refund_follow(payment_id: int, refund_id: int):
    """Ask the gateway about a requested refund and book its answer."""
    item = _payment_or_404(payment_id)
    refund = db.session.get(Refund, refund_id)
    if refund is None or refund.payment_id != item.id:
        abort(404)
    if not ActionForm().validate_on_submit():
        abort(400)
    result = refunds.follow_refund(refund.id, source="admin", actor=_actor())
    labels = {"finished": _("finished"), "failed": _("failed"), "pending": _("still pending"), "error": _("not checked"),
              refunds.ATTENTION: _("overdue, needs an admin: check it at the gateway, then mark it done or failed")}
    flash(_("Refund %(id)s: %(state)s. %(info)s", id=refund.id, state=labels.get(result.state, result.state),
            info=result.info), "info")
    return redirect(url_for(".payment", payment_id=item.id))


def _reason_action(item: Payment, form: ReasonForm, act: Callable[[str], service.Outcome], *,
                   refused: Callable[[str], str], changed: str, already: str):
    """The frame of an admin action that must say why: check the POSTed reason form, run ``act(reason)``,
    flash what came of it (``refused(error)`` for a refusal) and go back to the payment's page."""
    if not form.validate_on_submit():
        flash(_("Say why: the reason is kept in the payment's history."), "error")
    else:
        try:
            outcome = act(form.reason.data)
        except service.PaymentError as exc:
            flash(refused(error_text(exc)), "error")
        else:
            flash(changed if outcome.changed else already, "success" if outcome.changed else "info")
    return redirect(url_for(".payment", payment_id=item.id))


@bp.route("/payments/<int:payment_id>/mark-paid", methods=["POST"])
@admin_required
def payment_mark_paid(payment_id: int):
    """Credit the payment by hand (money received outside the gateway's notification), with a reason."""
    item = _payment_or_404(payment_id)
    return _reason_action(
        item, ReasonForm(),
        lambda reason: service.set_paid(item.id, amount=item.total, currency=item.currency, source="admin",
                                        kind="manual", manual=True, actor=_actor(), info=reason,
                                        data={"reason": reason}),
        refused=lambda error: _("The payment could not be marked paid: %(error)s", error=error),
        changed=_("The payment was marked paid."), already=_("The payment was already paid."))


@bp.route("/payments/<int:payment_id>/cancel", methods=["POST"])
@admin_required
def payment_cancel(payment_id: int):
    """Cancel an unpaid payment by hand, with a reason."""
    item = _payment_or_404(payment_id)
    return _reason_action(
        item, ReasonForm(),
        lambda reason: service.set_cancelled(item.id, source="admin", kind="manual", reason=reason, actor=_actor(),
                                             data={"reason": reason}),
        refused=lambda error: _("The payment could not be cancelled: %(error)s", error=error),
        changed=_("The payment was cancelled."), already=_("The payment was already cancelled."))


@bp.route("/payments/<int:payment_id>/refunds/<int:refund_id>/settle", methods=["POST"])
@admin_required
def refund_settle(payment_id: int, refund_id: int):
    """Settle a stuck refund by hand, with a reason: done (the gateway returned the money) or failed (the
    amount goes back to the balance). Only after checking the gateway's own records."""
    item = _payment_or_404(payment_id)
    refund = db.session.get(Refund, refund_id)
    if refund is None or refund.payment_id != item.id:
        abort(404)
    result = request.form.get("result")
    if result not in SETTLE_RESULTS:
        abort(400)
    done = result == RefundStatus.FINISHED
    return _reason_action(
        item, ReasonForm(),
        lambda reason: refunds.settle_by_hand(refund.id, done=done, reason=reason, actor=_actor()),
        refused=lambda error: _("The refund could not be settled: %(error)s", error=error),
        changed=(_("Refund %(id)s was marked done.", id=refund.id) if done else
                 _("Refund %(id)s was marked failed; the amount is back on the balance.", id=refund.id)),
        already=_("Refund %(id)s was already settled.", id=refund.id))
