"""Logging in and out (Flask-Login) and the guards of the admin and client areas."""
from __future__ import annotations

from functools import wraps
from urllib.parse import urlsplit

from flask import Blueprint, Flask, abort, flash, redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l
from flask_babel import gettext as _
from flask_login import LoginManager, current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import func, select
from wtforms import EmailField, PasswordField, SubmitField
from wtforms.validators import DataRequired, Email, Length

from .db import db
from .models import User

bp = Blueprint("auth", __name__)
login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = _l("Please log in to open this page.")


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    """Flask-Login's loader: the user with this id, or None."""
    return db.session.get(User, int(user_id)) if user_id.isdigit() else None


class LoginForm(FlaskForm):
    """E-mail and password."""

    email = EmailField(_l("E-mail"), validators=[DataRequired(), Email(check_deliverability=False), Length(max=254)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=200)])
    submit = SubmitField(_l("Log in"))


def _safe_next(target: str | None) -> str | None:
    """Only a local path is a safe place to go after logging in."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


def home_for(user: User) -> str:
    """Where a user lands after logging in."""
    return url_for("admin.index") if user.is_admin else url_for("checkout.dashboard")


@bp.route("/login", methods=["GET", "POST"])
def login():
    """One login page for admins and clients."""
    if current_user.is_authenticated:
        return redirect(home_for(current_user))
    form = LoginForm()
    if form.validate_on_submit():
        email = form.email.data.strip().lower()
        user = db.session.execute(select(User).where(func.lower(User.email) == email)).scalar_one_or_none()
        if user is not None and user.is_active and user.check_password(form.password.data):
            login_user(user)
            return redirect(_safe_next(request.args.get("next")) or home_for(user))
        flash(_("Wrong e-mail or password."), "error")
        return render_template("login.html", form=form), 401
    return render_template("login.html", form=form), 400 if form.errors else 200


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    """Log out (a POST with a CSRF token, so no other site can log a user out)."""
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


def init_app(app: Flask) -> None:
    """Set up Flask-Login and the login routes."""
    login_manager.init_app(app)
    app.register_blueprint(bp)
