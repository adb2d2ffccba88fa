"""Headless Debian Chromium loads the report with no console errors, renders every plot, takes a screenshot."""

from __future__ import annotations

import os
import shutil
import struct

import pytest

from staytuned.report import write_report

from .cdp import CHROMIUM, Browser

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not (shutil.which("chromium") or os.path.exists(CHROMIUM)),
                       reason="needs Debian's chromium (apt-get install chromium)"),
]


def test_report_renders_in_chromium(storage_url, tmp_path):
    page = tmp_path / "report.html"
    write_report(storage_url, page)
    shot = tmp_path / "report.png"
    with Browser(width=1280, height=2000) as browser:
        load = browser.open(page.as_uri())
        assert load.errors == []
        # the page's own scripts log nothing (rendering-engine notes such as WebGL stalls are not the page's)
        assert [c for c in load.console if c["source"] == "console"] == []
        # offline: nothing fetched but the file itself and plotly's inline data: images
        assert [u for u in load.requests if not u.startswith(("file:", "data:"))] == []
        n_plots = browser.evaluate("document.querySelectorAll('div.plot').length")
        rendered = browser.evaluate(
            "Array.from(document.querySelectorAll('div.plot')).filter(d => d.querySelector('.main-svg')).length")
        assert n_plots == 11 and rendered == n_plots  # plotly drew every figure
        assert browser.evaluate("document.querySelectorAll('canvas.gl-canvas-focus').length") == 1  # WebGL parcoords
        # the hostile dataset name and error message stayed text
        assert browser.evaluate("window.__pwned === undefined") is True
        assert browser.evaluate("document.querySelectorAll('img[src=\"x\"]').length") == 0
        assert "<script>window.__pwned=1</script>" in browser.evaluate("document.body.innerText")
        browser.screenshot(shot)
    head = shot.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", head[16:24]) == (1280, 2000)
    assert shot.stat().st_size > 50_000  # a blank 1280x2000 page compresses to a few kB


def test_harness_sees_console_errors(tmp_path):
    """The check above can fail: a page that logs an error and throws is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>console.error('boom'); undefinedFunction();</script></body></html>")
    with Browser(width=400, height=300) as browser:
        load = browser.open(bad.as_uri(), settle_s=0.2)
    assert any("boom" in e for e in load.errors)
    assert any("undefinedFunction" in e for e in load.errors)
