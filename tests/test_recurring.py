"""Recurring payments: opt-in, due dates, monthly maximum, retries and suspension, cancellation,
exactly one charge per period under concurrent runs, the pages, the CLI, and pmtemplate end to end."""
from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from urllib.parse import parse_qsl, urlsplit

import pytest
from flask_babel import force_locale
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from billcore import recurring
from billcore.recurring import run as recurring_run
from billcore.accounts import create_admin, create_client
from billcore.cli.payments import cancel_expired_payments
from billcore.db import db
from billcore.models import Account, Payment, PaymentEvent, RecurringCharge, RecurringProfile
from billcore.payments import polling, service
from tests import fake_recurring_module as fake
from billcore.testing.fixtures import run_together
from tests.conftest import ADMIN, CLIENT, OTHER_CLIENT, add_paymethod, login

UTC = timezone.utc
T0 = datetime(2026, 1, 31, 10, 0, tzinfo=UTC)


@pytest.fixture
def app_config():
    """The fake recurring module (``tests.fake_recurring_module``) beside the real ones."""
    fake.CHARGES.clear()
    return {"EXTRA_MODULES": {fake.KEY: "tests.fake_recurring_module"}, "FAKEREC_MODE": "paid"}


def balance(account_id: int) -> Decimal:
    db.session.commit()  # a fresh snapshot: other threads and hosts committed meanwhile
    return db.session.get(Account, account_id).balance


def profile_of(profile_id: int) -> RecurringProfile:
    db.session.commit()  # a fresh snapshot: other threads and hosts committed meanwhile
    return db.session.get(RecurringProfile, profile_id)


def paid_parent(user, *, amount="10.00", recurring_on=True, flag=True, module=fake.KEY, **method_fields):
    """A payment method with recurring payments on and a paid parent payment marked as such."""
    method = add_paymethod(module, {}, recurring=recurring_on, **method_fields)
    parent = service.create_payment(user.account_id, method.id, Decimal(amount))
    if flag:
        recurring.mark_parent(parent.id)
    service.set_paid(parent.id, amount=parent.total, currency="RUB", source="test")
    db.session.commit()  # a fresh snapshot: other threads and hosts committed meanwhile
    return method, db.session.get(Payment, parent.id)


def children(profile_id: int) -> list[Payment]:
    db.session.commit()  # a fresh snapshot: other threads and hosts committed meanwhile
    ids = [pid for pid, in db.session.execute(select(Payment.id).where(Payment.description.like("Automatic payment%"))
                                             .order_by(Payment.id))]
    return [db.session.get(Payment, i) for i in ids
            if (db.session.get(Payment, i).gateway_data or {}).get("recurring_profile_id") == profile_id]


# --- dates -------------------------------------------------------------------------------------------

def test_due_date_computation(app):
    assert recurring.charge_date(31, 2026, 2) == datetime(2026, 2, 28, tzinfo=UTC)
    assert recurring.charge_date(31, 2028, 2) == datetime(2028, 2, 29, tzinfo=UTC)
    assert recurring.charge_date(31, 2026, 11) == datetime(2026, 11, 30, tzinfo=UTC)
    assert recurring.next_fixed_due(31, datetime(2026, 1, 31, 23, 0, tzinfo=UTC)) == datetime(2026, 2, 28, tzinfo=UTC)
    assert recurring.next_fixed_due(15, datetime(2026, 12, 20, tzinfo=UTC)) == datetime(2027, 1, 15, tzinfo=UTC)
    assert recurring.fixed_period(datetime(2026, 12, 1, tzinfo=UTC)) == "2026-12"
    assert recurring.month_start(datetime(2026, 3, 17, 5, tzinfo=UTC)) == datetime(2026, 3, 1, tzinfo=UTC)
    assert recurring.next_month_start(datetime(2026, 12, 17, tzinfo=UTC)) == datetime(2027, 1, 1, tzinfo=UTC)
    assert [recurring.retry_delay(n) for n in (1, 2, 3, 4)] == [timedelta(hours=1), timedelta(hours=6),
                                                               timedelta(hours=24), timedelta(hours=24)]


# --- opt-in ------------------------------------------------------------------------------------------

def test_opt_in_rules(app, client_user, other_client_user):
    # method without recurring payments: neither the mark nor the profile
    _, off = paid_parent(client_user, recurring_on=False, flag=False)
    fresh = service.create_payment(client_user.account_id, off.paymethod_id, Decimal("5.00"))
    with pytest.raises(recurring.RecurringError, match="does not offer"):
        recurring.mark_parent(fresh.id)
    with pytest.raises(recurring.RecurringError):
        recurring.create_profile(off.id, account_id=client_user.account_id, rule="fixed", amount="50",
                                 monthly_max="100")
    # a module without the feature (pmcoretest is no loaded module)
    method = add_paymethod("pmcoretest", {}, recurring=True) if False else None  # noqa: F841 (see below)
    from tests.factories import method as core_method
    core = core_method(recurring=True)
    unsupported = service.create_payment(client_user.account_id, core.id, Decimal("5.00"))
    with pytest.raises(recurring.RecurringError, match="does not support"):
        recurring.mark_parent(unsupported.id)
    # a paid payment that was not sent as a parent
    _, unflagged = paid_parent(client_user, flag=False)
    with pytest.raises(recurring.RecurringError, match="not made as the first"):
        recurring.create_profile(unflagged.id, account_id=client_user.account_id, rule="fixed", amount="50",
                                 monthly_max="100")
    # a paid payment cannot be marked any more; an unpaid marked one cannot start a profile yet
    with pytest.raises(recurring.RecurringError, match="unpaid"):
        recurring.mark_parent(unflagged.id)
    method, parent = paid_parent(client_user)
    unpaid = service.create_payment(client_user.account_id, method.id, Decimal("5.00"))
    recurring.mark_parent(unpaid.id)
    with pytest.raises(recurring.RecurringError, match="Only a paid"):
        recurring.create_profile(unpaid.id, account_id=client_user.account_id, rule="fixed", amount="50",
                                 monthly_max="100")
    # someone else's payment, bad amounts
    kw = dict(rule="fixed", amount="50", monthly_max="100")
    with pytest.raises(recurring.RecurringError, match="No such"):
        recurring.create_profile(parent.id, account_id=other_client_user.account_id, **kw)
    with pytest.raises(recurring.RecurringError, match="at least the amount"):
        recurring.create_profile(parent.id, account_id=client_user.account_id, rule="fixed", amount="50",
                                 monthly_max="40")
    with pytest.raises(recurring.RecurringError, match="threshold"):
        recurring.create_profile(parent.id, account_id=client_user.account_id, rule="threshold", amount="50",
                                 monthly_max="100")
    with pytest.raises(recurring.RecurringError):
        recurring.create_profile(parent.id, account_id=client_user.account_id, rule="fixed", amount="0.001",
                                 monthly_max="100")
    with pytest.raises(recurring.RecurringError, match="Choose"):
        recurring.create_profile(parent.id, account_id=client_user.account_id, rule="weekly", amount="5",
                                 monthly_max="100")
    # the good one; a second profile on the same parent is refused
    p = recurring.create_profile(parent.id, account_id=client_user.account_id, now=T0, **kw)
    assert (p.status, p.rule, p.amount, p.monthly_max, p.charge_day) == ("active", "fixed", Decimal("50.00"),
                                                                          Decimal("100.00"), 31)
    assert p.next_charge_at == datetime(2026, 2, 28, tzinfo=UTC)
    with pytest.raises(recurring.RecurringError, match="already"):
        recurring.create_profile(parent.id, account_id=client_user.account_id, **kw)


