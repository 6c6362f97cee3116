"""Flask-Babel wiring: the user's language, else the browser's; catalogues compiled on start."""
from __future__ import annotations

import os
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from flask import Flask, has_request_context, request
from flask_babel import Babel
from flask_login import current_user

CATALOG_DIR = Path(__file__).resolve().parent / "translations"


def select_locale() -> str:
    """The logged-in user's preferred language, else the best match of the browser's."""
    from flask import current_app

    languages = current_app.config["LANGUAGES"]
    if not has_request_context():  # CLI and cron (recurring run, payments check): no user, no browser
        return current_app.config["BABEL_DEFAULT_LOCALE"]
    user_language = getattr(current_user, "language", None) if current_user else None
    if user_language in languages:
        return user_language
    return request.accept_languages.best_match(languages) or current_app.config["BABEL_DEFAULT_LOCALE"]


def compile_catalogs(target: Path) -> Path:
    """Compile every ``.po`` catalogue into ``target`` when its ``.mo`` is missing or older."""
    for po_path in CATALOG_DIR.glob("*/LC_MESSAGES/*.po"):
        relative = po_path.relative_to(CATALOG_DIR).with_suffix(".mo")
        mo_path = target / relative
        if mo_path.exists() and mo_path.stat().st_mtime >= po_path.stat().st_mtime:
            continue
        mo_path.parent.mkdir(parents=True, exist_ok=True)
        with po_path.open("rb") as fh:
            catalog = read_po(fh)
        # per process: ids repeat across forked processes, and two writers of one file lose it to rename
        tmp = mo_path.with_suffix(f".mo.{os.getpid()}.{id(catalog)}")
        with tmp.open("wb") as fh:
            write_mo(fh, catalog)
        tmp.replace(mo_path)  # atomic: several workers may compile at once
    return target


def init_app(app: Flask) -> None:
    """Compile the catalogues into the instance folder and set up Flask-Babel."""
    compiled = compile_catalogs(Path(app.instance_path) / "translations")
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(compiled)
    Babel(app, locale_selector=select_locale)

    @app.context_processor
    def _languages():
        from flask_babel import get_locale

        return {"current_language": str(get_locale() or "en")}
