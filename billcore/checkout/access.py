"""What a client may see and do with a payment: the owner-only lookup every client page uses, and
whether the client may cancel a payment (the pages and the server ask the same question)."""
from __future__ import annotations

from flask import abort
from flask_babel import gettext as _
from flask_login import current_user

from .. import recurring
from ..db import db
from ..models import Payment


def own_payment(payment_id: int) -> Payment:
    """The current client's payment ``payment_id``; 404 for anyone else's (or no such payment), so that
    ids cannot be probed."""
    payment = db.session.get(Payment, payment_id)
    if payment is None or payment.account_id != current_user.account_id:
        abort(404)
    return payment


def cancel_refusal(payment: Payment) -> str | None:
    """Why the client may not cancel ``payment`` although it may still be open (None when it may).

    A child of an automatic payment whose charge outcome is unknown is never cancelled here: the gateway
    may still take the money (:func:`billcore.recurring.is_held_child`). A payment that is no longer open
    is refused by the payment service itself. Pages hide the "Cancel payment" button when this refuses.
    """
    if payment.status in recurring.OPEN and recurring.is_held_child(payment.id):
        return _("This automatic payment is being charged by the payment system and cannot be cancelled.")
    return None


def pay_refusal(payment: Payment) -> str | None:
    """Why the client may not pay ``payment`` by hand although it may still be open (None when it may).

    Paying a child of an automatic payment at the gateway while its charge is under way could take the
    money twice for one payment (the second notification would find it paid). Pages hide "Pay" then.
    """
    if payment.status in recurring.OPEN and recurring.is_held_child(payment.id):
        return _("This automatic payment is being charged by the payment system and cannot be paid by hand.")
    return None
