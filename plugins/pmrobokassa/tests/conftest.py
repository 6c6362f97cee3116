"""Fixtures of the Robokassa module's tests: billcore's testing kit (``app``, ``client_user``,
``client_client`` ...) plus a Robokassa payment method and payment.

pytest refuses ``pytest_plugins`` in a conftest below the root of the run, so the kit is imported.
"""
from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path

import pytest

from billcore.payments import service
from billcore.testing.fixtures import add_paymethod
from billcore.testing.pytest_plugin import *  # noqa: F401,F403
from pmrobokassa.gateway import clear_currencies_cache

from .fakegateway import FakeGateway, Server
from .helpers import SETTINGS

# Some tests here (the sandbox's) import billcore's own tests/ package, importable only from the root of a
# source checkout; put that root on the path when it is one.
ROOT = Path(__file__).resolve().parents[3]
if (ROOT / "tests" / "conftest.py").is_file() and str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(autouse=True)
def _fresh_currency_cache():
    clear_currencies_cache()
    yield
    clear_currencies_cache()


@pytest.fixture
def fake():
    """A fake Robokassa web service (OpStateExt, Refund API, Recurring) on 127.0.0.1; point a method's
    ``url`` at ``fake.url`` to use it."""
    gateway = FakeGateway()
    with Server(gateway) as server:
        gateway.url = f"{server.base}/rk/Merchant/Index.aspx"
        yield gateway


@pytest.fixture
def method(app):
    """An active Robokassa payment method (MD5, standard URL, live mode)."""
    return add_paymethod("pmrobokassa", dict(SETTINGS))


@pytest.fixture
def payment(app, client_user, method):
    """A new 100.00 RUB payment of the client through the Robokassa method."""
    return service.create_payment(client_user.account_id, method.id, Decimal("100.00"))
