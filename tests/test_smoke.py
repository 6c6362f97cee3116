

def test_login_page_renders(app):
    resp = app.test_client().get("/login")
    assert resp.status_code == 200
    assert b"Log in" in resp.data
    assert resp.headers["X-Frame-Options"] == "DENY"


def test_client_lands_on_dashboard(client_client):
    resp = client_client.get("/dashboard")
    assert resp.status_code == 200
    assert b"0.00 RUB" in resp.data


def test_security_headers_on_every_response_and_a_views_own_value_is_kept(app):
    from billcore.security import HEADERS

    @app.route("/test-own-frame-policy")
    def own_frame_policy():
        return "framed", 200, {"x-frame-options": "SAMEORIGIN", "Content-Type": "text/plain"}

    resp = app.test_client().get("/test-own-frame-policy")
    assert resp.headers.getlist("X-Frame-Options") == ["SAMEORIGIN"]
    for name, value in HEADERS.items():
        if name != "X-Frame-Options":
            assert resp.headers.getlist(name) == [value]
    plain = app.test_client().post("/mancgi/rkresult", data={})  # a gateway callback's text answer too
    assert all(plain.headers.getlist(name) == [value] for name, value in HEADERS.items())
