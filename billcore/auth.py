"""Logging in and out (Flask-Login) and the guards of the admin and client areas."""
from __future__ import annotations

import secrets
from functools import wraps
from urllib.parse import urlsplit

from flask import Blueprint, Flask, abort, current_app, flash, g, redirect, render_template, request, session, url_for
from flask_babel import lazy_gettext as _l
from flask_babel import gettext as _
from flask_login import LoginManager, current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import func, select
from wtforms import EmailField, PasswordField, SubmitField
from wtforms.validators import DataRequired, Email, Length

from werkzeug.security import check_password_hash, generate_password_hash

from .db import db
from .filters import has_control_characters
from .hashslots import password_slot
from .limits import limiter, retry_after
from .models import User, password_hash_method

bp = Blueprint("auth", __name__)
login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = _l("Please log in to open this page.")


@login_manager.user_loader
def load_user(session_id: str) -> User | None:
    """Flask-Login's loader: the active user of a session id ``<user id>.<session version>``, or None.

    Logging out, a new password or a deactivation raises the user's session version, and every session
    made before it (a copied cookie too) stops being a login: sessions are ended on the server, not only
    by the browser forgetting its cookie.
    """
    user_id, _dot, version = session_id.partition(".")
    if not (user_id.isascii() and user_id.isdigit() and version.isascii() and version.isdigit()) \
            or len(user_id) > 10:
        return None
    user = db.session.get(User, int(user_id))
    if user is None or not user.is_active or user.session_version != int(version):
        return None
    return user


class LoginForm(FlaskForm):
    """E-mail and password."""

    email = EmailField(_l("E-mail"), validators=[DataRequired(), Email(check_deliverability=False), Length(max=254)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=200)])
    submit = SubmitField(_l("Log in"))


def safe_next(target: str | None) -> str | None:
    """``target`` when it is a local path that is safe to redirect to, else None.

    Refused: other sites (``//host``, ``/\\host`` which browsers read as ``//host``, a scheme) and
    control characters (a CR/LF would be a header injection; the redirect would fail).
    """
    if not target or len(target) > 2000 or has_control_characters(target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target[1:2] in ("/", "\\"):
        return None
    return target


_DUMMY_HASHES: dict[str, str] = {}


def _dummy_hash() -> str:
    """A hash made like real ones (the same method), so that checking a password for an unknown e-mail
    costs the same as for a known one."""
    method = password_hash_method()
    if method not in _DUMMY_HASHES:
        _DUMMY_HASHES[method] = generate_password_hash(secrets.token_hex(16), method=method)
    return _DUMMY_HASHES[method]


def _login_account() -> str:
    """The rate-limit key of the account a login attempt names (its e-mail, normalised and cut)."""
    return "login-account:" + (request.form.get("email") or "").strip().lower()[:254]


def _login_address() -> str:
    from .limits import client_address

    return "login-address:" + client_address()


def _failed(response) -> bool:
    """Only refused logins count against the limits."""
    return response.status_code == 401


def _account_limit() -> str:
    return current_app.config["LOGIN_LIMIT_PER_ACCOUNT"]


def _address_limit() -> str:
    return current_app.config["LOGIN_LIMIT_PER_ADDRESS"]


def home_for(user: User) -> str:
    """Where a user lands after logging in."""
    return url_for("admin.index") if user.is_admin else url_for("checkout.dashboard")


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_address_limit, key_func=_login_address, methods=["POST"], deduct_when=_failed)
@limiter.limit(_account_limit, key_func=_login_account, methods=["POST"], deduct_when=_failed)
def login():
    """One login page for admins and clients.

    Refused attempts count per e-mail and per client address (``LOGIN_LIMIT_PER_ACCOUNT``,
    ``LOGIN_LIMIT_PER_ADDRESS``); past either limit the answer is 429 without checking the password.
    An unknown e-mail costs a password hash as well, so timing does not tell which e-mails exist; at
    most ``LOGIN_HASH_SLOTS`` checks run at once on a host (:mod:`billcore.hashslots`), so guessing
    cannot take every worker from the gateways' notifications.
    """
    if current_user.is_authenticated:
        return redirect(home_for(current_user))
    form = LoginForm()
    if form.validate_on_submit():
        with password_slot() as free:
            if not free:  # every slot is checking a password: answer at once rather than queue workers
                flash(_("Too many people are logging in right now. Please try again in a moment."), "error")
                retry_after(1)
                return render_template("login.html", form=form), 429
            email = form.email.data.strip().lower()
            user = db.session.execute(select(User).where(func.lower(User.email) == email)).scalar_one_or_none()
            if user is None:
                check_password_hash(_dummy_hash(), form.password.data)
                ok = False
            else:
                ok = user.check_password(form.password.data) and user.is_active
        if ok:
            session.clear()  # a fresh session: nothing from before the login carries over
            session.permanent = True  # expires after PERMANENT_SESSION_LIFETIME, checked on the server too
            login_user(user)
            return redirect(safe_next(request.args.get("next")) or home_for(user))
        flash(_("Wrong e-mail or password."), "error")
        return render_template("login.html", form=form), 401
    return render_template("login.html", form=form), 400 if form.errors else 200


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    """Log out (a POST with a CSRF token, so no other site can log a user out) and end every session of
    the user, on every browser: a copy of the cookie no longer logs in."""
    from .accounts import end_sessions

    end_sessions(current_user)
    logout_user()
    flash(_("You are logged out."), "info")
    return redirect(url_for("auth.login"))


def admin_required(view):
    """Only administrators; anonymous users are sent to log in, clients get 403."""

    @wraps(view)
    @login_required
    def wrapped(*args, **kwargs):
        if not current_user.is_admin:
            abort(403)
        return view(*args, **kwargs)

    return wrapped


def client_required(view):
    """Only client users with an account; anonymous users are sent to log in, admins get 403."""

    @wraps(view)
    @login_required
    def wrapped(*args, **kwargs):
        if current_user.is_admin or current_user.account_id is None:
            abort(403)
        return view(*args, **kwargs)

    return wrapped


def too_many_attempts(error):
    """429 from the login limits: the login page again, with a clear message and nothing checked. Under
    the API a problem instead, and the session is not touched (an API client has none)."""
    from .api import problems

    if problems.is_api_request():
        return problems.problem_response(429, "Too many requests; wait a little and try again.",
                                         code="too-many-requests")
    flash(_("Too many failed login attempts. Please wait a few minutes and try again."), "error")
    # Flask-Limiter adds Retry-After (RATELIMIT_HEADERS_ENABLED)
    return render_template("login.html", form=LoginForm(formdata=None)), 429


def no_store(response):
    """Pages behind a login are never kept by the browser's or a proxy's cache (``Cache-Control:
    no-store``): the next person at a shared computer must not find them in the back button's history."""
    user = g.get("_login_user")
    if user is not None and user.is_authenticated and "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask) -> None:
    """Set up Flask-Login, the login routes, the 429 page and ``no-store`` for logged-in pages."""
    login_manager.init_app(app)
    app.register_blueprint(bp)
    app.register_error_handler(429, too_many_attempts)
    app.after_request(no_store)
