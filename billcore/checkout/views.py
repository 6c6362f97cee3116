"""Client-area views."""
from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import current_user

from ..auth import client_required
from ..db import db
from ..models import Account

bp = Blueprint("checkout", __name__)


@bp.route("/dashboard")
@client_required
def dashboard():
    """The client's balance and currency."""
    account = db.session.get(Account, current_user.account_id)
    return render_template("client/dashboard.html", account=account)
