"""The SmolLM2 study's pipeline (grid -> results export -> cbs evaluate -> recommend -> shipped
preset) on synthetic trials of the study's own spaces, so a change that breaks it shows here and
not hours into a real run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
STUDY = REPO / "studies" / "smollm2"
SYNTH = "staytuned.search.synthetic:synthetic_trial"


def _grid(url: str, tasks: str, method: str, size: int, space: str, name: str = "smollm2", seed: int = 0) -> None:
    from typer.testing import CliRunner

    from staytuned.cli import build_app

    res = CliRunner().invoke(build_app(), [
        "grid", "--tasks", tasks, "--models", "smollm2-135m", "--methods", method, "--train-sizes", str(size),
        "--space", str(STUDY / "spaces" / space), "--storage", url, "--name", name, "--seed", str(seed),
        "--trial-fn", SYNTH, "-q"])
    assert res.exit_code == 0, res.output


@pytest.mark.slow
@pytest.mark.skipif(not (REPO / ".venv" / "bin" / "staytuned").exists(), reason="needs the bootstrapped .venv")
def test_study_pipeline_on_synthetic_trials(tmp_path):
    db = tmp_path / "grid.db"
    url = f"sqlite:///{db}"
    tasks = "sst2,trec,squad"
    for m in ("lora", "full"):
        _grid(url, tasks, m, 100, f"{m}.yaml")
        _grid(url, tasks, m, 100, f"defaults-{m}.yaml")
        _grid(url, "sst2,trec", m, 100, f"seed1-{m}.yaml", name="smollm2-seed1", seed=1)
    _grid(url, tasks, "lora", 1000, "seed1-lora.yaml")  # size 1000 is a comparison: never ranked or shipped
    out = tmp_path / "out"
    subprocess.run([sys.executable, str(STUDY / "analyze.py"), "--db", str(db), "--into", str(out)],
                   check=True, cwd=REPO, capture_output=True)
    text = (out / "RESULTS.md").read_text()
    for heading in ("Leave-one-dataset-out", "What the top 1 is", "LoRA vs full", "Seed-to-seed noise",
                    "Effect of each HP", "Cost"):
        assert heading in text
    assert "TRL+PEFT defaults" in text and "LLaMA-Factory example" in text and "TRL defaults" in text
    assert "**lora, train size 100** (24 configs, 3 datasets)" in text
    # CBS ranks the grid only: the tool defaults are a baseline row, the seed-1 repeats measure noise.
    loo = text.split("### LoRA vs full")[0]
    assert "| TRL+PEFT defaults |" in loo and "| LLaMA-Factory example |" in loo and "| TRL defaults |" in loo
    import csv

    from staytuned.search.space import config_id, load_space

    defaults = {config_id(c) for m in ("lora", "full")
                for c in load_space(str(STUDY / "spaces" / f"defaults-{m}.yaml")).grid({"method": m})}
    for shipped_csv in (out / "analysis" / "grid.csv", out / "smollm2_135m.csv"):
        rows = list(csv.DictReader(shipped_csv.open()))
        assert rows and {r["seed"] for r in rows} == {"0"}
        assert not defaults & {r["config_id"] for r in rows}
    doc = yaml.safe_load((out / "smollm2_135m.yaml").read_text())
    shipped = {(r["method"], r["train_size"]) for r in doc["recommendations"]}
    assert shipped == {("lora", 100), ("full", 100)}  # complete slices on >= 3 datasets only
    assert all(sorted(r["source"]["datasets"]) == ["squad", "sst2", "trec"] for r in doc["recommendations"])
    from staytuned.cbs import recommend, shipped_table

    preset = out / "smollm2_135m.yaml"
    got = recommend(model="HuggingFaceTB/SmolLM2-135M-Instruct", method="full", extra=[preset])
    assert [r.rank for r in got.recommendations if r.source["file"] == str(preset)] == [1, 2, 3, 4, 5]
    assert shipped_table("smollm2-135m", extra=[preset]) == out / "smollm2_135m.csv"

    # pick-1000: the top 1 of a task type's ranking plus the median of the rest, from grid.csv
    picked = tmp_path / "lora-1000.yaml"
    subprocess.run([sys.executable, str(STUDY / "pick_configs.py"), "cbs", str(STUDY / "spaces" / "lora.yaml"),
                    "1", str(picked), "--table", str(out / "analysis" / "grid.csv"), "--method", "lora",
                    "--train-size", "100", "--top", "1", "--datasets", "sst2,trec"],
                   check=True, cwd=REPO, capture_output=True)
    from staytuned.cbs import rank
    from staytuned.results import load_results

    mx = load_results(out / "analysis" / "grid.csv").slice(method="lora", train_size=100,
                                                          datasets=["sst2", "trec"]).score_matrix()
    ids = [config_id(c) for c in load_space(str(picked)).grid({"method": "lora"})]
    assert len(ids) == 2 and ids[0] == rank(mx).config_ids[0]
    assert ids[1] in rank(mx).config_ids[1:] and ids[1] not in defaults
