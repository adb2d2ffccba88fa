"""Figure layouts: titles clear of plotly's toolbar, the parallel-coordinates colour bar clear of
the score axis. Checked in the figure JSON, and on the page in headless Chromium (DOM boxes)."""

from __future__ import annotations

import json
import os
import shutil

import pytest

pytest.importorskip("plotly")

from staytuned.report import figures, load_input, write_report
from staytuned.report.panels import Skip, build_panels

from .cdp import CHROMIUM, Browser
from .conftest import XSS_DATASET


def _all_figures(storage_url: str) -> list:
    panels = build_panels(load_input(storage_url))
    figs = []
    for p in panels.coverage:
        figs.append(figures.topk_figure(p))
    figs.append(figures.importance_figure(panels.importance))
    figs += [figures.heatmap_figure(p) for p in panels.heatmaps]
    figs.append(figures.parallel_figure(panels.parallel))
    figs += [figures.history_figure(p) for p in panels.history]
    figs += [figures.pareto_figure(p) for p in panels.pareto]
    assert not any(isinstance(getattr(panels, n), Skip)
                   for n in ("coverage", "importance", "heatmaps", "parallel", "history", "pareto"))
    return figs


def test_every_title_sits_below_the_toolbar_band(storage_url):
    figs = _all_figures(storage_url)
    assert len(figs) == 11
    for fig in figs:
        layout = json.loads(fig.to_json())["layout"]
        title = layout["title"]
        # Anchored by its bottom just above the plot area, one line high, with the toolbar's band
        # free above it: the margin holds band + line + the gap under the title.
        assert (title["yref"], title["y"], title["yanchor"]) == ("paper", 1, "bottom")
        assert (title["xref"], title["x"], title["xanchor"]) == ("paper", 0, "left")
        assert "<br>" not in title["text"]  # plotly places multi-line titles over the plot
        room_above = layout["margin"]["t"] - title["pad"]["b"]
        assert room_above >= figures.MODEBAR_PX + figures.TITLE_LINE_PX
        assert figures.MODEBAR_PX >= 30  # the toolbar is ~26 px tall


def test_heatmap_titles_shorten_long_dataset_names(storage_url):
    panels = build_panels(load_input(storage_url))
    titles = [figures.heatmap_figure(p).layout.title.text for p in panels.heatmaps]
    assert "sst2: mean score" in titles
    long = next(t for t in titles if "…" in t)
    name = long.removesuffix(": mean score")
    assert len(name.replace("&lt;", "<").replace("&gt;", ">")) == 30
    assert name.startswith(figures.esc(XSS_DATASET[:14])) and name.endswith('ds"3')


def test_parallel_colour_bar_stands_apart_from_the_score_axis(storage_url):
    fig = figures.parallel_figure(build_panels(load_input(storage_url)).parallel)
    spec = json.loads(fig.to_json())
    bar = spec["data"][0]["line"]["colorbar"]
    # Left edge right of the plot area (where the score axis is) by a gap wider than half the
    # axis name, title along the bar rather than above it beside the axis name.
    assert bar["x"] >= 1 and bar["xanchor"] == "left" and bar["xpad"] >= 50
    assert bar["title"]["side"] == "right"
    # The right margin holds gap, bar, tick labels (~30 px) and the title (~25 px).
    assert spec["layout"]["margin"]["r"] >= bar["xpad"] + bar["thickness"] + 55


# Boxes of what plotly drew, per figure: a title the toolbar covers or that is wider than its
# figure, and the smallest horizontal gap between the parcoords colour bar and the axes.
_LAYOUT_PROBLEMS = """JSON.stringify((() => {
  const box = e => e.getBoundingClientRect();
  const hit = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
  const problems = [];
  document.querySelectorAll('div.plot').forEach(d => {
    const fig = box(d), title = d.querySelector('.gtitle'), bar = d.querySelector('.modebar');
    if (!title || !bar) { problems.push(d.id + ': no title or no toolbar'); return; }
    if (hit(box(title), box(bar))) problems.push(d.id + ': title under the toolbar');
    if (box(title).right > fig.right) problems.push(d.id + ': title wider than the figure');
    const cb = d.querySelector('.colorbar');
    if (cb && d.querySelector('.parcoords')) {
      const left = Math.min(...Array.from(cb.querySelectorAll('rect.cbfill, text')).map(e => box(e).left));
      const right = Math.max(...Array.from(d.querySelectorAll('.parcoords text, .parcoords path.domain'))
                                  .map(e => box(e).right));
      if (left - right < 10) problems.push(d.id + ': colour bar ' + (left - right) + ' px from the axes');
    }
  });
  return problems;
})())"""


@pytest.mark.browser
@pytest.mark.skipif(not (shutil.which("chromium") or os.path.exists(CHROMIUM)),
                    reason="needs Debian's chromium (apt-get install chromium)")
@pytest.mark.parametrize("width", [1280, 800])
def test_titles_and_colour_bar_are_clear_in_chromium(storage_url, tmp_path, width):
    page = tmp_path / "report.html"
    write_report(storage_url, page)
    with Browser(width=width, height=2000) as browser:
        load = browser.open(page.as_uri())
        assert load.errors == []
        assert browser.evaluate("document.querySelectorAll('div.plot .modebar').length") == 11
        assert json.loads(browser.evaluate(_LAYOUT_PROBLEMS)) == []
