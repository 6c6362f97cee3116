"""What an attacker tries on the core, on SQLite and PostgreSQL: odd ids and filters, sessions that
outlive a logout, password guessing, redirects with control characters, cacheable private pages, weak
passwords, world-readable instance files, log lines forged by values, database waits."""
from __future__ import annotations

import stat
import time
import uuid
from types import SimpleNamespace

import itsdangerous.timed
import pytest
from werkzeug.routing import IntegerConverter

from billcore import auth as auth_module
from billcore.accounts import WeakPassword, change_password, check_password, create_client, set_active
from billcore.args import RowIdConverter
from billcore.db import db
from billcore.logs import file_logger
from billcore.models import User
from billcore.testing.fixtures import ADMIN, CLIENT, login, make_app

# ------------------------------------------------------------------------------------- ids and filters

CLIENT_ID_URLS = ["/payments/2147483648", "/payments/2147483648/return/success", "/payments/2147483648/status.json",
                  "/payments/2147483648/recurring", "/payments/99999999999", "/payments/0"]
CLIENT_ID_POSTS = ["/payments/2147483648/pay", "/payments/2147483648/cancel",
                   "/payments/2147483648/recurring/prepare", "/recurring/2147483648/cancel"]
ADMIN_ID_URLS = ["/admin/payments/2147483648", "/admin/accounts/99999999999", "/admin/paymethods/99999999999",
                 "/admin/paymethods/99999999999/edit", "/admin/paymethods/99999999999/delete"]
ADMIN_ID_POSTS = ["/admin/payments/2147483648/check", "/admin/payments/2147483648/refund",
                  "/admin/payments/2147483648/mark-paid", "/admin/payments/2147483648/cancel",
                  "/admin/payments/1/refunds/2147483648/follow", "/admin/payments/1/refunds/99999999999/settle",
                  "/admin/paymethods/99999999999/disable", "/admin/paymethods/99999999999/enable",
                  "/admin/recurring/2147483648/cancel"]


def test_client_urls_with_ids_beyond_any_row_are_404(client_client):
    for url in CLIENT_ID_URLS:
        assert client_client.get(url).status_code == 404, url
    for url in CLIENT_ID_POSTS:
        assert client_client.post(url).status_code == 404, url


def test_admin_urls_with_ids_beyond_any_row_are_404(admin_client):
    for url in ADMIN_ID_URLS:
        assert admin_client.get(url).status_code == 404, url
    for url in ADMIN_ID_POSTS:
        assert admin_client.post(url).status_code == 404, url


def test_every_route_uses_the_one_id_converter(app):
    for rule in app.url_map.iter_rules():
        for name, converter in (rule._converters or {}).items():
            assert not isinstance(converter, IntegerConverter) or isinstance(converter, RowIdConverter), \
                (rule.rule, name)
    assert any(isinstance(c, RowIdConverter) for r in app.url_map.iter_rules() for c in r._converters.values())


@pytest.mark.parametrize("url", ["/admin/payments?amount_min=1e999999", "/admin/payments?amount_max=-1e999999",
                                 "/admin/payments?date_to=9999-12-31", "/admin/payments?date_from=0001-01-01",
                                 "/admin/payments?account_id=99999999999", "/admin/accounts?q=%00",
                                 "/admin/accounts?q=a%0d%0ab"])
def test_filters_the_database_cannot_take_are_400(admin_client, url):
    assert admin_client.get(url).status_code == 400


def test_usable_extreme_filters_still_work(admin_client):
    for url in ("/admin/payments?date_to=9998-12-31", "/admin/payments?amount_min=9999999999999999.99",
                "/admin/accounts?q=%D0%98%D0%B2%D0%B0%D0%BD"):
        assert admin_client.get(url).status_code == 200, url


@pytest.mark.parametrize("target", ["/dashboard%0d%0aX:%20y", "/dashboard%00", "/%5Cevil.example",
                                    "//evil.example", "https://evil.example/"])
def test_login_refuses_an_unsafe_next(app, client_user, target):
    response = app.test_client().post(f"/login?next={target}", data={"email": CLIENT[0], "password": CLIENT[1]})
    assert response.status_code == 302 and response.headers["Location"] == "/dashboard"


def test_login_follows_a_local_next(app, client_user):
    response = app.test_client().post("/login?next=/payments%3Fbefore%3D5", data={"email": CLIENT[0],
                                                                                   "password": CLIENT[1]})
    assert response.headers["Location"] == "/payments?before=5"


# ------------------------------------------------------------------------------------- sessions


