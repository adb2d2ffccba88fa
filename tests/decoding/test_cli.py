"""The decoding commands end to end through the CLI (tiny model)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from staytuned.cli import build_app

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def run():
    app = build_app()
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args))

    return invoke


@pytest.mark.parametrize(
    ("flag", "value", "field"),
    [("--temperature", "3", "temperature"), ("--top-p", "0", "top_p"),
     ("--max-new-tokens", "-5", "max_new_tokens"), ("--presence-penalty", "2.5", "presence_penalty")],
)
def test_generate_refuses_bad_values_before_loading(run, flag, value, field):
    # a model that does not exist: the value error must come first, before any loading
    res = run("generate", "--model", "no/such-model", "--prompt", "x", flag, value)
    assert res.exit_code == 2
    assert field in res.output and "expected" in res.output and "loading" not in res.output


def test_generate_json_and_reproducible_seed(run, tmp_path):
    args = ["generate", "--model", "tiny-llama", "--prompt", "Hello", "--prompt", "Bye",
            "--temperature", "0.9", "--top-k", "20", "--seed", "5", "--max-new-tokens", "6",
            "--frequency-penalty", "0.5", "--no-chat", "-q"]
    a = run(*args, "--json", str(tmp_path / "a.json"))
    b = run(*args, "--json", str(tmp_path / "b.json"))
    assert a.exit_code == 0, a.output
    assert b.exit_code == 0, b.output
    ja, jb = (json.loads((tmp_path / f).read_text()) for f in ("a.json", "b.json"))
    assert [g["text"] for g in ja["generations"]] == [g["text"] for g in jb["generations"]]
    assert ja["config"]["top_k"] == 20 and ja["config"]["seed"] == 5
    assert [g["prompt"] for g in ja["generations"]] == ["Hello", "Bye"]
    assert "".join(g["text"] for g in ja["generations"]) in a.stdout.replace("\n", "")


def test_generate_stop_escape_and_config_file(run, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("temperature: 0\nmax_new_tokens: 12\n")
    res = run("generate", "--model", "tiny-llama", "--prompt", "Hello", "--config", str(cfg),
              "--stop", "\\n", "--no-chat", "--json", "-")
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert payload["config"]["stop"] == ["\n"] and payload["config"]["temperature"] == 0.0
    assert "\n" not in payload["generations"][0]["text"]


def test_compare_cli_writes_markdown(run, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("Hello\nThe sky\n")
    out = tmp_path / "cmp.md"
    res = run("compare", "--models", "tiny-llama,tiny-mistral", "--configs", "greedy;t:temperature=1.0,seed=1",
              "--prompts", str(prompts), "--max-new-tokens", "4", "--no-chat", "-o", str(out), "-q")
    assert res.exit_code == 0, res.output
    header = out.read_text().splitlines()[0]
    for col in ("tiny-llama \\| greedy", "tiny-llama \\| t", "tiny-mistral \\| greedy", "tiny-mistral \\| t"):
        assert col in header
    bad = run("compare", "--models", "tiny-llama", "--configs", "x:top_p=0", "--prompts", str(prompts))
    assert bad.exit_code == 2 and "top_p" in bad.output
    bad = run("compare", "--models", "tiny-llama", "--prompts", str(prompts), "-o", str(tmp_path / "x.xlsx"))
    assert bad.exit_code == 2 and "output format" in bad.output


def test_decode_tune_cli(run, tmp_path):
    res = run("decode", "tune", "--model", "tiny-llama", "--task", "sst2", "--strategy", "random",
              "--trials", "2", "--samples", "2", "--eval-size", "3", "--set", "max_new_tokens=3",
              "--storage", f"sqlite:///{tmp_path / 'd.db'}", "--secondary", "output_tokens",
              "--json", str(tmp_path / "t.json"), "-q")
    assert res.exit_code == 0, res.output
    payload = json.loads((tmp_path / "t.json").read_text())
    assert payload["metric"] == "accuracy" and len(payload["configs"]) >= 1
    assert payload["best"]["score"]["n"] in (1, 2)
    assert "winner" in res.stdout
    # the winner's JSON feeds `generate --config`
    gen = run("generate", "--model", "tiny-llama", "--prompt", "x", "--config", str(tmp_path / "t.json"),
              "--max-new-tokens", "2", "--json", "-", "-q")
    assert gen.exit_code == 0, gen.output
    bad = run("decode", "tune", "--model", "tiny-llama", "--task", "sst2", "--strategy", "cbs")
    assert bad.exit_code == 2 and "strategy" in bad.output


def test_serve_refuses_a_bad_port(run):
    res = run("serve", "--model", "tiny-llama", "--port", "70000")
    assert res.exit_code == 2 and "--port" in res.output
