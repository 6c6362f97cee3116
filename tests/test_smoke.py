

def test_login_page_renders(app):
    resp = app.test_client().get("/login")
    assert resp.status_code == 200
    assert b"Log in" in resp.data
    assert resp.headers["X-Frame-Options"] == "DENY"


def test_client_lands_on_dashboard(client_client):
    resp = client_client.get("/dashboard")
    assert resp.status_code == 200
    assert b"0.00 RUB" in resp.data
