"""The root page, the language switch and the error pages."""
from __future__ import annotations

from zoneinfo import available_timezones

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import SelectField


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


class SettingsForm(FlaskForm):
    """The user's own settings: the language and the time zone of the dates."""

    language = SelectField(_l("Language"), choices=[("en", "English"), ("ru", "Русский")])
    timezone = SelectField(_l("Time zone"))


def _zones() -> list[str]:
    # IANA's canonical areas only (no "Etc/GMT+3"-style or legacy aliases): what a person would pick
    areas = ("Europe/", "Asia/", "America/", "Africa/", "Australia/", "Pacific/", "Atlantic/", "Indian/")
    return sorted(z for z in available_timezones() if z.startswith(areas)) + ["UTC"]


def _zone_label(zone: str) -> str:
    """``Москва — Europe/Moscow``: the zone's city in the reader's language (CLDR), then its IANA name."""
    from babel.dates import get_timezone, get_timezone_location
    from flask_babel import get_locale

    try:
        city = get_timezone_location(get_timezone(zone), locale=str(get_locale() or "en"), return_city=True)
    except (LookupError, ValueError):
        return zone
    return f"{city} — {zone}" if city and zone != "UTC" else zone


@bp.route("/settings", methods=["GET", "POST"])
@login_required
def settings():
    """The logged-in user's language and time zone (dates on every page are shown in it)."""
    from flask import current_app

    form = SettingsForm()
    form.language.choices = [(c, n) for c, n in form.language.choices if c in current_app.config["LANGUAGES"]]
    form.timezone.choices = [(z, _zone_label(z)) for z in _zones()]
    if request.method == "GET":
        form.language.data = current_user.language or current_app.config["BABEL_DEFAULT_LOCALE"]
        form.timezone.data = current_user.timezone or current_app.config["DEFAULT_TIMEZONE"]
    elif form.validate_on_submit():
        current_user.language = form.language.data
        current_user.timezone = form.timezone.data
        db.session.commit()
        flash(_("Your settings were saved."), "success")
        return redirect(url_for(".settings"))
    else:
        return render_template("settings.html", form=form), 400
    return render_template("settings.html", form=form)


@bp.route("/favicon.ico")
def favicon():
    """Browsers ask for /favicon.ico whatever the page links: answer with the icon instead of a 404."""
    return redirect(url_for("static", filename="favicon.svg"), code=301)


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
