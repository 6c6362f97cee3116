"""billcore: a billing core for hosting providers with payment modules discovered through pluggy."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import Flask

from .hookspecs import hookimpl

__all__ = ["create_app", "hookimpl"]

PACKAGE_DIR = Path(__file__).resolve().parent


def _template_folder() -> str:
    """Installed: ``billcore/templates`` inside the package; source checkout: the top-level folder."""
    inside = PACKAGE_DIR / "templates"
    if (inside / "base.html").is_file():
        return str(inside)
    return str(PACKAGE_DIR.parent / "templates")


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Create a billcore application (the Flask app factory).

    The instance folder is ``BILLCORE_INSTANCE_PATH`` when set (or ``test_config['INSTANCE_PATH']``),
    else ``instance/`` beside the source tree or the current directory's ``instance/`` when installed.
    """
    from . import admin, args, auth, cli, config, db, i18n, limits, logs, main, plugins, security, sessions, templating
    from .checkout import views as checkout_views

    instance_path = (test_config or {}).get("INSTANCE_PATH") or os.environ.get("BILLCORE_INSTANCE_PATH")
    if not instance_path:
        source_instance = PACKAGE_DIR.parent / "instance"
        instance_path = str(source_instance if (PACKAGE_DIR.parent / "setup.py").is_file()
                            else Path.cwd() / "instance")
    app = Flask(__name__, instance_path=str(Path(instance_path).resolve()), instance_relative_config=True,
                template_folder=_template_folder(), static_folder="static")
    config.load_config(app, test_config)
    args.init_app(app)  # before any route is added: the id converter of every route

    db.init_app(app)
    limits.init_app(app)
    i18n.init_app(app)
    security.init_app(app)
    sessions.init_app(app)
    templating.init_app(app)
    auth.init_app(app)
    logs.init_app(app)
    app.register_blueprint(main.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(checkout_views.bp)
    from .recurring.views import bp as recurring_bp  # auto-payments
    app.register_blueprint(recurring_bp)
    from . import api  # the JSON API and its OpenAPI document

    api.init_app(app)
    plugins.init_app(app)
    cli.init_app(app)
    return app
