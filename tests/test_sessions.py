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


def test_an_empty_session_that_was_read_varies_on_the_cookie(app):
    from flask import session

    @app.route("/test-reads-session")
    def reads_session():
        return "yes" if "anything" in session else "no"

    response = app.test_client().get("/test-reads-session")
    assert response.get_data(as_text=True) == "no" and "Cookie" in response.headers.get("Vary", "")
    assert _session_cookies(response) == []


def test_a_session_emptied_deletes_the_cookie(app, client_user):
    from flask import session

    @app.route("/test-clears-session", methods=["POST"])
    def clears_session():
        session.clear()
        return "cleared"

    app.extensions["csrf"].exempt(clears_session)
    client = app.test_client()
    login(client, *CLIENT)
    response = client.post("/test-clears-session")
    deleted = _session_cookies(response)
    assert deleted and "Expires=Thu, 01 Jan 1970" in deleted[0]
    assert client.get_cookie("session") is None