def test_concurrent_opt_ins_create_one_live_profile(app, client_user, monkeypatch):
    """Two requests set up automatic payments with the same parent at once: one profile, one refusal."""
    _, parent = paid_parent(client_user)
    real_due = recurring.next_fixed_due

    def slow_due(day, after):  # computed between the check for a live profile and the insert
        time.sleep(0.3)
        return real_due(day, after)

    monkeypatch.setattr(recurring.profiles, "next_fixed_due", slow_due)

    def opt_in():
        return recurring.create_profile(parent.id, account_id=client_user.account_id, rule="fixed", amount="50",
                                        monthly_max="100", now=T0).id

    outcomes = run_together(app, [opt_in, opt_in])
    made = [o for o in outcomes if isinstance(o, int)]
    refused = [str(o) for o in outcomes if isinstance(o, recurring.RecurringError)]
    assert len(made) == 1 and refused == ["Automatic payments are already set up with this payment."]
    db.session.commit()  # a fresh snapshot
    live = db.session.execute(select(RecurringProfile.id).where(
        RecurringProfile.parent_payment_id == parent.id, RecurringProfile.status.in_(("active", "suspended")))).all()
    assert [row[0] for row in live] == made


def test_live_profile_is_unique_per_parent_in_the_database(app, client_user, monkeypatch):
    """The partial unique index refuses a second live profile; create_profile reports it as the check does."""
    _, parent = paid_parent(client_user)
    first = recurring.create_profile(parent.id, account_id=client_user.account_id, rule="fixed", amount="50",
                                     monthly_max="100", now=T0)
    monkeypatch.setattr(recurring.profiles, "offer_refusal", lambda payment: None)
    monkeypatch.setattr(recurring.profiles, "_offer_refusal", lambda session, payment: None)  # as if the check raced
    with pytest.raises(recurring.RecurringError, match="already set up"):
        recurring.create_profile(parent.id, account_id=client_user.account_id, rule="fixed", amount="50",
                                 monthly_max="100", now=T0)
    recurring.cancel_profile(first.id)
    again = recurring.create_profile(parent.id, account_id=client_user.account_id, rule="fixed", amount="50",
                                     monthly_max="100", now=T0)  # a cancelled profile does not count
    assert again.status == "active" and again.id != first.id


def test_method_limits_apply_to_the_amount(app, client_user):
    _, parent = paid_parent(client_user, min_amount=Decimal("20.00"), max_amount=Decimal("500.00"),
                            amount="30.00")
    with pytest.raises(recurring.RecurringError, match="minimum"):
        recurring.create_profile(parent.id, account_id=client_user.account_id, rule="fixed", amount="10",
                                 monthly_max="100")
    with pytest.raises(recurring.RecurringError, match="maximum"):
        recurring.create_profile(parent.id, account_id=client_user.account_id, rule="fixed", amount="600",
                                 monthly_max="1000")


# --- charging ----------------------------------------------------------------------------------------

def test_fixed_rule_charges_once_per_month(app, client_user):
    _, parent = paid_parent(client_user)
    p = recurring.create_profile(parent.id, account_id=client_user.account_id, rule="fixed", amount="50",
                                 monthly_max="100", now=T0)
    assert recurring.run_due(datetime(2026, 2, 27, 23, tzinfo=UTC)).charges == []
    result = recurring.run_due(datetime(2026, 2, 28, 0, 5, tzinfo=UTC))
    assert [(c[0], c[1], c[3]) for c in result.charges] == [(p.id, "2026-02", "paid")]
    assert balance(client_user.account_id) == Decimal("60.00")
    assert recurring.run_due(datetime(2026, 2, 28, 6, tzinfo=UTC)).charges == []  # again: nothing
    assert profile_of(p.id).next_charge_at == datetime(2026, 3, 31, tzinfo=UTC)
    result = recurring.run_due(datetime(2026, 3, 31, 1, tzinfo=UTC))
    assert [c[1] for c in result.charges] == ["2026-03"]
    assert balance(client_user.account_id) == Decimal("110.00")
    kids = children(p.id)
    assert [k.status for k in kids] == ["paid", "paid"] and len(fake.CHARGES) == 2
    assert kids[0].paymethod_id == parent.paymethod_id
    kinds = [(e.kind, e.source, e.status_to) for e in db.session.execute(
        select(PaymentEvent).where(PaymentEvent.payment_id == kids[0].id).order_by(PaymentEvent.id)).scalars()]
    assert kinds == [("created", "recurring", "new"), ("recurring", fake.KEY, "paid")]
    periods = db.session.execute(select(RecurringCharge.period, RecurringCharge.state)
                                 .where(RecurringCharge.profile_id == p.id).order_by(RecurringCharge.id)).all()
    assert [tuple(r) for r in periods] == [("2026-02", "paid"), ("2026-03", "paid")]


def test_threshold_rule_and_monthly_maximum(app, client_user):
    _, parent = paid_parent(client_user)  # balance 10.00
    p = recurring.create_profile(parent.id, account_id=client_user.account_id, rule="threshold", amount="50",
                                 threshold="1000", monthly_max="120", now=T0)
    now = T0
    assert [c[1] for c in recurring.run_due(now).charges] == ["t1"]
    assert balance(client_user.account_id) == Decimal("60.00")
    now += timedelta(minutes=30)
    assert recurring.run_due(now).charges == []  # checked again only after RECURRING_CHECK_MINUTES
    now += timedelta(minutes=31)
    assert [c[1] for c in recurring.run_due(now).charges] == ["t2"]
    now += timedelta(hours=2)
    assert recurring.run_due(now).charges == []  # 100 + 50 > 120: capped for this month
    prof = profile_of(p.id)
    assert "monthly maximum" in prof.last_error and prof.next_charge_at == datetime(2026, 2, 1, tzinfo=UTC)
    assert balance(client_user.account_id) == Decimal("110.00")
    assert [c[1] for c in recurring.run_due(datetime(2026, 2, 1, 0, 1, tzinfo=UTC)).charges] == ["t3"]
    assert balance(client_user.account_id) == Decimal("160.00")


