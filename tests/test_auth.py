"""Login, the admin area's guard, CSRF and security headers."""
from __future__ import annotations

import pytest

from tests.conftest import CLIENT, login, make_app

ADMIN_PAGES = ["/admin/"]


@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_admin_pages_refuse_anonymous(app, path):
    resp = app.test_client().get(path)
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]


@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_admin_pages_refuse_clients(client_client, path):
    assert client_client.get(path).status_code == 403


def test_admin_sees_admin_area(admin_client):
    resp = admin_client.get("/admin/")
    assert resp.status_code == 200 and b"Needs attention" in resp.data


def test_client_area_refuses_admins(admin_client):
    assert admin_client.get("/dashboard").status_code == 403


def test_wrong_password_is_refused(app, client_user):
    c = app.test_client()
    resp = login(c, CLIENT[0], "wrong-password")
    assert resp.status_code == 401 and b"Wrong e-mail or password" in resp.data
    assert c.get("/dashboard").status_code == 302


def test_login_redirect_only_to_local_paths(app, client_user):
    c = app.test_client()
    resp = c.post("/login?next=https://evil.example/", data={"email": CLIENT[0], "password": CLIENT[1]})
    assert resp.headers["Location"] == "/dashboard"


def test_passwords_are_hashed_with_a_current_scheme(app, client_user):
    assert client_user.password_hash.startswith(("scrypt:", "pbkdf2:"))
    assert CLIENT[1] not in client_user.password_hash


def test_form_post_without_csrf_token_is_refused(tmp_path, client_user):
    # a separate app with CSRF enabled, on the same database
    from flask import current_app

    app = make_app(tmp_path / "csrf", current_app.config["DATABASE_URL"], WTF_CSRF_ENABLED=True)
    c = app.test_client()
    resp = c.post("/login", data={"email": CLIENT[0], "password": CLIENT[1]})
    assert resp.status_code == 400
    assert c.get("/dashboard").status_code == 302  # not logged in


def test_security_headers(app):
    resp = app.test_client().get("/login")
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["Strict-Transport-Security"].startswith("max-age=")


def test_logout_needs_post(client_client):
    assert client_client.get("/logout").status_code == 405
    assert client_client.post("/logout").status_code == 302
    assert client_client.get("/dashboard").status_code == 302
