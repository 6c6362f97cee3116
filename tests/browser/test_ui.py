"""The browser tests' own checks (tests/browser/ui.py): screenshots turned off still photograph a failure."""
from __future__ import annotations

import pytest

from tests.browser.ui import check_page, new_page, screenshot

pytestmark = pytest.mark.browser

WIDE_PAGE = ('<!doctype html><html lang="en"><head><title>wide</title></head>'
             '<body><main><h1>Wide</h1><div style="width: 3000px">too wide</div></main></body></html>')
# a button with no text or label: axe-core's "button-name" rule, a critical violation
UNNAMED_BUTTON_PAGE = ('<!doctype html><html lang="en"><head><title>unnamed</title></head>'
                       '<body><main><h1>Unnamed</h1><button></button></main></body></html>')
FITTING_PAGE = ('<!doctype html><html lang="en"><head><title>fits</title></head>'
                '<body><main><h1>Fits</h1><p>fits</p></main></body></html>')


@pytest.mark.parametrize("wanted", ["0", "1"])
def test_a_page_that_passes_is_photographed_only_when_screenshots_are_wanted(browser, tmp_path, monkeypatch, wanted):
    monkeypatch.setenv("BILLCORE_TEST_SCREENSHOTS", wanted)
    context, page = new_page(browser, 390, "en")
    try:
        page.set_content(FITTING_PAGE)
        check_page(page, tmp_path, "fits")
        screenshot(page, tmp_path / "direct.png")
    finally:
        context.close()
    assert (tmp_path / "fits.png").exists() == (wanted == "1")
    assert (tmp_path / "direct.png").exists() == (wanted == "1")


def test_a_page_that_fails_is_photographed_with_screenshots_turned_off(browser, tmp_path, monkeypatch):
    monkeypatch.setenv("BILLCORE_TEST_SCREENSHOTS", "0")
    context, page = new_page(browser, 390, "en")
    try:
        page.set_content(WIDE_PAGE)
        with pytest.raises(AssertionError, match="wider than the viewport"):
            check_page(page, tmp_path, "wide")
    finally:
        context.close()
    assert (tmp_path / "wide.png").stat().st_size > 0


def test_a_serious_accessibility_problem_fails_the_check(browser, tmp_path, monkeypatch):
    monkeypatch.setenv("BILLCORE_TEST_SCREENSHOTS", "0")
    context, page = new_page(browser, 1366, "en")
    try:
        page.set_content(UNNAMED_BUTTON_PAGE)
        with pytest.raises(AssertionError, match=r"button-name \(critical\)"):
            check_page(page, tmp_path, "unnamed")
    finally:
        context.close()
    assert (tmp_path / "unnamed.png").stat().st_size > 0
