"""A property-based run of schemathesis against the live API and its published OpenAPI document: no server
error, no response that breaks the document, for valid and invalid requests to every operation.

Examples are bounded (``EXAMPLES`` per operation and mode) so the run stays well under a minute.
"""
from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from billcore import api_tokens
from billcore.db import db
from billcore.models import Account, RecurringProfile
from billcore.payments import service
from tests.conftest import add_paymethod
from tests.live import serve

EXAMPLES = 12
FAKE = {"pmfakepay": "tests.fake_checkout_module"}


@pytest.fixture
def app_config():
    return {"EXTRA_MODULES": FAKE}


def _seed():
    """Rows with small ids, so generated ids often hit something real."""
    account = Account(name="Seed", currency="RUB", balance=Decimal("500.00"))
    db.session.add(account)
    db.session.commit()
    method = add_paymethod("pmfakepay", {"secret": "seed-secret"}, name="Card", recurring=True)
    paid = service.create_payment(account.id, method.id, "100.00", source="test")
    service.set_paid(paid.id, amount=Decimal("100.00"), currency="RUB", source="test")
    service.create_payment(account.id, method.id, "20.00", source="test")
    db.session.add(RecurringProfile(account_id=account.id, paymethod_id=method.id, parent_payment_id=paid.id,
                                    rule="threshold", amount=Decimal("100.00"), threshold=Decimal("10.00"),
                                    monthly_max=Decimal("1000.00"), status="active"))
    db.session.commit()


def test_schemathesis_finds_no_server_error_and_no_response_breaking_the_document(app):
    from tests import fake_checkout_module as fake

    fake.reset()
    _seed()
    _, token = api_tokens.create_token("schemathesis", ["read", "write"])
    # the token through the document's security scheme: schemathesis then knows when a case leaves it out
    config = schemathesis.Config.from_dict({"auth": {"openapi": {"bearer": {"bearer": token}}}})
    with serve(app) as live:
        schema = schemathesis.openapi.from_url(live + "/api/v1/openapi.json", config=config)
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) == 18
        failures, answered = [], {}
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                          suppress_health_check=list(HealthCheck))
                @given(case=operation.as_strategy(generation_mode=mode))
                def run(case):  # run() is called at once, inside this iteration: binding late is safe
                    db.session.rollback()  # the seeding session must not hold SQLite's snapshot
                    if mode is GenerationMode.POSITIVE and (case.headers or {}).get("Idempotency-Key"):  # noqa: B023
                        # a client sends a new key with each new request; generated cases would reuse a
                        # few short keys for different bodies, which is refused by design (test_api.py)
                        case.headers["Idempotency-Key"] = uuid.uuid4().hex
                    response = case.call_and_validate(base_url=live)
                    answered.setdefault(operation.label, set()).add(response.status_code)  # noqa: B023

                try:
                    run()
                except Exception as exc:  # collect every operation's failure, then report them all
                    failures.append(f"{operation.label} [{mode.value}]: {exc}")
        assert not failures, "\n\n".join(failures)
    # the token was used: every operation got past authentication, and most did their job at least once
    assert all(codes - {401} for codes in answered.values()), answered
    succeeded = {label for label, codes in answered.items() if any(200 <= c < 300 for c in codes)}
    assert len(succeeded) >= 12, answered
