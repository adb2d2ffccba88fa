"""``staytuned export`` end to end: sources (config file, study, --set), outputs, errors, exit codes."""

from __future__ import annotations

import json

import optuna
import pytest
import yaml
from typer.testing import CliRunner

from staytuned.cli import build_app

runner = CliRunner()
MODEL = "Qwen/Qwen2.5-0.5B"


def run(*args: str):
    return runner.invoke(build_app(), list(args))


def _study(path, direction="maximize"):
    """A study with the documented trial user_attrs (docs/CONTRACTS.md, Storage / results)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{path}"
    study = optuna.create_study(study_name="tune-sst2", storage=url, direction=direction)
    study.set_user_attr("kind", "tune")
    dist = {"learning_rate": optuna.distributions.FloatDistribution(1e-5, 1e-3, log=True),
            "batch_size": optuna.distributions.CategoricalDistribution([8, 16, 32])}
    for i, (lr, bs, score, status) in enumerate([(1e-4, 16, 0.80, "ok"), (3e-4, 32, 0.91, "ok"),
                                                 (1e-3, 8, float("nan"), "failed"), (5e-5, 8, 0.70, "ok")]):
        attrs = {"status": status, "error": "OOM" if status == "failed" else None, "task": "sst2",
                 "model": "smollm2-135m", "method": "lora", "seed": 7, "train_size": 100,
                 "config_id": f"c{i}", "metric": "accuracy", "score": score}
        study.add_trial(optuna.trial.create_trial(
            params={"learning_rate": lr, "batch_size": bs}, distributions=dist,
            value=None if status == "failed" else score,
            state=optuna.trial.TrialState.FAIL if status == "failed" else optuna.trial.TrialState.COMPLETE,
            user_attrs=attrs))
    return url


def test_from_study_exports_the_best_trial(tmp_path):
    url = _study(tmp_path / "s.db")
    out = tmp_path / "axolotl.yaml"
    res = run("export", "--to", "axolotl", "--from-study", url, "--model", MODEL, "-o", str(out),
              "--json", str(tmp_path / "r.json"))
    assert res.exit_code == 0, res.output
    cfg = yaml.safe_load(out.read_text())
    assert cfg["learning_rate"] == 3e-4 and cfg["seed"] == 7  # trial 1 (0.91); seed from user_attrs
    assert (cfg["micro_batch_size"], cfg["gradient_accumulation_steps"]) == (8, 4)
    info = json.loads((tmp_path / "r.json").read_text())
    assert info["path"] == str(out) and info["micro_batch"] == 8 and "trial 1" in info["source"]


def test_from_study_minimize_and_bare_db_path(tmp_path):
    _study(tmp_path / "m.db", direction="minimize")
    res = run("export", "--to", "hf-args", "--from-study", str(tmp_path / "m.db"), "--model", MODEL,
              "--format", "json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["training_args"]["learning_rate"] == 5e-5  # lowest score wins


def test_config_file_and_set_override(tmp_path):
    cfg = tmp_path / "best.yaml"
    cfg.write_text("config:\n  hp_learning_rate: 1.0e-4\n  hp_lr_scheduler: exponential\n  hp_batch_size: 12\n")
    res = run("export", "--to", "llama-factory", "--config", str(cfg), "--set", "epochs=1", "--model", MODEL,
              "-o", str(tmp_path / "lf.yaml"))
    assert res.exit_code == 0, res.output
    assert "warning:" in res.stderr and "polynomial" in res.stderr  # the mapping is announced
    out = yaml.safe_load((tmp_path / "lf.yaml").read_text())
    assert (out["per_device_train_batch_size"], out["gradient_accumulation_steps"]) == (6, 2)
    assert out["num_train_epochs"] == 1.0 and out["lr_scheduler_type"] == "polynomial"
    quiet = run("export", "--to", "llama-factory", "--config", str(cfg), "--model", MODEL, "-q",
                "-o", str(tmp_path / "lf2.yaml"))
    assert quiet.exit_code == 0 and quiet.stdout == "" and quiet.stderr == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--to", "axolotl", "--set", "lr_scheduler=step", "--strict"], "no exact equivalent"),
        (["--to", "axolotl", "--set", "batch_size=32", "--micro-batch", "5"], "--micro-batch"),
        (["--to", "nope", "--set", "learning_rate=1e-4"], "unknown export target"),
        (["--to", "axolotl"], "no configuration given"),
        (["--to", "axolotl", "--set", "learnin_rate=1e-4"], "not a training hyperparameter"),
        (["--to", "axolotl", "--config", "missing.yaml"], "config file not found"),
        (["--to", "axolotl", "--from-study", "missing.db"], "no such storage file"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, message):
    res = run("export", *args, "--model", MODEL)
    assert res.exit_code == 2
    assert message in " ".join(res.stderr.split())
    assert "Traceback" not in res.output


def test_study_with_several_studies_needs_a_name(tmp_path):
    url = _study(tmp_path / "s.db")
    optuna.create_study(study_name="other", storage=url)
    res = run("export", "--to", "peft", "--from-study", url, "--model", MODEL)
    assert res.exit_code == 2 and "--study" in res.stderr
    res = run("export", "--to", "peft", "--from-study", url, "--study", "tune-sst2", "--model", MODEL)
    assert res.exit_code == 0 and json.loads(res.stdout)["r"] == 16


def test_from_shipped_recommendation(tmp_path):
    res = run("export", "--to", "trl", "--from-recommendation", "mistral-7b/lora", "--model",
              "mistralai/Mistral-7B-v0.1", "--format", "json", "--json", str(tmp_path / "r.json"))
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    from staytuned.cbs import recommend

    rec = recommend(model="mistral-7b", method="lora").recommendations[0].config
    assert data["sft_config"]["learning_rate"] == rec["learning_rate"]
    assert data["lora_config"]["r"] == rec["lora_r"]
    split = data["sft_config"]["per_device_train_batch_size"] * data["sft_config"]["gradient_accumulation_steps"]
    assert split == rec["batch_size"]
    assert "arXiv" in data["staytuned"]["source"]
    assert any("defaults used" in n for n in data["staytuned"]["notes"])  # what the paper did not give
    bad = run("export", "--to", "trl", "--from-recommendation", "gpt2/lora", "--model", "gpt2")
    assert bad.exit_code == 2 and "no shipped recommendation" in " ".join(bad.stderr.split())


def test_from_recommendation_for_qlora_uses_the_lora_one_as_qlora():
    res = run("export", "--to", "axolotl", "--from-recommendation", "mistral-7b/qlora", "--model",
              "mistralai/Mistral-7B-v0.1")
    assert res.exit_code == 0, res.output
    cfg = yaml.safe_load(res.stdout)
    assert cfg["adapter"] == "qlora" and cfg["load_in_4bit"] is True
    assert cfg["lora_r"] == 128 and cfg["learning_rate"] == 5e-5  # the paper's LoRA configuration
    assert "used for qlora, which has no recommendation of its own" in " ".join(res.stdout.split())