def test_monthly_maximum_counts_what_the_customer_pays_with_the_commission(app, client_user):
    _, parent = paid_parent(client_user, commission_amount=Decimal("5.00"))  # each 50.00 child costs 55.00
    with pytest.raises(recurring.RecurringError, match="with the commission"):
        recurring.create_profile(parent.id, account_id=client_user.account_id, rule="threshold", amount="50",
                                 threshold="1000", monthly_max="54", now=T0)
    p = recurring.create_profile(parent.id, account_id=client_user.account_id, rule="threshold", amount="50",
                                 threshold="1000", monthly_max="105", now=T0)
    assert [c[1] for c in recurring.run_due(T0).charges] == ["t1"]
    (first,) = children(p.id)
    assert (first.amount, first.total) == (Decimal("50.00"), Decimal("55.00"))
    # amounts alone (50 + 50 = 100) would fit under 105; what the customer pays (55 + 55 = 110) does not
    assert recurring.run_due(T0 + timedelta(minutes=61)).charges == []
    prof = profile_of(p.id)
    assert "monthly maximum" in prof.last_error and prof.next_charge_at == datetime(2026, 2, 1, tzinfo=UTC)
    assert balance(client_user.account_id) == Decimal("60.00") and len(fake.CHARGES) == 1
    assert [c[1] for c in recurring.run_due(datetime(2026, 2, 1, 0, 1, tzinfo=UTC)).charges] == ["t2"]


def test_threshold_rule_waits_while_the_balance_is_enough(app, client_user):
    _, parent = paid_parent(client_user, amount="500.00")
    p = recurring.create_profile(parent.id, account_id=client_user.account_id, rule="threshold", amount="50",
                                 threshold="100", monthly_max="500", now=T0)
    assert recurring.run_due(T0).charges == [] and fake.CHARGES == []
    assert profile_of(p.id).next_charge_at == T0 + timedelta(minutes=60)


def test_failures_back_off_then_suspend_with_a_dashboard_notice(app, client_user):
    app.config["FAKEREC_MODE"] = "failed"
    _, parent = paid_parent(client_user)
    p = recurring.create_profile(parent.id, account_id=client_user.account_id, rule="fixed", amount="50",
                                 monthly_max="100", now=T0)
    now = datetime(2026, 2, 28, 0, 5, tzinfo=UTC)
    assert recurring.run_due(now).charges[0][3] == "failed"
    prof = profile_of(p.id)
    assert (prof.status, prof.failures, prof.last_error) == ("active", 1, "card declined")
    assert prof.next_charge_at == now + timedelta(hours=1)
    assert recurring.notices_for_account(client_user.account_id)[0].startswith("The last charge")
    assert recurring.run_due(now + timedelta(minutes=59)).charges == []
    now += timedelta(hours=1)
    assert recurring.run_due(now).charges[0][3] == "failed"
    assert profile_of(p.id).next_charge_at == now + timedelta(hours=6)
    now += timedelta(hours=6)
    result = recurring.run_due(now)
    assert result.suspended == [p.id]
    prof = profile_of(p.id)
    assert (prof.status, prof.failures, prof.next_charge_at) == ("suspended", 3, None)
    assert recurring.run_due(now + timedelta(days=2)).charges == []
    # every attempt of the one period is a visible, cancelled payment; nothing credited
    kids = children(p.id)
    assert [k.status for k in kids] == ["cancelled"] * 3 and len(fake.CHARGES) == 3
    charge = db.session.execute(select(RecurringCharge).where(RecurringCharge.profile_id == p.id)).scalar_one()
    assert (charge.period, charge.state, charge.attempts, charge.payment_id) == ("2026-02", "failed", 3, kids[-1].id)
    assert balance(client_user.account_id) == Decimal("10.00")
    notices = recurring.notices_for_account(client_user.account_id)
    assert len(notices) == 1 and "suspended after 3 failed charges" in notices[0]
    c = app.test_client()
    login(c, *CLIENT)
    page = c.get("/dashboard").get_data(as_text=True)
    assert 'data-testid="recurring-notice"' in page and "suspended after 3 failed charges" in page
    # the admin resumes it: the failed period is abandoned and a charge is made at once
    app.config["FAKEREC_MODE"] = "paid"
    recurring.resume_profile(p.id, now=datetime(2026, 3, 5, tzinfo=UTC))
    assert recurring.notices_for_account(client_user.account_id) == []
    assert [(x[1], x[3]) for x in recurring.run_due(datetime(2026, 3, 5, 0, 1, tzinfo=UTC)).charges] == [("2026-03", "paid")]
    assert balance(client_user.account_id) == Decimal("60.00")


def test_max_failures_is_configurable(app, client_user):
    app.config.update(FAKEREC_MODE="none", RECURRING_MAX_FAILURES=1)
    _, parent = paid_parent(client_user)
    p = recurring.create_profile(parent.id, account_id=client_user.account_id, rule="threshold", amount="50",
                                 threshold="100", monthly_max="100", now=T0)
    assert recurring.run_due(T0).suspended == [p.id]
    assert "does not support" in profile_of(p.id).last_error


def test_module_error_retries_the_same_child(app, client_user):
    app.config["FAKEREC_MODE"] = "error"  # the gateway may or may not have charged: never a new child
    _, parent = paid_parent(client_user)
    p = recurring.create_profile(parent.id, account_id=client_user.account_id, rule="threshold", amount="50",
                                 threshold="100", monthly_max="500", now=T0)
    assert recurring.run_due(T0).charges[0][3] == "failed"
    (child,) = children(p.id)
    assert child.status == "new" and profile_of(p.id).failures == 1
    app.config["FAKEREC_MODE"] = "paid"
    result = recurring.run_due(T0 + timedelta(hours=1))
    assert result.charges == [(p.id, "t1", child.id, "paid")]
    assert fake.CHARGES == [child.id, child.id]  # the same payment id: the gateway's idempotency key
    assert [k.status for k in children(p.id)] == ["paid"]
    assert balance(client_user.account_id) == Decimal("60.00") and profile_of(p.id).failures == 0


def _held_child(app, user, **parent_fields):
    """A threshold profile whose first charge failed with an unknown outcome (the module raised): its
    child payment stays ``new`` and held. Returns (method, profile, child)."""
    app.config["FAKEREC_MODE"] = "error"
    method, parent = paid_parent(user, **parent_fields)
    profile = recurring.create_profile(parent.id, account_id=user.account_id, rule="threshold", amount="50",
                                       threshold="100", monthly_max="500", now=T0)
    recurring.run_due(T0)
    (child,) = children(profile.id)
    return method, profile, child


def _age(payment_id: int, days: float) -> None:
    with db.engine.begin() as conn:
        conn.execute(Payment.__table__.update().where(Payment.id == payment_id)
                     .values(created_at=datetime.now(UTC) - timedelta(days=days)))
    db.session.commit()  # a fresh snapshot: the change was made on another connection


