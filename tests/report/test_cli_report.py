"""``staytuned report`` from the command line: output, --json, --png-dir, quiet, errors."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from staytuned.cli import build_app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(build_app(), list(args))


def test_report_from_storage_with_pngs_and_json(storage_url, tmp_path):
    out = tmp_path / "r.html"
    res = run("report", storage_url, "-o", str(out), "--png-dir", str(tmp_path / "png"),
              "--json", str(tmp_path / "r.json"))
    assert res.exit_code == 0, res.output
    assert f"wrote {out}" in res.stdout and "8 of 8 sections shown" in res.stdout
    info = json.loads((tmp_path / "r.json").read_text())
    assert info["html"] == str(out) and len(info["pngs"]) == 11
    assert info["studies"] == ["grid-demo", "decode-demo", "decode-secondary"]
    assert all((tmp_path / "png" / p.rsplit("/", 1)[-1]).exists() for p in info["pngs"])


def test_report_one_study_of_a_table_and_quiet(storage_url, table_csv, tmp_path):
    res = run("report", storage_url, "--study", "decode-demo", "-o", str(tmp_path / "d.html"), "--json", "-", "-q")
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)  # -q: only the JSON on stdout
    assert info["studies"] == ["decode-demo"] and info["sections"]["pareto"] == "shown"
    assert info["sections"]["failed"].startswith("not applicable")
    res = run("report", str(table_csv), "-o", str(tmp_path / "t.html"))
    assert res.exit_code == 0, res.output
    assert "history: not applicable" in " ".join(res.stderr.split())


def test_report_bad_input_exits_2(storage_url, tmp_path):
    for args, message in [
        ((storage_url, "--study", "nope"), "no such study"),
        ((str(tmp_path / "missing.csv"),), "file not found"),
        ((str(tmp_path / "missing.db"),), "no such storage file"),
    ]:
        res = run("report", *args, "-o", str(tmp_path / "x.html"))
        assert res.exit_code == 2, res.output
        assert message in " ".join(res.stderr.split()) and "Traceback" not in res.output
    assert not (tmp_path / "x.html").exists()