def _copy(app, client):
    """Another browser holding a copy of ``client``'s session cookie."""
    copy = app.test_client()
    copy.set_cookie("session", client.get_cookie("session").value)
    return copy


def test_logout_ends_every_session_of_the_user(app, admin_client):
    saved = _copy(app, admin_client)
    assert saved.get("/admin/paymethods").status_code == 200
    admin_client.post("/logout")
    assert saved.get("/admin/paymethods").status_code == 302  # to the login page
    assert saved.post("/admin/paymethods/1/disable").status_code == 302
    assert login(app.test_client(), *ADMIN).status_code == 302  # logging in again works


def test_a_new_password_ends_every_session(app, client_client, client_user):
    saved = _copy(app, client_client)
    change_password(db.session.get(User, client_user.id), "another-pass-7")
    assert saved.get("/dashboard").status_code == 302
    assert login(app.test_client(), CLIENT[0], "another-pass-7").status_code == 302


def test_deactivation_ends_every_session_and_refuses_logins(app, client_client, client_user):
    saved = _copy(app, client_client)
    set_active(db.session.get(User, client_user.id), False)
    assert saved.get("/dashboard").status_code == 302
    assert login(app.test_client(), *CLIENT).status_code == 401


def test_session_lifetime_is_enforced_on_the_server(client_user, app, monkeypatch):
    app.config["PERMANENT_SESSION_LIFETIME"] = 1
    c = app.test_client()
    assert login(c, *CLIENT).status_code == 302
    assert c.get("/dashboard").status_code == 200
    # Two seconds on, for the server only: its check of the cookie's signed timestamp reads itsdangerous's
    # clock, while the test client, on the real one, still holds and sends the cookie.
    later = time.time() + 2.1
    monkeypatch.setattr(itsdangerous.timed, "time", SimpleNamespace(time=lambda: later))
    assert c.get("/dashboard").status_code == 302


# ------------------------------------------------------------------------------------- login limits


def test_failed_logins_per_account_are_limited_and_the_right_password_then_waits(app, client_user):
    app.config["LOGIN_LIMIT_PER_ACCOUNT"] = "3 per minute"
    c = app.test_client()
    for _ in range(3):
        assert login(c, CLIENT[0], "wrong-password-1").status_code == 401
    refused = login(c, *CLIENT)
    assert refused.status_code == 429 and "Retry-After" in refused.headers
    assert "Too many failed login attempts" in refused.get_data(as_text=True)
    assert login(app.test_client(), ADMIN[0], "x-wrong-pass").status_code == 401  # other accounts: not yet


def test_failed_logins_per_address_are_limited(app, client_user):
    app.config["LOGIN_LIMIT_PER_ADDRESS"] = "4 per minute"
    c = app.test_client()
    for i in range(4):
        assert login(c, f"user{i}@test.example", "wrong-password-1").status_code == 401
    assert login(c, *CLIENT).status_code == 429
    other = app.test_client()
    assert other.post("/login", data={"email": CLIENT[0], "password": CLIENT[1]},
                      environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 302


def test_the_429_message_is_translated(app, client_user):
    app.config["LOGIN_LIMIT_PER_ACCOUNT"] = "1 per minute"
    c = app.test_client()
    login(c, CLIENT[0], "wrong-password-1")
    response = c.post("/login", data={"email": CLIENT[0], "password": "wrong-password-1"},
                      headers={"Accept-Language": "ru"})
    assert response.status_code == 429 and "Слишком много неудачных попыток входа" in response.get_data(as_text=True)


def test_login_limits_shared_by_several_workers_through_redis(tmp_path, app):
    """Two apps (two workers or hosts) with one Redis: their failures add up."""
    redis = pytest.importorskip("redis")
    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=1).ping()
    except redis.exceptions.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    settings = {"RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379", "RATELIMIT_KEY_PREFIX": uuid.uuid4().hex,
                "LOGIN_LIMIT_PER_ACCOUNT": "4 per minute"}
    # an e-mail of this run only: Redis keeps the counts of earlier runs (the limiter reads its key
    # prefix once per process, as one worker would)
    email, password = f"{uuid.uuid4().hex[:12]}@test.example", "shared-limit-pass-1"
    create_client(email, password)
    first, second = (make_app(tmp_path / name, app.config["DATABASE_URL"], **settings) for name in ("w1", "w2"))
    for worker in (first, second, first, second):
        assert login(worker.test_client(), email, "wrong-password-1").status_code == 401
    assert login(first.test_client(), email, password).status_code == 429
    assert login(second.test_client(), email, password).status_code == 429


