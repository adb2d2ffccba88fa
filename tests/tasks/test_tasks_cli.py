"""`staytuned tasks`: the bundled table, --json, --dir and a bad folder (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from staytuned.cli import build_app


def _invoke(*args: str):
    return CliRunner().invoke(build_app(), ["tasks", *args], env={"COLUMNS": "120"})


def test_tasks_table_lists_bundled_tasks() -> None:
    res = _invoke()
    assert res.exit_code == 0, res.output
    for needle in ("sst2", "trec", "banking77", "scitldr", "squad", "classification", "rougeL", "CC BY-SA 4.0"):
        assert needle in res.stdout
    line = next(ln for ln in res.stdout.splitlines() if ln.strip().startswith("banking77"))
    assert line.split()[1:7] == ["classification", "accuracy", "77", "1,000", "300", "300"]


def test_tasks_json(tmp_path: Path) -> None:
    res = _invoke("--json", str(tmp_path / "t.json"), "-q")
    assert res.exit_code == 0 and res.stdout == ""
    tasks = {t["name"]: t for t in json.loads((tmp_path / "t.json").read_text())["tasks"]}
    assert set(tasks) == {"sst2", "trec", "banking77", "scitldr", "squad"}
    assert tasks["squad"]["type"] == "qa" and tasks["squad"]["metric"] == "f1"
    assert tasks["trec"]["n_labels"] == 6 and tasks["trec"]["splits"] == {"train": 1000, "validation": 300, "test": 300}
    res = _invoke("--json", "-")
    assert json.loads(res.stdout)["tasks"][0]["name"] == "banking77"


def test_tasks_dir_lists_folders_and_skips_bad_ones(tmp_path: Path) -> None:
    good = tmp_path / "mine"
    good.mkdir()
    (good / "train.jsonl").write_text(
        "".join(json.dumps({"document": f"d{i}", "summary": "s"}) + "\n" for i in range(10)), encoding="utf-8"
    )
    (tmp_path / "broken").mkdir()
    res = _invoke("--dir", str(tmp_path), "--json", str(tmp_path / "out.json"))
    assert res.exit_code == 0
    assert "mine" in res.stdout and "summarization" in res.stdout
    assert "skipped" in res.stderr and "broken" in res.stderr
    (row,) = json.loads((tmp_path / "out.json").read_text())["tasks"]
    assert row["splits"] == {"train": 9, "validation": 1, "test": 0}


def test_tasks_dir_not_a_folder_exits_2(tmp_path: Path) -> None:
    res = _invoke("--dir", str(tmp_path / "nope"))
    assert res.exit_code == 2 and "not a folder" in res.stderr


@pytest.mark.shared
def test_tasks_dir_on_shared_datasets(shared_dir: Path) -> None:
    res = _invoke("--dir", str(shared_dir / "datasets"))
    assert res.exit_code == 0
    assert "tweeteval_offensive" in res.stdout and "squad_v1_1" in res.stdout
