"""The root page, the language switch and the error pages."""
from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for
from flask_login import current_user

from .api.problems import from_http_exception, is_api_request
from .auth import home_for
from .db import db

bp = Blueprint("main", __name__)


@bp.route("/")
def index():
    """Send a visitor to their area, or to the login page."""
    if current_user.is_authenticated:
        return redirect(home_for(current_user))
    return redirect(url_for("auth.login"))


@bp.route("/language/<code>", methods=["POST"])
def set_language(code: str):
    """Remember the chosen language for the logged-in user."""
    from flask import current_app

    if code in current_app.config["LANGUAGES"] and current_user.is_authenticated:
        current_user.language = code
        db.session.commit()
    target = request.referrer or url_for("main.index")
    if not target.startswith(request.host_url):
        target = url_for("main.index")
    return redirect(target)


@bp.app_errorhandler(403)
def forbidden(error):
    """Refused: the user may not open this page."""
    if is_api_request():
        return from_http_exception(error)
    return render_template("error.html", code=403, error=error), 403


@bp.app_errorhandler(404)
def not_found(error):
    """No such page."""
    if is_api_request():
        return from_http_exception(error)
    return render_template("error.html", code=404, error=error), 404
