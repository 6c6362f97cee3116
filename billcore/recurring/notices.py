"""The client's dashboard notices about auto-payments."""
from __future__ import annotations

from flask_babel import gettext as _
from flask_babel import ngettext
from sqlalchemy import select

from ..db import db
from ..models import RecurringProfile
from .base import ACTIVE, SUSPENDED
from .errors import profile_error


def notices_for_account(account_id: int) -> list[str]:
    """Texts for the client's dashboard: suspended auto-payments and failed charges awaiting a retry."""
    rows = db.session.execute(select(RecurringProfile).where(
        RecurringProfile.account_id == account_id, RecurringProfile.status.in_((ACTIVE, SUSPENDED)),
        RecurringProfile.failures > 0).order_by(RecurringProfile.id)).scalars().all()
    notices = []
    for p in rows:
        if p.status == SUSPENDED:
            notices.append(ngettext("Automatic payment #%(id)s was suspended after %(count)s failed charge "
                                    "(%(error)s). Please add funds manually or set up automatic payments again.",
                                    "Automatic payment #%(id)s was suspended after %(count)s failed charges "
                                    "(%(error)s). Please add funds manually or set up automatic payments again.",
                                    p.failures, id=p.id, count=p.failures, error=profile_error(p) or "-"))
        else:
            notices.append(_("The last charge of automatic payment #%(id)s failed (%(error)s); it will be "
                             "retried on %(when)s.", id=p.id, error=profile_error(p) or "-",
                             when=p.next_charge_at.strftime("%Y-%m-%d %H:%M UTC") if p.next_charge_at else "-"))
    return notices
