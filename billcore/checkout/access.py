"""What a client may see and do with a payment: the owner-only lookup every client page uses."""
from __future__ import annotations

from flask import abort
from flask_login import current_user

from ..db import db
from ..models import Payment


def own_payment(payment_id: int) -> Payment:
    """The current client's payment ``payment_id``; 404 for anyone else's (or no such payment), so that
    ids cannot be probed."""
    payment = db.session.get(Payment, payment_id)
    if payment is None or payment.account_id != current_user.account_id:
        abort(404)
    return payment
