"""The admin area (``/admin/...``): one blueprint, one module per page group."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin")

from . import accounts, index, integrations, payments, paymethod_wizard, paymethods, recurring  # noqa: E402,F401  (views register themselves on ``bp``)