def test_cleanup_leaves_a_child_whose_charge_outcome_is_unknown(app, client_user):
    method, p, child = _held_child(app, client_user, delete_after_days=1)  # its answer was lost
    unrelated = service.create_payment(client_user.account_id, method.id, Decimal("5.00"))
    _age(child.id, 3)
    _age(unrelated.id, 3)
    result = cancel_expired_payments()
    assert result.cancelled == 1
    assert (db.session.get(Payment, child.id).status, db.session.get(Payment, unrelated.id).status) == (
        "new", "cancelled")
    app.config["FAKEREC_MODE"] = "paid"
    assert recurring.run_due(T0 + timedelta(hours=1)).charges == [(p.id, "t1", child.id, "paid")]
    assert fake.CHARGES == [child.id, child.id] and [k.status for k in children(p.id)] == ["paid"]
    assert balance(client_user.account_id) == Decimal("60.00")
    _age(child.id, 3)
    assert cancel_expired_payments().cancelled == 0


def test_client_cannot_cancel_a_child_being_charged(app, client_user):
    _, p, child = _held_child(app, client_user)
    c = app.test_client()
    login(c, *CLIENT)
    page = c.post(f"/payments/{child.id}/cancel", follow_redirects=True).get_data(as_text=True)
    assert "cannot be cancelled" in page and children(p.id)[0].status == "new"
    app.config["FAKEREC_MODE"] = "accepted"  # asked again (same child): the gateway works on it now
    assert recurring.run_due(T0 + timedelta(hours=1)).charges == [(p.id, "t1", child.id, "accepted")]
    c.post(f"/payments/{child.id}/cancel")
    assert children(p.id)[0].status == "inpay"
    service.set_paid(child.id, amount=child.total, currency="RUB", source="notification")
    assert recurring.run_due(T0 + timedelta(hours=3)).charges == [(p.id, "t1", child.id, "paid")]
    assert [k.id for k in children(p.id)] == [child.id] and fake.CHARGES == [child.id, child.id]
    # a settled child is an ordinary payment again (here: paid, so no longer cancellable anyway)
    assert not recurring.is_held_child(child.id)


def test_cancel_button_is_hidden_on_a_child_being_charged(app, client_user):
    """The page offers "Cancel payment" only where the server would take it: not on a child whose
    charge outcome is unknown (pages and the server ask the same predicate)."""
    method, p, child = _held_child(app, client_user)
    ordinary = service.create_payment(client_user.account_id, method.id, Decimal("5.00"))
    c = app.test_client()
    login(c, *CLIENT)
    for url in (f"/payments/{child.id}", f"/payments/{child.id}/return/pending"):
        page = c.get(url).get_data(as_text=True)
        assert 'data-testid="cancel-payment"' not in page, url
    assert 'data-testid="cancel-payment"' in c.get(f"/payments/{ordinary.id}").get_data(as_text=True)
    # the return page offers no Cancel at all while the gateway is awaited (money may be on its way)
    assert 'data-testid="cancel-payment"' not in c.get(f"/payments/{ordinary.id}/return/pending").get_data(as_text=True)
    page = c.post(f"/payments/{child.id}/cancel", follow_redirects=True).get_data(as_text=True)
    assert "cannot be cancelled" in page and children(p.id)[0].status == "new"


def test_pay_button_is_hidden_and_refused_on_a_child_being_charged(app, client_user):
    """Paying a held child by hand could take the money twice for one payment: no "Pay" button, and the
    server refuses the request without sending anyone to the gateway."""
    method, p, child = _held_child(app, client_user)
    ordinary = service.create_payment(client_user.account_id, method.id, Decimal("5.00"))
    c = app.test_client()
    login(c, *CLIENT)
    for url in (f"/payments/{child.id}", f"/payments/{child.id}/return/pending"):
        assert 'data-testid="pay-again"' not in c.get(url).get_data(as_text=True), url
    assert 'data-testid="pay-again"' in c.get(f"/payments/{ordinary.id}").get_data(as_text=True)
    charged = list(fake.CHARGES)
    response = c.post(f"/payments/{child.id}/pay")
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/payments/{child.id}")
    page = c.get(response.headers["Location"]).get_data(as_text=True)
    assert "cannot be paid by hand" in page
    assert children(p.id)[0].status == "new" and fake.CHARGES == charged


def test_run_never_replaces_a_child_cancelled_while_its_outcome_is_unknown(app, client_user):
    _, p, child = _held_child(app, client_user)
    service.set_cancelled(child.id, source="admin", kind="manual", reason="looked stuck")  # past the guards
    app.config["FAKEREC_MODE"] = "paid"
    result = recurring.run_due(T0 + timedelta(hours=1))
    assert result.charges == [(p.id, "t1", child.id, "unknown")] and result.suspended == [p.id]
    assert [k.id for k in children(p.id)] == [child.id] and fake.CHARGES == [child.id]
    prof = profile_of(p.id)
    assert prof.status == "suspended" and f"payment {child.id} is unknown" in prof.last_error
    assert recurring.run_due(T0 + timedelta(days=1)).charges == []
    # the gateway did charge it after all: the late money is credited, and resuming books the period paid
    service.set_paid(child.id, amount=child.total, currency="RUB", source="notification")
    recurring.resume_profile(p.id, now=T0 + timedelta(days=1))
    charge = db.session.execute(select(RecurringCharge).where(RecurringCharge.profile_id == p.id)).scalar_one()
    assert (charge.period, charge.state) == ("t1", "paid")
    assert balance(client_user.account_id) == Decimal("60.00")


def test_resume_keeps_a_claimed_period_whose_child_is_still_open(app, client_user):
    """A module error leaves the period claimed with its ``new`` child (the same child is charged again).
    Resuming the suspended profile keeps that period: the child stays held (no Pay or Cancel for the
    client, cleanup leaves it) and the next run charges the same child, never a second one."""
    app.config.update(FAKEREC_MODE="error", RECURRING_MAX_FAILURES=1)
    _, parent = paid_parent(client_user, delete_after_days=1)
    p = recurring.create_profile(parent.id, account_id=client_user.account_id, rule="threshold", amount="50",
                                 threshold="100", monthly_max="500", now=T0)
    assert recurring.run_due(T0).suspended == [p.id]
    (child,) = children(p.id)
    assert child.status == "new" and recurring.is_held_child(child.id)
    recurring.resume_profile(p.id, now=T0 + timedelta(hours=1))
    assert profile_of(p.id).status == "active" and recurring.is_held_child(child.id)
    _age(child.id, 3)
    assert cancel_expired_payments().cancelled == 0 and children(p.id)[0].status == "new"
    c = app.test_client()
    login(c, *CLIENT)
    page = c.get(f"/payments/{child.id}").get_data(as_text=True)
    assert 'data-testid="cancel-payment"' not in page and 'data-testid="pay-again"' not in page
    app.config["FAKEREC_MODE"] = "paid"
    assert recurring.run_due(T0 + timedelta(hours=1)).charges == [(p.id, "t1", child.id, "paid")]
    assert fake.CHARGES == [child.id, child.id] and [k.status for k in children(p.id)] == ["paid"]
    assert balance(client_user.account_id) == Decimal("60.00")


