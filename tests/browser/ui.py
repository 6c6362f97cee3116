"""What every page test checks besides its own behaviour: axe-core's accessibility audit, that nothing is
wider than the viewport, and a screenshot; plus a browser context at a given width and language.

Screenshots are for a person to look at (``test-artifacts/<test name>/``). ``BILLCORE_TEST_SCREENSHOTS=0``
leaves them out: ``.ci/run`` sets it, since nobody opens a CI clone's folders and the screenshots are about
a tenth of the browser tests' time. Every check is still made, and a page that fails :func:`check_page` is
photographed anyway.

axe-core comes from the npm registry through ``make axe`` (part of ``make install-test``) into
``tests/browser/node_modules``; the audit fails, never skips, when it is missing.
"""
from __future__ import annotations

import os
from pathlib import Path

from billcore.accounts import find_user
from billcore.db import db

AXE_JS = Path(__file__).resolve().parent / "node_modules" / "axe-core" / "axe.min.js"
WIDTHS = {"desktop": 1366, "phone": 390}
LOCALES = {"en": "en-US", "ru": "ru-RU"}
# WCAG 2.1 A and AA rules (contrast 4.5:1 among them) and axe's best practices
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]


def screenshots_wanted() -> bool:
    """False when ``BILLCORE_TEST_SCREENSHOTS=0`` asks the browser tests to take no screenshots."""
    return os.environ.get("BILLCORE_TEST_SCREENSHOTS", "1").strip() != "0"


def screenshot(page, path: Path, *, full_page: bool = True) -> None:
    """Save the page as ``path`` (a PNG), unless screenshots are turned off (:func:`screenshots_wanted`)."""
    if screenshots_wanted():
        page.screenshot(path=path, full_page=full_page)


def new_page(browser, width: int, language: str):
    """A fresh context (own cookies) at ``width`` px whose browser asks for ``language``."""
    # bypass_csp: only so that axe-core can be injected (the pages allow no inline script)
    context = browser.new_context(viewport={"width": width, "height": 900}, locale=LOCALES[language],
                                  bypass_csp=True)
    context.set_default_timeout(10_000)
    # axe-core in every page as it loads: handing its 0.5 MB to each page after loading (add_script_tag)
    # took 0.2 s a page, as long as the audit itself
    context.add_init_script(path=str(AXE_JS))
    return context, context.new_page()


def set_language(server, email: str, language: str) -> None:
    """Store the user's language, as the switch in the header would."""
    with server.app_context():
        user = find_user(email)
        user.language = language
        db.session.commit()
        db.session.remove()


# One round trip to the browser for both checks (each call through Playwright's driver costs ~10 ms here):
# how many px the page is wider than the viewport, and axe-core's violations, or null before axe is loaded.
_MEASURE_JS = """async tags => ({
  wider: Math.max(document.documentElement.scrollWidth, document.body.scrollWidth) - window.innerWidth,
  violations: typeof window.axe === 'undefined' ? null
    : (await axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})).violations,
})"""


def measure(page) -> tuple[int, list[str]]:
    """How many px the page is wider than the viewport (0 or less when it fits), and axe-core's serious and
    critical violations on it, one line each (empty when none)."""
    assert AXE_JS.exists(), f"{AXE_JS} is missing: run `make axe` (installs axe-core from the npm registry)"
    result = page.evaluate(_MEASURE_JS, AXE_TAGS)
    if result["violations"] is None:  # a document the context's init script did not run in
        page.add_script_tag(path=str(AXE_JS))
        result = page.evaluate(_MEASURE_JS, AXE_TAGS)
    found = []
    for v in result["violations"]:
        if v["impact"] in ("serious", "critical"):
            targets = ", ".join(str(n["target"]) for n in v["nodes"][:3])
            found.append(f"{v['id']} ({v['impact']}): {v['help']} at {targets}")
    return result["wider"], found


def check_page(page, artifacts: Path, name: str) -> None:
    """Screenshot the page, then assert it fits the viewport and has no serious accessibility problem (a
    failing page is photographed even with screenshots turned off)."""
    # A page just navigated to may still be loading its stylesheet; measured then, its width is the
    # unstyled layout's (seen once on a busy machine: 93 px too wide, and fine in the screenshot after).
    page.wait_for_load_state()
    screenshot(page, artifacts / f"{name}.png")
    wider, problems = measure(page)
    if (wider > 0 or problems) and not screenshots_wanted():
        page.screenshot(path=artifacts / f"{name}.png", full_page=True)
    assert wider <= 0, f"{name}: {wider} px wider than the viewport ({page.url})"
    assert not problems, f"{name} ({page.url}):\n" + "\n".join(problems)
