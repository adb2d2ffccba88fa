"""The HTML page: self-contained, escaped, every section present; PNGs of the same plots."""

from __future__ import annotations

import re
import struct

import pytest

from staytuned.report import write_report

from .conftest import XSS_DATASET, XSS_ERROR


@pytest.fixture(scope="module")
def storage_report(storage_url, tmp_path_factory):
    out = tmp_path_factory.mktemp("html")
    result = write_report(storage_url, out / "report.html", png_dir=out / "png")
    return result, (out / "report.html").read_text(encoding="utf-8")


def test_page_is_self_contained(storage_report):
    result, page = storage_report
    assert page.startswith("<!DOCTYPE html>")
    from plotly.offline import get_plotlyjs

    plotly_js = get_plotlyjs()
    assert f"<script>{plotly_js}</script>" in page  # the whole bundle, inline
    ours = page.replace(plotly_js, "")  # the rest of the page: no external resource at all
    assert not re.search(r"<script[^>]+src=", ours) and not re.search(r"<link[^>]+href=", ours)
    assert "http://" not in ours.split("</header>", 1)[1] and "https://" not in ours
    assert "<style>" in page and result.bytes == len(page.encode())


def test_user_text_is_escaped(storage_report):
    _, page = storage_report
    from plotly.offline import get_plotlyjs

    page = page.replace(get_plotlyjs(), "")
    assert XSS_DATASET not in page and "<script>window.__pwned" not in page
    assert XSS_ERROR not in page and "<img src=x" not in page
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;ds&quot;3" in page  # tables show the text
    assert "CUDA out of memory &lt;img src=x onerror=&quot;window.__pwned=2&quot;&gt;" in page
    # the only <script> elements are plotly, the figure data and the boot script
    scripts = re.findall(r"<script[^>]*>", page)
    assert set(scripts) <= {"<script>"} | {m for m in scripts if 'type="application/json"' in m}


def test_every_section_is_shown(storage_report):
    result, page = storage_report
    assert set(result.sections.values()) == {"shown"}
    for sid in ("overview", "coverage", "heatmaps", "importance", "parallel", "history", "pareto", "failed"):
        assert f'<section id="{sid}">' in page
    # top-k, 3 heatmaps, importance, parallel coordinates, history of the grid study and of the
    # decoding study, 3 Pareto fronts (multi-objective + 2 secondaries of the decoding study)
    assert page.count('<div class="plot"') == 1 + 3 + 1 + 1 + 2 + 3
    assert "3 runs failed or were pruned" in page


def test_table_report_says_which_sections_do_not_apply(table_csv, tmp_path):
    result = write_report(str(table_csv), tmp_path / "t.html")
    page = (tmp_path / "t.html").read_text()
    assert result.sections["history"].startswith("not applicable: a results table has no trial order")
    assert result.sections["pareto"].startswith("not applicable")
    assert result.sections["coverage"] == "shown" and result.sections["failed"] == "shown"
    assert page.count('<p class="na">Not applicable:') == 2 + (result.sections["importance"] != "shown")
    assert "NaN loss &lt;b&gt;boom&lt;/b&gt;" in page
    # CBS by hand. Normalized scores: a: c1 1, c2 .5, c3 0; b: c1 0, c2 1, c3 failed (0).
    # c1 and c2 each cover one dataset; the tie goes to the higher mean (c2: .75 > c1: .5).
    # Mean best-of-k after c2 = (0.5 + 1) / 2 = 0.75, after c1 = 1.
    assert re.search(r'<td class="num">1</td><td>c2</td><td>[^<]*</td><td>b</td><td class="num">1/2</td>'
                     r'<td class="num">0.750</td>', page)
    assert re.search(r'<td class="num">2</td><td>c1</td><td>[^<]*</td><td>a</td><td class="num">2/2</td>'
                     r'<td class="num">1.000</td>', page)


def _png_size(path):
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_pngs_of_the_same_plots(storage_report):
    result, _ = storage_report
    names = sorted(p.name for p in result.pngs)
    assert "hp_importance.png" in names and "parallel_coordinates.png" in names
    assert "pareto_decode-demo_tokens.png" in names and "history_grid-demo.png" in names
    assert "pareto_decode-secondary_output_tokens.png" in names
    assert sum(n.startswith("heatmap_") for n in names) == 3
    assert any(n.startswith("best_of_top_k") for n in names)
    for p in result.pngs:
        w, h = _png_size(p)
        assert w >= 300 and h >= 200 and p.stat().st_size > 10_000