def test_a_cancel_found_by_an_admins_status_check_is_the_gateways(app, client_user):
    """An admin's "check now" (recorded with source ``admin``) finds the charge cancelled at the gateway:
    an ordinary failed charge, retried with a new child, not a cancel made here (no suspension)."""
    app.config["FAKEREC_MODE"] = "accepted"
    _, parent = paid_parent(client_user)
    p = recurring.create_profile(parent.id, account_id=client_user.account_id, rule="threshold", amount="50",
                                 threshold="100", monthly_max="500", now=T0)
    assert recurring.run_due(T0).charges[0][3] == "accepted"
    (child,) = children(p.id)
    app.config["FAKEREC_CHECK"] = "cancelled"
    polling.check_payment(child.id, "admin", actor=ADMIN[0])  # what the admin's "check now" button does
    assert children(p.id)[0].status == "cancelled"
    now = T0 + timedelta(minutes=61)
    result = recurring.run_due(now)
    assert result.charges == [(p.id, "t1", child.id, "failed")] and result.suspended == []
    prof = profile_of(p.id)
    assert (prof.status, prof.failures, prof.last_error) == ("active", 1, "cancelled at the fake gateway")
    app.config["FAKEREC_MODE"] = "paid"
    result = recurring.run_due(now + timedelta(hours=1))
    first, second = children(p.id)
    assert first.id == child.id and result.charges == [(p.id, "t1", second.id, "paid")]
    assert balance(client_user.account_id) == Decimal("60.00")


def test_a_fraud_child_counts_towards_the_monthly_maximum(app, client_user):
    """A child flagged ``fraud`` charged the customer something: once the profile is resumed, the month's
    total still counts it, so the next top-up cannot take the customer past the monthly maximum."""
    app.config["FAKEREC_MODE"] = "paid_short"
    _, parent = paid_parent(client_user)
    p = recurring.create_profile(parent.id, account_id=client_user.account_id, rule="threshold", amount="50",
                                 threshold="100", monthly_max="90", now=T0)
    assert recurring.run_due(T0).suspended == [p.id]
    (child,) = children(p.id)
    assert child.status == "fraud"
    recurring.resume_profile(p.id, now=T0 + timedelta(hours=1))  # the admin resumes without booking it
    app.config["FAKEREC_MODE"] = "paid"
    assert recurring.run_due(T0 + timedelta(hours=1)).charges == []  # 50 + 50 > 90: capped
    prof = profile_of(p.id)
    assert prof.last_error_code == "monthly_max" and prof.next_charge_at == datetime(2026, 2, 1, tzinfo=UTC)
    assert fake.CHARGES == [child.id] and [k.id for k in children(p.id)] == [child.id]


def _assert_held_for_a_check(app, client_user, p, child, result):
    """A child that ended ``fraud``: never replaced, the profile suspended for an admin's check."""
    assert result.charges == [(p.id, "t1", child.id, "unknown")] and result.suspended == [p.id]
    prof = profile_of(p.id)
    assert (prof.status, prof.next_charge_at) == ("suspended", None)
    assert (prof.last_error_code, prof.last_error_params) == ("fraud_check", {"id": child.id})
    assert f"payment {child.id} needs an administrator's check" in prof.last_error
    assert f"payment {child.id} needs an administrator's check" in recurring_error_text(app, prof)
    notices = recurring.notices_for_account(client_user.account_id)
    assert len(notices) == 1 and "suspended" in notices[0] and f"payment {child.id} needs" in notices[0]
    c = app.test_client()
    login(c, *CLIENT)
    page = c.get("/dashboard").get_data(as_text=True)
    assert 'data-testid="recurring-notice"' in page and "needs an administrator&#39;s check" in page
    # later runs charge nothing: the customer may have been charged already
    assert recurring.run_due(T0 + timedelta(days=2)).charges == []
    assert [k.id for k in children(p.id)] == [child.id] and children(p.id)[0].status == "fraud"
    assert balance(client_user.account_id) == Decimal("10.00")


def recurring_error_text(app, profile):
    with app.test_request_context():
        return app.jinja_env.globals["recurring_error"](profile)


def test_a_child_paid_with_the_wrong_amount_is_never_replaced(app, client_user):
    """The gateway answers the charge paid, with another amount: the service flags the child ``fraud``.
    The customer was charged something, so no new child is charged for the period (that could charge
    twice); the profile is suspended until an admin checks the charge."""
    app.config["FAKEREC_MODE"] = "paid_short"
    _, parent = paid_parent(client_user)
    p = recurring.create_profile(parent.id, account_id=client_user.account_id, rule="threshold", amount="50",
                                 threshold="100", monthly_max="500", now=T0)
    result = recurring.run_due(T0)
    (child,) = children(p.id)
    assert child.status == "fraud" and fake.CHARGES == [child.id]
    app.config["FAKEREC_MODE"] = "paid"
    _assert_held_for_a_check(app, client_user, p, child, result)
    assert fake.CHARGES == [child.id]
    kinds = [e.outcome for e in db.session.execute(select(PaymentEvent).where(
        PaymentEvent.payment_id == child.id, PaymentEvent.kind == "recurring")).scalars()]
    assert any("admin" in (k or "") and "suspended" in (k or "") for k in kinds)
    # the admin checks it and books it paid by hand: resuming books the period paid, nothing charged again
    service.set_paid(child.id, amount=child.total, currency="RUB", source="admin", manual=True)
    recurring.resume_profile(p.id, now=T0 + timedelta(days=3))
    charge = db.session.execute(select(RecurringCharge).where(RecurringCharge.profile_id == p.id)).scalar_one()
    assert (charge.period, charge.state) == ("t1", "paid")
    assert recurring.notices_for_account(client_user.account_id) == []


def test_an_accepted_child_reported_with_the_wrong_amount_is_never_replaced(app, client_user):
    """The same when the wrong amount arrives later, in the gateway's notification of an accepted charge."""
    app.config["FAKEREC_MODE"] = "accepted"
    _, parent = paid_parent(client_user)
    p = recurring.create_profile(parent.id, account_id=client_user.account_id, rule="threshold", amount="50",
                                 threshold="100", monthly_max="500", now=T0)
    assert recurring.run_due(T0).charges[0][3] == "accepted"
    (child,) = children(p.id)
    outcome = service.set_paid(child.id, amount=child.total + 5, currency="RUB", source="notification")
    assert outcome.result == "fraud"
    app.config["FAKEREC_MODE"] = "paid"
    result = recurring.run_due(T0 + timedelta(minutes=61))
    _assert_held_for_a_check(app, client_user, p, child, result)
    assert fake.CHARGES == [child.id]


