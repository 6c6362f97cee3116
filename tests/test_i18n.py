"""English and Russian: every translatable string has a Russian translation, and pages switch language."""
from __future__ import annotations

import re
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from tests.conftest import CLIENT, login

ROOT = Path(__file__).resolve().parent.parent
CATALOG = ROOT / "billcore" / "translations" / "ru" / "LC_MESSAGES" / "messages.po"
KEYWORDS = {"_": None, "gettext": None, "_l": None, "lazy_gettext": None, "ngettext": (1, 2)}
METHODS = [("billcore/**.py", "python"), ("plugins/**.py", "python"), ("templates/**.html", "jinja2"),
           ("plugins/**/templates/**.html", "jinja2")]
PLACEHOLDER = re.compile(r"%\(\w+\)s|%s|%d")


def _source_messages() -> set[str]:
    found = set()
    for _, _, message, _, _ in extract_from_dir(str(ROOT), METHODS, keywords=KEYWORDS):
        found.add(message[0] if isinstance(message, tuple) else message)
    return {m for m in found if m}


def _catalog():
    with CATALOG.open("rb") as fh:
        return read_po(fh, locale="ru")


def test_every_string_has_a_russian_translation():
    catalog = _catalog()
    missing = []
    for msgid in sorted(_source_messages()):
        message = catalog.get(msgid)
        strings = message.string if message is not None else None
        if isinstance(strings, tuple):
            ok = all(strings)
        else:
            ok = bool(strings)
        if not ok or (message is not None and message.fuzzy):
            missing.append(msgid)
    assert missing == [], f"{len(missing)} strings lack a Russian translation (run `make translations`): {missing[:10]}"


def test_translations_keep_their_placeholders():
    for message in _catalog():
        if not message.id or not message.string:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        expected = set(PLACEHOLDER.findall(ids[0]))
        for text in strings:
            assert set(PLACEHOLDER.findall(text)) <= expected | set(PLACEHOLDER.findall(ids[-1])), message.id


def test_login_page_in_russian_from_the_browser(app):
    resp = app.test_client().get("/login", headers={"Accept-Language": "ru-RU,ru;q=0.9"})
    assert resp.status_code == 200
    assert 'lang="ru"' in resp.get_data(as_text=True)
    assert "Log in" not in resp.get_data(as_text=True)


def test_user_preference_beats_the_browser(app, client_user):
    c = app.test_client()
    login(c, *CLIENT)
    assert c.post("/language/ru").status_code == 302
    page = c.get("/dashboard", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert 'lang="ru"' in page and "Dashboard" not in page
