"""New passwords are hashed with scrypt; only a TESTING app that asks for it gets the cheap test hash."""
from __future__ import annotations

from werkzeug.security import check_password_hash

from billcore import create_app
from billcore.accounts import create_admin
from billcore.db import db
from billcore.models import User


def _app(tmp_path, **config):
    settings = {"INSTANCE_PATH": str(tmp_path / "instance"),
                "DATABASE_URL": f"sqlite:///{tmp_path / 'pw.sqlite'}", "TEST_CHEAP_PASSWORD_HASH": True}
    settings.update(config)
    app = create_app(settings)
    with app.app_context():
        db.create_all()
    return app


def test_production_ignores_the_cheap_test_hash_setting(tmp_path):
    app = _app(tmp_path)  # TEST_CHEAP_PASSWORD_HASH set, but not TESTING
    with app.app_context():
        user = create_admin("root@example.com", "a-long-password")
        assert user.password_hash.startswith("scrypt:")
        assert check_password_hash(user.password_hash, "a-long-password")


def test_testing_app_without_the_setting_keeps_scrypt(tmp_path):
    app = _app(tmp_path, TESTING=True, TEST_CHEAP_PASSWORD_HASH=False)
    with app.app_context():
        assert create_admin("root@example.com", "a-long-password").password_hash.startswith("scrypt:")


def test_fixtures_use_the_cheap_hash_and_logins_still_check_it(app, client_user, client_client):
    assert client_user.password_hash.startswith("pbkdf2:sha256:1$")
    assert client_client.get("/dashboard").status_code == 200


def test_hash_outside_an_app_context_is_scrypt():
    user = User(email="x@example.com", role="admin")
    user.set_password("a-long-password")
    assert user.password_hash.startswith("scrypt:") and user.check_password("a-long-password")