def test_a_failed_period_whose_child_ended_fraud_is_never_replaced(app, client_user):
    """A period booked failed (by an earlier version) whose child is ``fraud``: the retry holds instead."""
    app.config["FAKEREC_MODE"] = "paid_short"
    _, parent = paid_parent(client_user)
    p = recurring.create_profile(parent.id, account_id=client_user.account_id, rule="threshold", amount="50",
                                 threshold="100", monthly_max="500", now=T0)
    ticket = recurring._claim(p.id, T0, recurring.RunResult())
    child = service.create_payment(client_user.account_id, parent.paymethod_id, Decimal("50.00"))
    recurring._link(ticket, child.id)
    service.set_paid(child.id, amount=child.total - 1, currency="RUB", source="notification")
    with db.engine.begin() as conn:  # as the run booked it before: a failure, retried in an hour
        conn.execute(RecurringCharge.__table__.update().where(RecurringCharge.id == ticket.charge_id)
                     .values(state="failed"))
        conn.execute(RecurringProfile.__table__.update().where(RecurringProfile.id == p.id)
                     .values(failures=1, next_charge_at=T0 + timedelta(hours=1)))
    db.session.commit()
    app.config["FAKEREC_MODE"] = "paid"
    result = recurring.run_due(T0 + timedelta(hours=1))
    assert result.charges == [(p.id, "t1", child.id, "unknown")] and result.suspended == [p.id]
    prof = profile_of(p.id)
    assert (prof.status, prof.last_error_code) == ("suspended", "fraud_check") and fake.CHARGES == []


def test_accepted_charge_is_booked_when_the_notification_credits_it(app, client_user):
    app.config["FAKEREC_MODE"] = "accepted"
    _, parent = paid_parent(client_user)
    p = recurring.create_profile(parent.id, account_id=client_user.account_id, rule="fixed", amount="50",
                                 monthly_max="100", now=T0)
    now = datetime(2026, 2, 28, 1, tzinfo=UTC)
    assert recurring.run_due(now).charges[0][3] == "accepted"
    (child,) = children(p.id)
    assert child.status == "inpay" and balance(client_user.account_id) == Decimal("10.00")
    assert recurring.run_due(now + timedelta(minutes=61)).charges == []  # still waiting: no second charge
    # the gateway's notification credits it (through the service, as the module's route would)
    service.set_paid(child.id, amount=child.total, currency="RUB", source="notification")
    result = recurring.run_due(now + timedelta(minutes=125))
    assert result.charges == [(p.id, "2026-02", child.id, "paid")]
    assert profile_of(p.id).next_charge_at == datetime(2026, 3, 31, tzinfo=UTC)
    assert balance(client_user.account_id) == Decimal("60.00") and fake.CHARGES == [child.id]
    # next month the gateway accepts, then reports the charge cancelled: a failure, retried
    recurring.run_due(datetime(2026, 3, 31, 1, tzinfo=UTC))
    march = children(p.id)[-1]
    service.set_cancelled(march.id, source="notification", reason="bank refused")
    result = recurring.run_due(datetime(2026, 3, 31, 3, tzinfo=UTC))
    assert result.charges == [(p.id, "2026-03", march.id, "failed")]
    prof = profile_of(p.id)
    assert prof.failures == 1 and prof.last_error == "bank refused"


def test_last_error_is_shown_in_the_readers_language(app, client_user):
    """The cron runs in one language; each reader sees the error in theirs; rows stored before keep their text."""
    app.config.update(FAKEREC_MODE="none", RECURRING_MAX_FAILURES=1)  # "does not support automatic payments"
    _, first = paid_parent(client_user)
    _, second = paid_parent(client_user)
    recurring.create_profile(first.id, account_id=client_user.account_id, rule="threshold", amount="50",
                                      threshold="1000", monthly_max="60", now=T0)
    with force_locale("ru"):  # a cron whose language is Russian
        recurring.run_due(T0)  # suspended at once: never retried below
    app.config["FAKEREC_MODE"] = "paid"
    capped = recurring.create_profile(second.id, account_id=client_user.account_id, rule="threshold", amount="50",
                                      threshold="1000", monthly_max="60", now=T0)
    with force_locale("ru"):
        recurring.run_due(T0)  # t1 paid
        recurring.run_due(T0 + timedelta(minutes=61))  # 50 + 50 > 60: capped
    c = app.test_client()
    login(c, *CLIENT)
    page = c.get("/recurring").get_data(as_text=True)
    assert "monthly maximum of 60.00 RUB reached" in page and "достигнут" not in page
    assert "does not support automatic payments" in page and "не поддерживает" not in page
    assert "does not support automatic payments" in c.get("/dashboard").get_data(as_text=True)
    create_admin(*ADMIN)
    a = app.test_client()
    login(a, *ADMIN)
    assert "does not support automatic payments" in a.get("/admin/recurring").get_data(as_text=True)
    assert c.post("/language/ru").status_code == 302
    page = c.get("/recurring").get_data(as_text=True)
    assert "достигнут месячный лимит 60.00 RUB" in page and "платёжная система не поддерживает автоплатежи" in page
    assert "платёжная система не поддерживает автоплатежи" in c.get("/dashboard").get_data(as_text=True)
    prof = profile_of(capped.id)
    assert (prof.last_error_code, prof.last_error_params) == ("monthly_max", {"max": "60.00", "currency": "RUB"})
    assert prof.last_error == "monthly maximum of 60.00 RUB reached"  # untranslated, for logs and the CLI
    # a row stored before errors had codes: its text is shown as it is
    prof.last_error, prof.last_error_code, prof.last_error_params = "старая ошибка", None, None
    db.session.commit()
    assert "старая ошибка" in c.get("/recurring").get_data(as_text=True)


def test_a_refused_child_is_stored_with_the_service_s_code(app, client_user):
    """The method's maximum fell below the profile's amount: the service refuses the child, and the
    profile keeps the service's own code and parameters (shown in the reader's language), not a text
    translated at cron time."""
    method, parent = paid_parent(client_user)
    p = recurring.create_profile(parent.id, account_id=client_user.account_id, rule="threshold", amount="50",
                                 threshold="100", monthly_max="500", now=T0)
    db.session.get(type(method), method.id).max_amount = Decimal("40.00")
    db.session.commit()
    with force_locale("ru"):
        recurring.run_due(T0)
    prof = profile_of(p.id)
    assert (prof.last_error_code, prof.last_error_params) == ("max_amount", {"amount": "40.00", "currency": "RUB"})
    assert children(p.id) == []
    with pytest.raises(service.PaymentCreateError) as refused:
        service.create_payment(client_user.account_id, method.id, Decimal("50.00"))
    assert (refused.value.code, refused.value.params) == ("max_amount", {"amount": "40.00", "currency": "RUB"})


def test_cancellation(app, client_user, other_client_user):
    _, parent = paid_parent(client_user)
    p = recurring.create_profile(parent.id, account_id=client_user.account_id, rule="threshold", amount="50",
                                 threshold="100", monthly_max="500", now=T0)
    other = app.test_client()
    login(other, *OTHER_CLIENT)
    assert other.post(f"/recurring/{p.id}/cancel").status_code == 404
    assert profile_of(p.id).status == "active"
    c = app.test_client()
    login(c, *CLIENT)
    resp = c.post(f"/recurring/{p.id}/cancel")
    assert resp.status_code == 302
    assert profile_of(p.id).status == "cancelled"
    assert recurring.run_due(T0 + timedelta(days=1)).charges == [] and fake.CHARGES == []
    assert "Cancelled" in c.get("/recurring").get_data(as_text=True)


