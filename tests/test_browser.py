"""The headless-browser check the report test relies on (tests/browser.py) sees console
errors, uncaught exceptions and failed loads, and passes a clean page."""
import pytest

from tests.browser import Browser, chromium

pytestmark = pytest.mark.skipif(chromium() is None, reason="chromium not installed (apt-get install chromium)")


def test_a_clean_page_has_no_errors(tmp_path):
    page = tmp_path / "clean.html"
    page.write_text("<!DOCTYPE html><html><body><p id='x'>hello</p><script>console.log('fine')</script></body></html>")
    with Browser() as browser:
        assert browser.open(page.as_uri(), settle_s=0.5) == []
        assert browser.evaluate("document.getElementById('x').textContent") == "hello"


def test_console_errors_exceptions_and_failed_loads_are_reported(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><img src='missing.png'>"
                    "<script>console.error('boom'); undefined_function();</script></body></html>")
    with Browser() as browser:
        errors = browser.open(page.as_uri(), settle_s=0.5)
    assert any("console.error: boom" in e for e in errors), errors
    assert any("undefined_function" in e for e in errors), errors
    assert any("missing.png" in e for e in errors), errors
