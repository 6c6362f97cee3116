"""Fixtures of the Robokassa module's tests: the core's app/users plus a Robokassa method and payment."""
from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path

import pytest

# The core's fixtures live in the source tree's tests/ package, which is importable only from the root.
ROOT = Path(__file__).resolve().parents[3]
if (ROOT / "tests" / "conftest.py").is_file() and str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from billcore.payments import service  # noqa: E402
from pmrobokassa.gateway import clear_currencies_cache
from tests.conftest import (admin_client, admin_user, app, client_client, client_user,  # noqa: F401
                            other_client_user, sqlite_app)
from tests.conftest import add_paymethod

from .helpers import SETTINGS


@pytest.fixture(autouse=True)
def _fresh_currency_cache():
    clear_currencies_cache()
    yield
    clear_currencies_cache()


@pytest.fixture
def method(app):
    """An active Robokassa payment method (MD5, standard URL, live mode)."""
    return add_paymethod("pmrobokassa", dict(SETTINGS))


@pytest.fixture
def payment(app, client_user, method):
    """A new 100.00 RUB payment of the client through the Robokassa method."""
    return service.create_payment(client_user.account_id, method.id, Decimal("100.00"))
