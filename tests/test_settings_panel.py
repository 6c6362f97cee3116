"""The user's settings: language and time zone; dates on the pages follow the chosen zone."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from billcore.accounts import find_user
from billcore.db import db
from billcore.models import Payment
from billcore.payments import service
from tests.conftest import CLIENT
from tests.test_checkout import app_config, capp, client_user, method, web  # noqa: F401


def _created_at(payment_id: int, when: datetime) -> None:
    with db.engine.begin() as conn:
        conn.execute(Payment.__table__.update().where(Payment.id == payment_id).values(created_at=when))


def test_dates_follow_the_users_time_zone(capp, web, client_user, method):  # noqa: F811
    p = service.create_payment(client_user.account_id, method.id, Decimal("100"))
    _created_at(p.id, datetime(2026, 3, 1, 22, 30, tzinfo=timezone.utc))
    # the configured default (Europe/Moscow, UTC+3): already the next day
    assert "2026-03-02 01:30 MSK" in web.get(f"/payments/{p.id}").get_data(as_text=True)
    page = web.get("/settings").get_data(as_text=True)
    assert '<option selected value="Europe/Moscow">' in page and "Moscow — Europe/Moscow" in page
    r = web.post("/settings", data={"language": "ru", "timezone": "Asia/Vladivostok"})
    assert r.status_code == 302
    db.session.expire_all()
    assert find_user(CLIENT[0]).timezone == "Asia/Vladivostok"
    html = web.get(f"/payments/{p.id}").get_data(as_text=True)
    assert "02.03.2026 08:30" in html  # UTC+10, and the Russian way of writing dates
    assert "Владивосток — Asia/Vladivostok" in web.get("/settings").get_data(as_text=True)
    # an unknown zone is refused and nothing changes
    assert web.post("/settings", data={"language": "en", "timezone": "Mars/Olympus"}).status_code == 400
    db.session.expire_all()
    assert find_user(CLIENT[0]).timezone == "Asia/Vladivostok"


def test_the_default_zone_comes_from_the_configuration(capp, web, client_user, method):  # noqa: F811
    capp.config["DEFAULT_TIMEZONE"] = "UTC"
    p = service.create_payment(client_user.account_id, method.id, Decimal("100"))
    _created_at(p.id, datetime(2026, 3, 1, 22, 30, tzinfo=timezone.utc))
    assert "2026-03-01 22:30 UTC" in web.get(f"/payments/{p.id}").get_data(as_text=True)