def test_an_unknown_email_costs_a_password_hash_too(app, client_user, monkeypatch):
    checked = []
    real = auth_module.check_password_hash
    monkeypatch.setattr(auth_module, "check_password_hash", lambda h, p: checked.append(h) or real(h, p))
    assert login(app.test_client(), "nobody@test.example", "wrong-password-1").status_code == 401
    # the same method (and so the same cost) as the real users' hashes
    assert len(checked) == 1 and checked[0].split("$")[0] == client_user.password_hash.split("$")[0]


# ------------------------------------------------------------------------------------- pages


def test_pages_behind_a_login_are_not_stored(app, client_client):
    assert client_client.get("/dashboard").headers["Cache-Control"] == "no-store"
    assert client_client.get("/payments").headers["Cache-Control"] == "no-store"
    assert "no-store" not in app.test_client().get("/login").headers.get("Cache-Control", "")


def test_admin_pages_are_not_stored(admin_client):
    assert admin_client.get("/admin/payments").headers["Cache-Control"] == "no-store"


# ------------------------------------------------------------------------------------- passwords


@pytest.mark.parametrize("password", ["short-1", "payer@test.example", "PAYER@test.example", "password123",
                                      "qwertyuiop", "x" * 201])
def test_the_password_policy_refuses(app, password):
    with pytest.raises(WeakPassword):
        check_password(password, "payer@test.example")
    with pytest.raises(WeakPassword):
        create_client("payer@test.example", password)


def test_the_password_policy_accepts_a_decent_password(app):
    check_password("correct horse battery", "payer@test.example")


def test_cli_reads_the_password_from_the_environment_or_stdin_never_argv(app, monkeypatch):
    runner = app.test_cli_runner()
    refused = runner.invoke(args=["create-admin", "a@test.example", "--password", "long-enough-1"])
    assert refused.exit_code != 0 and "No such option" in refused.output
    weak = runner.invoke(args=["create-admin", "a@test.example"], input="1\n")
    assert weak.exit_code != 0 and "at least 10 characters" in weak.output
    assert runner.invoke(args=["create-admin", "a@test.example"], input="long-enough-1\n").exit_code == 0
    monkeypatch.setenv("BILLCORE_PASSWORD", "from-the-env-1")
    assert runner.invoke(args=["create-client", "b@test.example"]).exit_code == 0
    assert login(app.test_client(), "b@test.example", "from-the-env-1").status_code == 302


# ------------------------------------------------------------------------------------- files and logs


def test_instance_files_are_private(tmp_path):
    app = make_app(tmp_path, "", DATABASE_URL=None)
    instance = tmp_path / "instance"
    with app.app_context():
        file_logger("hardening", app).info("written")
    for path, mode in ((instance, 0o700), (instance / "billcore.sqlite", 0o600), (instance / "secret_key", 0o600),
                       (instance / "var", 0o700), (instance / "var" / "hardening.log", 0o600)):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path
    app.extensions["billcore.file_loggers"]["hardening"].handlers[0].close()


@pytest.mark.parametrize("value", ["a\u2028b", "a\x85b", "a\nb", "x outcome=credited amount=1", 'q"uote\\'])
def test_log_values_cannot_forge_lines_or_fields(app, value):
    from pmrobokassa.common import log_line

    log_line("forged", 7, "rejected", note=value)
    file_logger("forged").info("payment %s said %s", 7, value)
    text = (app.instance_path and __import__("pathlib").Path(app.config["LOG_DIR"]) / "forged.log").read_text("utf-8")
    lines = text.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].endswith(' payment=7 outcome=rejected note="' + value.replace("\\", "\\\\").replace('"', '\\"')
                             .replace("\n", "\\n").replace("\u2028", "\\u2028").replace("\x85", "\\x85") + '"')
    assert " outcome=credited" not in lines[1].replace('"x outcome=credited', "")


# ------------------------------------------------------------------------------------- database waits


def test_database_waits_end_well_before_the_worker_timeout(app):
    worker = app.config["WORKER_TIMEOUT_SECONDS"] * 1000
    with db.engine.connect() as conn:
        if db.engine.dialect.name == "sqlite":
            waits = [conn.exec_driver_sql("PRAGMA busy_timeout").scalar()]
        else:
            waits = [int(conn.exec_driver_sql(f"SELECT setting FROM pg_settings WHERE name = '{name}'").scalar())
                     for name in ("lock_timeout", "statement_timeout")]  # in milliseconds
    assert all(0 < wait <= worker / 2 for wait in waits), waits



