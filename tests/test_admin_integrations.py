"""The admin's API token and webhook pages, and the token CLI."""
from __future__ import annotations

import re

from billcore import api_tokens, webhooks
from billcore.db import db
from billcore.models import ApiToken, WebhookEndpoint


def _session_of(app, client) -> dict:
    """The client's session as the app decodes it."""
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    return app.session_interface.get_signing_serializer(app).loads(cookie.value) if cookie else {}


def test_admin_creates_a_token_shown_once_and_revokes_it(app, admin_client):
    page = admin_client.post("/admin/api-tokens", data={"name": "Panel", "scopes": ["read", "write"]})
    assert page.status_code == 201
    html = page.get_data(as_text=True)
    token = re.search(r"<code class=\"secret\">(bc_[A-Za-z0-9_-]+)</code>", html).group(1)
    # the session (a signed cookie, its data only encoded) never holds the token
    for cookie in page.headers.getlist("Set-Cookie"):
        name, _, value = cookie.split(";")[0].partition("=")
        if name == app.config["SESSION_COOKIE_NAME"] and value:
            data = app.session_interface.get_signing_serializer(app).loads(value)
            assert token not in repr(data)
    session = _session_of(app, admin_client)
    assert session.get("_user_id") and token not in repr(session)  # a real, decoded session
    row = api_tokens.find_token(token)
    assert row.scopes == "read write" and row.created_by == "admin@test.example" and row.token_hash != token
    listing = admin_client.get("/admin/api-tokens").get_data(as_text=True)
    assert token not in listing and row.prefix in listing and "never" in listing
    assert admin_client.post(f"/admin/api-tokens/{row.id}/revoke").status_code == 302
    assert api_tokens.find_token(token) is None
    assert admin_client.post("/admin/api-tokens", data={"name": "", "scopes": ["read"]}).status_code == 400
    assert admin_client.post("/admin/api-tokens/999/revoke").status_code == 404


def test_clients_cannot_open_the_integration_pages(client_client):
    for path in ("/admin/api-tokens", "/admin/webhooks", "/admin/deliveries"):
        assert client_client.get(path).status_code == 403


def test_admin_registers_an_endpoint_secret_shown_once(app, admin_client):
    page = admin_client.post("/admin/webhooks", data={"url": "https://panel.example.com/hook",
                                                      "description": "Panel", "events": ["payment.paid"]})
    assert page.status_code == 201
    secret = re.search(r"<code class=\"secret\">(whsec_[A-Za-z0-9+/=]+)</code>", page.get_data(as_text=True)).group(1)
    endpoint = db.session.query(WebhookEndpoint).one()
    assert endpoint.events == ["payment.paid"] and webhooks.endpoint_secret(endpoint) == secret
    assert secret not in admin_client.get("/admin/webhooks").get_data(as_text=True)
    refused = admin_client.post("/admin/webhooks", data={"url": "javascript:alert(1)", "events": ["payment.paid"]})
    assert refused.status_code == 400 and "http://" in refused.get_data(as_text=True)
    assert admin_client.post(f"/admin/webhooks/{endpoint.id}/disable").status_code == 302
    db.session.expire_all()
    assert db.session.get(WebhookEndpoint, endpoint.id).active is False
    assert admin_client.get(f"/admin/deliveries?endpoint_id={endpoint.id}").status_code == 200
    assert admin_client.get("/admin/deliveries?endpoint_id=999").status_code == 404


def test_token_cli_creates_lists_and_revokes(app):
    runner = app.test_cli_runner()
    created = runner.invoke(args=["token", "create", "panel", "--scope", "write"])
    assert created.exit_code == 0, created.output
    token = created.output.strip().splitlines()[-1]
    row = api_tokens.find_token(token)
    assert row is not None and row.scopes == "read write"
    listed = runner.invoke(args=["token", "list"])
    assert f"{row.id}  panel  [read write]" in listed.output and token not in listed.output
    assert runner.invoke(args=["token", "revoke", str(row.id)]).exit_code == 0
    db.session.expire_all()
    assert db.session.get(ApiToken, row.id).revoked_at is not None
    assert runner.invoke(args=["token", "revoke", "999"]).exit_code != 0
    assert runner.invoke(args=["token", "create", "x", "--scope", "admin"]).exit_code != 0


def test_webhooks_deliver_command_runs(app):
    result = app.test_cli_runner().invoke(args=["webhooks", "deliver"])
    assert result.exit_code == 0 and "dispatched 0 events" in result.output
