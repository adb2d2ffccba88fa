"""`staytuned cbs rank|evaluate` and `staytuned recommend` through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from staytuned.cli import build_app

runner = CliRunner()

TABLE = """
dataset,config_id,hp_learning_rate,hp_epochs,score,status,task_type
d1,c1,1e-4,3,0.90,ok,cls
d1,c2,1e-5,3,0.80,ok,cls
d1,c3,3e-4,1,0.10,ok,cls
d2,c1,1e-4,3,0.20,ok,cls
d2,c2,1e-5,3,0.85,ok,cls
d2,c3,3e-4,1,0.50,ok,cls
d3,c1,1e-4,3,,failed,gen
d3,c2,1e-5,3,0.40,ok,gen
d3,c3,3e-4,1,0.70,ok,gen
d4,c1,1e-4,3,0.60,ok,gen
d4,c2,1e-5,3,0.61,ok,gen
d4,c3,3e-4,1,0.30,ok,gen
"""


@pytest.fixture
def table(tmp_path: Path) -> Path:
    p = tmp_path / "runs.csv"
    p.write_text(TABLE.strip() + "\n")
    return p


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(build_app(), [str(a) for a in args], env={"COLUMNS": "200"})


def test_rank_json(table: Path, tmp_path: Path) -> None:
    out = tmp_path / "rank.json"
    res = invoke("cbs", "rank", table, "--json", out)
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    # covers: d1 {c1}, d2 {c2}, d3 {c3}, d4 {c2 (0.61), c1 (0.60 >= 0.6039? no)} -> c2 covers d2, d4 first
    assert [r["config_id"] for r in data["ranking"]] == ["c2", "c1", "c3"]
    assert data["ranking"][0]["new_datasets"] == ["d2", "d4"]
    assert data["ranking"][0]["hps"] == {"learning_rate": 1e-5, "epochs": 3}
    assert [r["covered"] for r in data["ranking"]] == [2, 3, 4]
    assert "c2" in res.output and "CBS ranking" in res.output
    res = invoke("cbs", "rank", table, "--k", "1", "--json", "-")
    assert res.exit_code == 0
    assert len(json.loads(res.stdout)["ranking"]) == 1


def test_evaluate_outputs(table: Path, tmp_path: Path) -> None:
    j, c, png, svg = (tmp_path / n for n in ("ev.json", "ev.csv", "ev.png", "ev.svg"))
    res = invoke("cbs", "evaluate", table, "--k", "3", "--json", j, "--csv", c, "--plot", png,
                 "--default-config", "lr=1e-4,epochs=3")
    assert res.exit_code == 0, res.output
    data = json.loads(j.read_text())
    assert set(data["methods"]) == {"cbs", "zeroshot", "greedy-portfolio", "best-average", "random", "default",
                                    "oracle"}
    for m in data["methods"].values():
        assert len(m["mean_best_of_k"]) == 3 and len(m["solved_fraction"]) == 3
    assert data["methods"]["oracle"]["mean_best_of_k"] == [1.0, 1.0, 1.0]
    assert c.read_text().splitlines()[0] == "method,k,mean_best_of_k,solved_fraction"
    assert png.read_bytes()[:4] == b"\x89PNG"
    res = invoke("cbs", "evaluate", table, "--group-col", "task_type", "--plot", svg, "--random-perms", "50", "-q")
    assert res.exit_code == 0, res.output
    assert "<svg" in svg.read_text()[:500]
    assert "leave-one-group-out" in res.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--score-col", "acc"], "missing column"),
        (["--tol", "2"], "tolerance out of range"),
        (["--direction", "up"], "unknown direction"),
        (["--plot", "x.jpg"], "unsupported output format"),
        (["--agg", "mode"], "unknown aggregation"),
        (["--default-config", "lr=9"], "no configs match"),
    ],
)
def test_bad_input_writes_nothing(table: Path, tmp_path: Path, args: list[str], message: str) -> None:
    j, c = tmp_path / "o.json", tmp_path / "o.csv"
    res = invoke("cbs", "evaluate", table, *args, "--json", j, "--csv", c)
    assert res.exit_code == 2
    assert message in res.output
    assert not j.exists() and not c.exists() and not (tmp_path / "x.jpg").exists()


def test_bad_row_is_named(tmp_path: Path) -> None:
    p = tmp_path / "bad.csv"
    p.write_text("dataset,config_id,score\nd1,c1,0.5\nd1,c2,oops\n")
    res = invoke("cbs", "rank", p, "--json", tmp_path / "r.json")
    assert res.exit_code == 2
    assert "row 3" in res.output and "'score'" in res.output and str(p) in res.output
    assert not (tmp_path / "r.json").exists()
    res = invoke("cbs", "rank", tmp_path / "missing.csv")
    assert res.exit_code == 2 and "file not found" in res.output


def test_recommend_shipped(tmp_path: Path) -> None:
    j, y = tmp_path / "r.json", tmp_path / "r.yaml"
    res = invoke("recommend", "--model", "mistralai/Mistral-7B-v0.1", "--method", "lora", "--json", j, "--yaml", y)
    assert res.exit_code == 0, res.output
    rec = json.loads(j.read_text())["recommendations"]
    assert rec[0]["config"]["batch_size"] == 32 and rec[0]["source"]["arxiv"] == "2407.18990"
    assert yaml.safe_load(y.read_text())["recommendations"][0]["config"]["lora_alpha"] == 128
    assert "2407.18990" in res.output
    res = invoke("recommend", "--model", "falcon-40b")
    assert res.exit_code == 2
    assert "no shipped recommendation" in res.output and "mistral-7b" in res.output and "llama-3-8b" in res.output


def test_recommend_qlora_shows_the_lora_recommendations_and_says_so(tmp_path: Path) -> None:
    j = tmp_path / "q.json"
    res = invoke("recommend", "--model", "mistral-7b", "--method", "qlora", "--quiet", "--json", j)
    assert res.exit_code == 0, res.output
    out = " ".join(res.stdout.split())
    # Said in the table itself, so --quiet (which drops the notes) does not hide it.
    assert "shown for qlora" in out and "measured with lora" in out
    data = json.loads(j.read_text())
    assert data["requested_method"] == "qlora" and data["shown_method"] == "lora"
    assert any("no qlora recommendations shipped" in n for n in data["notes"])
    assert [r["method"] for r in data["recommendations"]] == ["lora"]
    assert data["recommendations"][0]["config"]["lora_r"] == 128
    noisy = invoke("recommend", "--model", "mistral-7b", "--method", "qlora")
    assert "note: no qlora recommendations shipped" in " ".join(noisy.stderr.split())


def test_recommend_cites_our_study_without_an_arxiv_id() -> None:
    res = invoke("recommend", "--model", "smollm2-135m", "--method", "lora")
    assert res.exit_code == 0, res.output
    from staytuned.cbs import recommend

    src = recommend(model="smollm2-135m", method="lora").recommendations[0].source
    assert f"staytuned-smollm2-study ({len(src['datasets'])} datasets, {src['n_configs']} configs)" in res.output
    assert "arXiv ?" not in res.output


def test_recommend_table_shows_every_value_uncut() -> None:
    """On a narrow terminal no HP value is cut with an ellipsis; shared HPs move to the caption."""
    from staytuned.cbs import recommend
    from staytuned.cli._common import out

    recs = recommend(model="smollm2-135m", method="lora", k=3).recommendations
    width = out.width
    out.width = 80
    try:
        res = invoke("recommend", "--model", "smollm2-135m", "--method", "lora", "--k", "3")
    finally:
        out.width = width
    assert res.exit_code == 0, res.output
    assert "…" not in res.output
    text = " ".join(res.output.replace("│", " ").split())
    for r in recs:
        assert f"learning_rate={r.config['learning_rate']:g}" in text or \
            f"learning_rate={r.config['learning_rate']}" in text
    assert "every rank:" in res.output and "model smollm2-135m, method lora, train size 100" in res.output


def test_recommend_from_table(table: Path) -> None:
    res = invoke("recommend", table, "--k", "2", "--json", "-")
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)["recommendations"]
    assert [r["config_id"] for r in got] == ["c2", "c1"]
    res = invoke("recommend", table, "--k", "2")
    assert res.exit_code == 0, res.output
    assert "coverage" in res.output and "None" not in res.output  # a table with no method column


def test_cli_imports_stay_light() -> None:
    """`import staytuned.cli` and `staytuned cbs --help` load no torch/transformers/peft/ray/pandas."""
    code = (
        "import sys\n"
        "from staytuned.cli import build_app\n"
        "import staytuned.cbs, staytuned.results\n"
        "try:\n"
        "    build_app()(['cbs', '--help'], standalone_mode=False)\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ['torch', 'transformers', 'peft', 'ray', 'pandas', 'pyarrow', 'matplotlib']\n"
        "print('LOADED', [m for m in heavy if m in sys.modules])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "LOADED []" in proc.stdout, proc.stdout + proc.stderr
    assert "rank" in proc.stdout and "evaluate" in proc.stdout


@pytest.mark.parametrize("ranker", ["zeroshot", "greedy-portfolio", "best-average", "cbs"])
def test_rank_with_each_ranker(table: Path, ranker: str) -> None:
    from staytuned.cbs import rank_by
    from staytuned.results import load_results

    res = invoke("cbs", "rank", table, "--ranker", ranker, "--json", "-")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    want = rank_by(load_results(table).score_matrix(), ranker).config_ids
    assert data["method"] == ranker and [r["config_id"] for r in data["ranking"]] == want
    assert all({"coverage", "mean_best_of_k", "round", "new_datasets"} <= set(r) for r in data["ranking"])
    shown = invoke("cbs", "rank", table, "--ranker", ranker)
    assert shown.exit_code == 0 and ("CBS ranking" in shown.output) == (ranker == "cbs")


def test_rank_tol_auto_reports_the_choice(table: Path, tmp_path: Path) -> None:
    out = tmp_path / "rank.json"
    res = invoke("cbs", "rank", table, "--tol", "auto", "--json", out)
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    choice = data["tol_choice"]
    assert data["tol"] == choice["tol"] and len(choice["candidates"]) == 7
    assert f"tol auto: chose {choice['tol']:g}" in res.output


def test_evaluate_tol_auto_is_nested(table: Path, tmp_path: Path) -> None:
    out = tmp_path / "ev.json"
    res = invoke("cbs", "evaluate", table, "--tol", "auto", "--k", "2", "--json", out)
    assert res.exit_code == 0, res.output
    settings = json.loads(out.read_text())["settings"]
    assert settings["tol"] == "auto" and set(settings["tol_per_fold"]) == {"d1", "d2", "d3", "d4"}
    assert "tol auto: CBS's tolerance per fold" in res.output


def test_long_rankings_print_the_top_and_keep_all_in_json(tmp_path: Path) -> None:
    rows = ["dataset,config_id,score"] + [f"d{d},c{c},{(c * 7 + d * 3) % 11 / 10}" for d in range(3) for c in range(60)]
    p = tmp_path / "long.csv"
    p.write_text("\n".join(rows) + "\n")
    res = invoke("cbs", "rank", p, "--json", tmp_path / "r.json")
    assert res.exit_code == 0, res.output
    assert "the first 50 of 60 ranks" in res.output
    assert len(json.loads((tmp_path / "r.json").read_text())["ranking"]) == 60
    assert "the first" not in invoke("cbs", "rank", p, "--k", "60").output  # --k N prints N