def test_an_admin_deactivating_a_client_ends_its_sessions(app, admin_user, client_user):
    payer = app.test_client()
    assert login(payer, *CLIENT).status_code == 302
    admin = app.test_client()
    assert login(admin, *ADMIN).status_code == 302
    page = admin.get(f"/admin/accounts/{client_user.account_id}").get_data(as_text=True)
    assert "Deactivate and end all sessions" in page
    response = admin.post(f"/admin/users/{client_user.id}/active", data={"active": "0"})
    assert response.status_code == 302
    assert payer.get("/dashboard").status_code == 302
    assert login(app.test_client(), *CLIENT).status_code == 401
    assert admin.post(f"/admin/users/{client_user.id}/active", data={"active": "1"}).status_code == 302
    assert login(app.test_client(), *CLIENT).status_code == 302
    assert admin.post(f"/admin/users/{admin_user.id}/active", data={"active": "0"}).status_code == 404
    assert admin.post("/admin/users/99999999999/active", data={"active": "0"}).status_code == 404


def test_cli_new_password_and_deactivation_end_sessions(app, client_client, client_user):
    runner = app.test_cli_runner()
    saved = _copy(app, client_client)
    result = runner.invoke(args=["user", "set-password", CLIENT[0]], input="brand-new-pass-3\n")
    assert result.exit_code == 0, result.output
    assert saved.get("/dashboard").status_code == 302
    fresh = app.test_client()
    assert login(fresh, CLIENT[0], "brand-new-pass-3").status_code == 302
    assert runner.invoke(args=["user", "deactivate", CLIENT[0]]).exit_code == 0
    assert fresh.get("/dashboard").status_code == 302
    assert runner.invoke(args=["user", "set-password", CLIENT[0]], input="123456\n").exit_code != 0


def test_password_checks_beyond_the_hosts_slots_are_answered_at_once(app, client_user, monkeypatch):
    """Guessing from many addresses at random e-mails passes every per-address and per-account limit:
    the host's password-check slots keep it from taking every worker (bench/hardening.py)."""
    import fcntl
    import os
    from pathlib import Path

    checked = []
    real = auth_module.check_password_hash
    monkeypatch.setattr(auth_module, "check_password_hash", lambda h, p: checked.append(h) or real(h, p))
    folder = Path(app.instance_path) / "run"
    folder.mkdir(exist_ok=True)
    holder = os.open(folder / "login-slot-0.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(holder, fcntl.LOCK_EX)  # another worker is checking a password
    try:
        started = time.monotonic()
        busy = login(app.test_client(), *CLIENT)
        assert busy.status_code == 429 and busy.headers["Retry-After"] == "1"
        assert "Too many people are logging in right now" in busy.get_data(as_text=True)
        assert checked == [] and time.monotonic() - started < 1
    finally:
        os.close(holder)
    assert login(app.test_client(), *CLIENT).status_code == 302  # the slot is free again


def test_password_checks_per_host_are_rate_limited(app, client_user):
    app.config["LOGIN_HASH_RATE"] = "2/minute"
    assert login(app.test_client(), "nobody@test.example", "wrong-password-1").status_code == 401
    assert login(app.test_client(), "nobody2@test.example", "wrong-password-1").status_code == 401
    assert login(app.test_client(), *CLIENT).status_code == 429


def test_an_unreachable_limit_storage_does_not_break_logins(tmp_path, app):
    """Redis down: logins still work (counted in memory meanwhile), never a 500."""
    broken = make_app(tmp_path / "broken", app.config["DATABASE_URL"], RATELIMIT_STORAGE_URI="redis://127.0.0.1:1",
                      LOGIN_LIMIT_PER_ACCOUNT="2 per minute")
    create_client(*CLIENT)
    for expected in (401, 401, 429):
        assert login(broken.test_client(), CLIENT[0], "wrong-password-1").status_code == expected


def test_a_429_under_the_api_is_a_problem_and_leaves_the_session_alone(app):
    from flask import session
    from werkzeug.exceptions import TooManyRequests

    with app.test_request_context("/api/v1/accounts"):
        response = app.make_response(app.handle_user_exception(TooManyRequests()))
        assert response.status_code == 429 and response.mimetype == "application/problem+json"
        assert response.get_json()["status"] == 429 and "<html" not in response.get_data(as_text=True)
        assert not session.modified and "_flashes" not in session
    with app.test_request_context("/login"):  # the pages keep the login page with its message
        response = app.make_response(app.handle_user_exception(TooManyRequests()))
        assert response.status_code == 429 and "Too many failed login attempts" in response.get_data(as_text=True)