def test_period_is_unique_in_the_database(app, client_user):
    _, parent = paid_parent(client_user)
    p = recurring.create_profile(parent.id, account_id=client_user.account_id, rule="fixed", amount="50",
                                 monthly_max="100", now=T0)
    db.session.add(RecurringCharge(profile_id=p.id, period="2026-02", state="paid", attempts=1))
    db.session.commit()
    db.session.add(RecurringCharge(profile_id=p.id, period="2026-02", state="claimed", attempts=1))
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()
    # a run that finds the period done moves on to the next month without charging
    assert recurring.run_due(datetime(2026, 2, 28, 1, tzinfo=UTC)).charges == [] and fake.CHARGES == []
    assert profile_of(p.id).next_charge_at == datetime(2026, 3, 31, tzinfo=UTC)


def test_a_claimed_period_is_leased_then_recovered_once(app, client_user):
    _, parent = paid_parent(client_user)
    p = recurring.create_profile(parent.id, account_id=client_user.account_id, rule="threshold", amount="50",
                                 threshold="100", monthly_max="500", now=T0)
    ticket = recurring._claim(p.id, T0, recurring.RunResult())  # host A claims, then dies before charging
    assert ticket is not None and ticket.period == "t1"
    assert recurring.run_due(T0 + timedelta(minutes=5)).charges == []  # host B: leased, not due
    result = recurring.run_due(T0 + recurring.LEASE + timedelta(seconds=1))  # lease over: recovered
    assert [(c[1], c[3]) for c in result.charges] == [("t1", "paid")]
    assert len(children(p.id)) == 1 and len(fake.CHARGES) == 1
    assert balance(client_user.account_id) == Decimal("60.00")


def test_two_runs_at_once_charge_once(app, client_user):
    app.config["FAKEREC_DELAY"] = 0.3  # the first run is still charging when the second looks
    users = [client_user] + [create_client(f"c{i}@test.example", "client-pass-1") for i in range(3)]
    ids = []
    for u in users:
        _, parent = paid_parent(u)
        ids.append(recurring.create_profile(parent.id, account_id=u.account_id, rule="threshold", amount="50",
                                            threshold="100", monthly_max="500", now=T0).id)
    results = run_together(app, [lambda: recurring.run_due(T0 + timedelta(seconds=1))] * 2)
    assert all(isinstance(r, recurring.RunResult) for r in results), results
    assert sum(len(r.charges) for r in results) == len(users)
    assert sorted(fake.CHARGES) == sorted(set(fake.CHARGES)) and len(fake.CHARGES) == len(users)
    for u, pid in zip(users, ids):
        assert [k.status for k in children(pid)] == ["paid"]
        assert balance(u.account_id) == Decimal("60.00")


# --- pages and CLI -----------------------------------------------------------------------------------

def test_client_opts_in_while_paying_and_sets_up_a_profile(app, client_user):
    method = add_paymethod(fake.KEY, {}, recurring=True)
    payment = service.create_payment(client_user.account_id, method.id, Decimal("25.00"))
    c = app.test_client()
    login(c, *CLIENT)
    page = c.get(f"/payments/{payment.id}").get_data(as_text=True)
    assert 'data-testid="recurring-prepare"' in page and 'data-testid="recurring-create"' not in page
    resp = c.post(f"/payments/{payment.id}/recurring/prepare")
    assert resp.status_code == 302 and resp.headers["Location"] == f"https://gateway.invalid/pay/{payment.id}"
    db.session.commit()  # a fresh snapshot: other threads and hosts committed meanwhile
    assert db.session.get(Payment, payment.id).gateway_data["recurring"] is True
    assert "recurring-prepare" not in c.get(f"/payments/{payment.id}").get_data(as_text=True)
    assert c.get(f"/payments/{payment.id}/recurring").status_code == 200  # shows the refusal (unpaid)
    service.set_paid(payment.id, amount=Decimal("25.00"), currency="RUB", source="test")
    page = c.get(f"/payments/{payment.id}").get_data(as_text=True)
    assert 'data-testid="recurring-create"' in page
    form = c.get(f"/payments/{payment.id}/recurring").get_data(as_text=True)
    assert 'name="monthly_max"' in form
    bad = c.post(f"/payments/{payment.id}/recurring", data={"rule": "fixed", "amount": "50", "monthly_max": "10"})
    assert bad.status_code == 422 and "at least the amount" in bad.get_data(as_text=True)
    ok = c.post(f"/payments/{payment.id}/recurring",
                data={"rule": "threshold", "amount": "50", "threshold": "100", "monthly_max": "200"})
    assert ok.status_code == 302 and ok.headers["Location"].endswith("/recurring")
    prof = db.session.execute(select(RecurringProfile)).scalar_one()
    assert (prof.rule, prof.threshold, prof.amount, prof.monthly_max, prof.actor) == (
        "threshold", Decimal("100.00"), Decimal("50.00"), Decimal("200.00"), CLIENT[0])
    listing = c.get("/recurring").get_data(as_text=True)
    assert f'data-testid="profile-{prof.id}"' in listing and "Auto-payments" in listing  # nav entry
    assert "recurring-create" not in c.get(f"/payments/{payment.id}").get_data(as_text=True)
    assert c.post(f"/payments/{payment.id}/recurring", data={"rule": "fixed", "amount": "5",
                                                             "monthly_max": "10"}).status_code == 409


def test_someone_elses_payment_is_not_found(app, client_user, other_client_user):
    _, parent = paid_parent(client_user)
    other = app.test_client()
    login(other, *OTHER_CLIENT)
    assert other.get(f"/payments/{parent.id}/recurring").status_code == 404
    assert other.post(f"/payments/{parent.id}/recurring/prepare").status_code == 404


def test_recurring_pages_share_the_checkout_owner_lookup(app, client_user):
    """One owner-only payment lookup for the client area: the recurring pages use the checkout's."""
    from billcore.recurring import views as recurring_views
    from billcore.checkout import access
    from billcore.checkout import views as checkout_views
    assert recurring_views.own_payment is access.own_payment is checkout_views.own_payment
    c = app.test_client()
    login(c, *CLIENT)
    assert c.get("/payments/999999/recurring").status_code == 404
    assert c.post("/payments/999999/recurring/prepare").status_code == 404


