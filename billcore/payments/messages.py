"""The payment service's and the poller's refusals as a person reads them: translated, statuses by name.

The exceptions keep their English text for logs and the history; views show :func:`error_text` instead.
"""
from __future__ import annotations

from flask_babel import gettext as _

from ..templating import status_label
from . import service


def error_text(exc: Exception) -> str:
    """``exc`` as a translated sentence for a flash message or a form error.

    :class:`service.IllegalTransition` names both statuses through :func:`status_label`; the other
    refusals (refund and creation errors, :class:`polling.PollError`) are already translated when raised.
    """
    if isinstance(exc, service.IllegalTransition):
        return _("Payment %(id)s is “%(status)s”: it cannot become “%(target)s”.", id=exc.payment_id,
                 status=status_label(exc.current), target=status_label(exc.target))
    if isinstance(exc, service.PaymentNotFound):
        return _("The payment or refund no longer exists.")
    return str(exc)
