"""billcore.sessions: Flask's cookie session with early exits for requests that have none."""
from __future__ import annotations

from billcore.sessions import CookieSessionInterface
from billcore.testing.fixtures import CLIENT, login


def _session_cookies(response) -> list[str]:
    return [h for h in response.headers.getlist("Set-Cookie") if h.startswith("session=")]


def test_the_app_uses_it(app):
    assert isinstance(app.session_interface, CookieSessionInterface)


def test_a_request_without_a_session_cookie_gets_no_cookie(app):
    response = app.test_client().post("/mancgi/rkresult", data={"InvId": "1"})
    assert _session_cookies(response) == []


def test_a_session_is_stored_read_back_and_cleared(app, client_user):
    client = app.test_client()
    assert login(client, *CLIENT).status_code == 302
    assert client.get_cookie("session") is not None
    dashboard = client.get("/dashboard")
    assert dashboard.status_code == 200 and "Cookie" in dashboard.headers.get("Vary", "")
    client.post("/logout")
    assert client.get("/dashboard").status_code == 302  # back to the login page


def test_a_tampered_cookie_is_an_empty_session(app, client_user):
    client = app.test_client()
    login(client, *CLIENT)
    client.set_cookie("session", client.get_cookie("session").value[:-2] + "xx")
    assert client.get("/dashboard").status_code == 302