def test_admin_list_resume_and_cancel(app, client_user):
    app.config.update(FAKEREC_MODE="failed", RECURRING_MAX_FAILURES=1)
    _, parent = paid_parent(client_user)
    p = recurring.create_profile(parent.id, account_id=client_user.account_id, rule="threshold", amount="50",
                                 threshold="100", monthly_max="500", now=T0)
    recurring.run_due(T0)
    create_admin(*ADMIN)
    a = app.test_client()
    login(a, *ADMIN)
    page = a.get("/admin/recurring").get_data(as_text=True)
    assert f'data-testid="profile-{p.id}"' in page and "card declined" in page and "Auto-payments" in page
    assert f'data-testid="resume-{p.id}"' in page
    assert "data-autosubmit" not in page  # billcore.js submits such forms on load: the filter would loop
    assert "profile-" not in a.get("/admin/recurring?status=active").get_data(as_text=True)
    assert a.post(f"/admin/recurring/{p.id}/resume").status_code == 302
    assert profile_of(p.id).status == "active"
    assert a.post(f"/admin/recurring/{p.id}/cancel").status_code == 302
    assert profile_of(p.id).status == "cancelled"
    assert a.post(f"/admin/recurring/{p.id}/explode").status_code == 400
    c = app.test_client()
    login(c, *CLIENT)
    assert c.get("/admin/recurring").status_code == 403



def test_cli_run_reads_due_profiles_in_batches_and_prints_every_charge_as_json(app, client_user, monkeypatch):
    monkeypatch.setattr(recurring_run, "DUE_BATCH", 2)  # 5 due profiles: three batches
    profiles = []
    for _ in range(5):
        _, parent = paid_parent(client_user)
        profiles.append(recurring.create_profile(parent.id, account_id=client_user.account_id, rule="fixed",
                                                 amount="50", monthly_max="1000", now=T0))
    runner = app.test_cli_runner()
    out = runner.invoke(args=["recurring", "run", "--now", "2026-02-28T00:10:00+00:00", "--limit", "4", "--json"])
    assert out.exit_code == 0, out.output
    document = json.loads(out.output)
    assert sorted(row["profile_id"] for row in document["charges"]) == [p.id for p in profiles[:4]]
    assert {row["outcome"] for row in document["charges"]} == {"paid"}
    assert document["suspended"] == [] and document["errors"] == []
    out = runner.invoke(args=["recurring", "run", "--now", "2026-02-28T00:10:00+00:00"])
    assert out.exit_code == 0, out.output
    assert f"profile {profiles[4].id} period 2026-02" in out.output and "1 charge(s): 1 paid" in out.output
    out = runner.invoke(args=["recurring", "run", "--now", "2026-02-28T00:10:00+00:00", "--json"])
    assert json.loads(out.output) == {"charges": [], "suspended": [], "errors": []}  # each charged once

def test_cli_run_and_list(app, client_user):
    _, parent = paid_parent(client_user)
    p = recurring.create_profile(parent.id, account_id=client_user.account_id, rule="fixed", amount="50",
                                 monthly_max="100", now=T0)
    runner = app.test_cli_runner()
    out = runner.invoke(args=["recurring", "run", "--now", "2026-02-10T00:00:00", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output) == {"charges": [], "suspended": [], "errors": []}
    out = runner.invoke(args=["recurring", "run", "--now", "2026-02-28T00:10:00+00:00"])
    assert out.exit_code == 0, out.output
    assert f"profile {p.id} period 2026-02" in out.output and "1 paid" in out.output
    out = runner.invoke(args=["recurring", "list", "--json"])
    rows = json.loads(out.output)
    assert rows[0]["id"] == p.id and rows[0]["next_charge_at"].startswith("2026-03-31")
    assert runner.invoke(args=["recurring", "run", "--now", "yesterday"]).exit_code != 0


# --- end to end through pmtemplate's fake gateway ------------------------------------------------------

def _split(location):
    parts = urlsplit(location)
    return parts.path, dict(parse_qsl(parts.query))


def test_end_to_end_through_pmtemplate(app, client_client, client_user):
    settings = {"merchant_id": "shop-1", "secret": "s3cr3t-shared-value", "gateway_url": "", "test_mode": True}
    method = add_paymethod("pmtemplate", settings, recurring=True)
    parent = service.create_payment(client_user.account_id, method.id, Decimal("100.00"))
    resp = client_client.post(f"/payments/{parent.id}/recurring/prepare")
    path, params = _split(resp.headers["Location"])  # billcore's payment door sends it to the gateway
    assert path == "/fakegw/pay"
    db.session.commit()  # a fresh snapshot
    marked = db.session.get(Payment, parent.id)
    assert marked.status == "inpay" and marked.gateway_data.get(recurring.PARENT_FLAG) is True
    client_client.post("/fakegw/pay", data={**params, "action": "pay"})
    db.session.commit()  # a fresh snapshot: other threads and hosts committed meanwhile
    assert db.session.get(Payment, parent.id).status == "paid"
    assert client_client.post(f"/payments/{parent.id}/recurring", data={
        "rule": "fixed", "amount": "30", "monthly_max": "30"}).status_code == 302
    p = db.session.execute(select(RecurringProfile)).scalar_one()
    due = profile_of(p.id).next_charge_at
    result = recurring.run_due(due + timedelta(minutes=1))
    assert [(c[1], c[3]) for c in result.charges] == [(recurring.fixed_period(due), "paid")]
    assert balance(client_user.account_id) == Decimal("130.00")
    assert recurring.run_due(due + timedelta(minutes=2)).charges == []
    # a parent that the gateway never saw paid (paid by hand in billcore): the fake gateway refuses
    orphan = service.create_payment(client_user.account_id, method.id, Decimal("100.00"))
    recurring.mark_parent(orphan.id)
    service.set_paid(orphan.id, amount=Decimal("100.00"), currency="RUB", source="admin", manual=True)
    q = recurring.create_profile(orphan.id, account_id=client_user.account_id, rule="threshold", amount="30",
                                 threshold="1000", monthly_max="100", now=due)
    result = recurring.run_due(due + timedelta(minutes=3))
    assert [(c[0], c[3]) for c in result.charges] == [(q.id, "failed")]
    assert "not paid at the gateway" in profile_of(q.id).last_error
    assert balance(client_user.account_id) == Decimal("230.00")


def test_one_broken_profile_does_not_stop_the_run(app, client_user, monkeypatch):
    _, first = paid_parent(client_user)
    _, second = paid_parent(client_user)
    a = recurring.create_profile(first.id, account_id=client_user.account_id, rule="threshold", amount="50",
                                 threshold="100", monthly_max="500", now=T0)
    b = recurring.create_profile(second.id, account_id=client_user.account_id, rule="threshold", amount="50",
                                 threshold="100", monthly_max="500", now=T0)
    real = recurring._claim
    broken = a.id  # read here: the run's threads must not touch this test's session

    def flaky(profile_id, now, result):
        if profile_id == broken:
            raise RuntimeError("database hiccup")
        return real(profile_id, now, result)

    monkeypatch.setattr(recurring.run, "_claim", flaky)
    result = recurring.run_due(T0)
    assert result.errors == [(a.id, "RuntimeError: database hiccup")]
    assert [c[0] for c in result.charges] == [b.id]
    out = app.test_cli_runner().invoke(args=["recurring", "run", "--now", "2026-01-31T10:00:00+00:00"])
    assert out.exit_code == 1 and f"profile {a.id} ERROR" in out.output
