"""Every command, bad arguments: exit 2 with a one-line message, never a traceback.

Missing files, folders where files are expected, paths that cannot be read or created (under a
regular file, under /proc: the tests run as root, so chmod 000 would not stop them), wrong types,
empty inputs, bad storage URLs, unknown names and negative sizes. Each case is bad input that
must be refused before any model loads or any trial runs, so the sweep stays cheap; it runs
in-process (Typer's CliRunner), where an escaped exception is ``result.exception``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SYNTH = "staytuned.search.synthetic:synthetic_trial"
PROC = "/proc/nope/x"  # cannot be created or read, also by root

# Placeholders the fixture replaces with paths in tmp_path.
MISSING = "{missing}"  # a path that does not exist
DIR = "{dir}"  # an existing, empty folder
FILE = "{file}"  # a regular file holding junk text
UNDER = "{file}/x"  # a path under a regular file: unreadable, cannot be created
EMPTY_CSV = "{empty_csv}"  # 0 bytes
HEADER_CSV = "{header_csv}"  # a header and no rows
EMPTY_YAML = "{empty_yaml}"  # 0 bytes
EMPTY_SPACE = "{empty_space}"  # a mapping without params
TABLE = "{table}"  # a small valid results table
DB = "{db}"  # a valid storage with one study ('s')

_TUNE = ["tune", "--task", "sst2", "--model", "tiny-llama", "--space", "preset:demo",
         "--trials", "1", "--train-size", "8", "--eval-size", "8"]
_SYN = ["tune", "--task", "t", "--model", "m", "--space", "preset:demo", "--trials", "1",
        "--trial-fn", SYNTH]
_GRID = ["grid", "--tasks", "t", "--models", "m", "--trial-fn", SYNTH]
_DECODE = ["decode", "tune", "--task", "sst2", "--model", "tiny-llama", "--trials", "1",
           "--eval-size", "2", "--samples", "1"]
_GEN = ["generate", "--model", "tiny-llama", "--prompt", "hi", "--max-new-tokens", "2"]
_TRAIN = ["train", "--task", "sst2", "--model", "tiny-llama", "--train-size", "4",
          "--eval-size", "4"]
_EXPORT = ["export", "--to", "peft", "--model", "m"]

CASES: dict[str, list[str]] = {
    # -- cbs rank / evaluate, recommend, simulate: a results table
    **{f"{cmd}-table-{kind}": [*cmd.split(), path] for cmd in ("cbs rank", "cbs evaluate", "simulate")
       for kind, path in (("missing", MISSING), ("dir", DIR), ("junk", FILE), ("under-file", UNDER),
                          ("proc", PROC), ("empty", EMPTY_CSV), ("header-only", HEADER_CSV))},
    "cbs-rank-k-type": ["cbs", "rank", TABLE, "--k", "abc"],
    "cbs-rank-k-negative": ["cbs", "rank", TABLE, "--k", "-1"],
    "cbs-rank-tol-negative": ["cbs", "rank", TABLE, "--tol", "-1"],
    "cbs-rank-unknown-column": ["cbs", "rank", TABLE, "--score-col", "nope"],
    "cbs-rank-bad-agg": ["cbs", "rank", TABLE, "--agg", "sometimes"],
    "cbs-rank-bad-direction": ["cbs", "rank", TABLE, "--direction", "up"],
    "cbs-rank-json-under-file": ["cbs", "rank", TABLE, "--json", UNDER],
    "cbs-rank-json-dir": ["cbs", "rank", TABLE, "--json", DIR],
    "cbs-evaluate-k-zero": ["cbs", "evaluate", TABLE, "--k", "0"],
    "cbs-evaluate-csv-under-file": ["cbs", "evaluate", TABLE, "--csv", UNDER],
    "cbs-evaluate-plot-dir": ["cbs", "evaluate", TABLE, "--plot", DIR],
    "cbs-evaluate-plot-suffix": ["cbs", "evaluate", TABLE, "--plot", "x.gif"],
    "cbs-evaluate-random-perms-negative": ["cbs", "evaluate", TABLE, "--random-perms", "-3"],
    "cbs-rank-unknown-ranker": ["cbs", "rank", TABLE, "--ranker", "tpe"],
    "cbs-rank-tol-word": ["cbs", "rank", TABLE, "--tol", "often"],
    "cbs-rank-tol-auto-abs-tol": ["cbs", "rank", TABLE, "--tol", "auto", "--abs-tol", "0.1"],
    "cbs-evaluate-tol-word": ["cbs", "evaluate", TABLE, "--tol", "often"],
    "cbs-evaluate-tol-too-big": ["cbs", "evaluate", TABLE, "--tol", "1.5"],
    "recommend-unknown-model": ["recommend", "--model", "no-such-model"],
    "recommend-bad-method": ["recommend", "--method", "half"],
    "recommend-negative-size": ["recommend", "--train-size", "-5"],
    "recommend-k-negative": ["recommend", "--k", "-1"],
    "recommend-table-missing": ["recommend", MISSING],
    "recommend-table-empty": ["recommend", EMPTY_CSV],
    "recommend-yaml-under-file": ["recommend", "--yaml", UNDER],
    "simulate-unknown-strategy": ["simulate", TABLE, "--strategies", "bayes"],
    "simulate-k-zero": ["simulate", TABLE, "--k", "0"],
    "simulate-seeds-negative": ["simulate", TABLE, "--seeds", "-1"],
    "simulate-tol-type": ["simulate", TABLE, "--tol", "abc"],
    # -- tasks
    "tasks-dir-missing": ["tasks", "--dir", MISSING],
    "tasks-dir-is-file": ["tasks", "--dir", FILE],
    "tasks-json-under-file": ["tasks", "--json", UNDER],
    "tasks-json-proc": ["tasks", "--json", PROC],
    # -- train (every case is refused before the model loads)
    "train-task-missing": [*_TRAIN[:2], MISSING, *_TRAIN[3:]],
    "train-task-dir": [*_TRAIN[:2], DIR, *_TRAIN[3:]],
    "train-task-empty-csv": [*_TRAIN[:2], EMPTY_CSV, *_TRAIN[3:]],
    "train-task-unknown": [*_TRAIN[:2], "no-such-task", *_TRAIN[3:]],
    "train-model-unknown": [*_TRAIN[:4], "no-such-model", *_TRAIN[5:]],
    "train-model-dir": [*_TRAIN[:4], DIR, *_TRAIN[5:]],
    "train-model-junk-file": [*_TRAIN[:4], FILE, *_TRAIN[5:]],
    "train-lr-type": [*_TRAIN, "--lr", "abc"],
    "train-lr-negative": [*_TRAIN, "--lr", "-1"],
    "train-epochs-negative": [*_TRAIN, "--epochs", "-1"],
    "train-batch-zero": [*_TRAIN, "--batch-size", "0"],
    "train-size-negative": [*_TRAIN, "--train-size", "-5"],
    "train-config-missing": [*_TRAIN, "--config", MISSING],
    "train-config-dir": [*_TRAIN, "--config", DIR],
    "train-config-empty": [*_TRAIN, "--config", EMPTY_YAML],
    "train-unknown-hp": [*_TRAIN, "--hp", "lerning_rate=1e-4"],
    "train-precision": [*_TRAIN, "--precision", "fp8"],
    "train-checkpointing": [*_TRAIN, "--gradient-checkpointing", "maybe"],
    "train-threads-zero": [*_TRAIN, "--threads", "0"],
    "train-save-dir-under-file": [*_TRAIN, "--save-dir", UNDER],
    "train-json-under-file": [*_TRAIN, "--json", UNDER],
    "train-command-missing": [*_TRAIN, "--trainer", "command"],
    "train-command-placeholder": [*_TRAIN, "--trainer", "command", "--command", "python t.py {{confg}}"],
    "train-command-other-trainer": [*_TRAIN, "--command", "python t.py"],
    "train-command-format": [*_TRAIN, "--trainer", "command", "--command", "t", "--command-format", "yaml"],
    "train-command-regex": [*_TRAIN, "--trainer", "command", "--command", "t", "--metric-regex", "("],
    "train-trial-timeout-zero": [*_TRAIN, "--trainer", "command", "--command", "t", "--trial-timeout", "0"],
    # -- tune
    "tune-trials-type": [*_SYN, "--trials", "abc"],
    "tune-command-missing": [*_SYN, "--trainer", "command"],
    "tune-command-placeholder": [*_SYN, "--trainer", "command", "--command", "t {{nope}}"],
    "tune-trials-zero": [*_SYN, "--trials", "0"],
    "tune-trials-negative": [*_SYN, "--trials", "-2"],
    "tune-workers-zero": [*_SYN, "--workers", "0"],
    "tune-workers-type": [*_SYN, "--workers", "many"],
    "tune-workers-negative": [*_SYN, "--workers", "-1"],
    "tune-gpus-per-trial-negative": [*_SYN, "--gpus-per-trial", "-1"],
    "tune-gpus-per-trial-type": [*_SYN, "--gpus-per-trial", "all"],
    "tune-share-gpus-on-ray": [*_SYN, "--backend", "ray", "--share-gpus"],
    "tune-train-size-negative": [*_SYN, "--train-size", "-5"],
    "tune-eval-size-negative": [*_SYN, "--eval-size", "-1"],
    "tune-heartbeat-zero": [*_SYN, "--heartbeat", "0"],
    "tune-space-missing": [*_SYN, "--space", MISSING],
    "tune-space-dir": [*_SYN, "--space", DIR],
    "tune-space-empty-yaml": [*_SYN, "--space", EMPTY_YAML],
    "tune-space-empty": [*_SYN, "--space", EMPTY_SPACE],
    "tune-space-junk": [*_SYN, "--space", FILE],
    "tune-space-proc": [*_SYN, "--space", PROC + ".yaml"],
    "tune-space-preset-unknown": [*_SYN, "--space", "preset:nope"],
    "tune-space-decode-kind": [*_SYN, "--space", "preset:decoding"],
    "tune-strategy-unknown": [*_SYN, "--strategy", "bayes"],
    "tune-pruner-unknown": [*_SYN, "--pruner", "sometimes"],
    "tune-method-unknown": [*_SYN, "--method", "half"],
    "tune-backend-unknown": [*_SYN, "--backend", "slurm"],
    "tune-set-not-assignment": [*_SYN, "--set", "learning_rate"],
    "tune-set-unknown": [*_SYN, "--set", "lerning_rate=1e-4"],
    "tune-set-negative-lr": [*_SYN, "--set", "learning_rate=-1"],
    "tune-set-wrong-type": [*_SYN, "--set", "epochs=many"],
    "tune-cbs-table-missing": [*_SYN, "--strategy", "cbs", "--cbs-table", MISSING],
    "tune-cbs-table-empty": [*_SYN, "--strategy", "cbs", "--cbs-table", EMPTY_CSV],
    "tune-cbs-table-dir": [*_SYN, "--strategy", "cbs", "--cbs-table", DIR],
    "tune-cbs-k-negative": [*_SYN, "--strategy", "cbs+tpe", "--cbs-k", "-1"],
    "tune-zeroshot-table-missing": [*_SYN, "--strategy", "zeroshot", "--cbs-table", MISSING],
    "tune-storage-proc": [*_SYN, "--storage", "sqlite:////proc/nope/x.db"],
    "tune-storage-under-file": [*_SYN, "--storage", "sqlite:///{file}/x.db"],
    "tune-storage-dir": [*_SYN, "--storage", "sqlite:///{dir}"],
    "tune-storage-junk-file": [*_SYN, "--storage", "sqlite:///{file}"],
    "tune-storage-bare-junk-file": [*_SYN, "--storage", FILE],
    "tune-storage-scheme": [*_SYN, "--storage", "nosuchdb://x/y"],
    "tune-storage-unreachable": [*_SYN, "--storage", "postgresql://nobody@127.0.0.1:1/x"],
    "tune-runs-dir-is-file": [*_SYN, "--runs-dir", FILE],
    "tune-runs-dir-proc": [*_SYN, "--runs-dir", "/proc/nope"],
    "tune-json-under-file": [*_SYN, "--json", UNDER],
    "tune-json-dir": [*_SYN, "--json", DIR],
    "tune-task-missing": [*_TUNE[:2], MISSING, *_TUNE[3:]],
    "tune-task-dir": [*_TUNE[:2], DIR, *_TUNE[3:]],
    "tune-task-empty-csv": [*_TUNE[:2], EMPTY_CSV, *_TUNE[3:]],
    "tune-model-unknown": [*_TUNE[:4], "no-such-model", *_TUNE[5:]],
    "tune-model-dir": [*_TUNE[:4], DIR, *_TUNE[5:]],
    "tune-precision": [*_TUNE, "--precision", "fp8"],
    "tune-checkpointing": [*_TUNE, "--gradient-checkpointing", "yes"],
    "tune-threads-zero": [*_TUNE, "--threads", "0"],
    "tune-micro-batch-negative": [*_TUNE, "--micro-batch-size", "-4"],
    # -- grid
    "grid-no-tasks": ["grid", "--tasks", "", "--models", "m", "--trial-fn", SYNTH],
    "grid-no-models": ["grid", "--tasks", "t", "--models", ",", "--trial-fn", SYNTH],
    "grid-size-negative": [*_GRID, "--train-sizes", "-5"],
    "grid-command-missing": [*_GRID, "--trainer", "command"],
    "grid-size-type": [*_GRID, "--train-sizes", "many"],
    "grid-method-unknown": [*_GRID, "--methods", "half"],
    "grid-space-missing": [*_GRID, "--space", MISSING],
    "grid-space-empty": [*_GRID, "--space", EMPTY_SPACE],
    "grid-workers-zero": [*_GRID, "--workers", "0"],
    "grid-workers-type": [*_GRID, "--workers", "x"],
    "grid-gpus-per-trial-fraction": [*_GRID, "--gpus-per-trial", "1.5"],
    "grid-storage-proc": [*_GRID, "--storage", "sqlite:////proc/nope/x.db"],
    "grid-storage-under-file": [*_GRID, "--storage", "sqlite:///{file}/x.db"],
    "grid-set-negative-lr": [*_GRID, "--set", "learning_rate=-1"],
    "grid-checkpointing": [*_GRID, "--gradient-checkpointing", "ON"],
    "grid-json-under-file": [*_GRID, "--json", UNDER],
    "grid-task-missing": ["grid", "--tasks", MISSING, "--models", "tiny-llama"],
    "grid-model-unknown": ["grid", "--tasks", "sst2", "--models", "no-such-model"],
    # -- results export
    "export-results-missing": ["results", "export", MISSING + ".db", "-o", "t.csv"],
    "export-results-dir": ["results", "export", DIR, "-o", "t.csv"],
    "export-results-junk": ["results", "export", FILE, "-o", "t.csv"],
    "export-results-proc": ["results", "export", "sqlite:////proc/nope/x.db", "-o", "t.csv"],
    "export-results-under-file": ["results", "export", "sqlite:///{file}/x.db", "-o", "t.csv"],
    "export-results-scheme": ["results", "export", "nosuchdb://x/y", "-o", "t.csv"],
    "export-results-format": ["results", "export", DB, "-o", "t.xlsx"],
    "export-results-out-under-file": ["results", "export", DB, "-o", UNDER + ".csv"],
    "export-results-out-dir": ["results", "export", DB, "-o", "{dir_csv}"],
    "export-results-study": ["results", "export", DB, "-o", "t.csv", "--study", "nope"],
    # -- decode tune (refused before the model loads)
    "decode-trials-type": [*_DECODE, "--trials", "abc"],
    "decode-trials-zero": [*_DECODE, "--trials", "0"],
    "decode-samples-zero": [*_DECODE, "--samples", "0"],
    "decode-eval-size-negative": [*_DECODE, "--eval-size", "-1"],
    "decode-confidence": [*_DECODE, "--confidence", "2"],
    "decode-strategy": [*_DECODE, "--strategy", "bayes"],
    "decode-space-missing": [*_DECODE, "--space", MISSING],
    "decode-space-train-kind": [*_DECODE, "--space", "preset:lora"],
    "decode-space-empty": [*_DECODE, "--space", EMPTY_YAML],
    "decode-set-negative": [*_DECODE, "--set", "temperature=-1"],
    "decode-set-unknown": [*_DECODE, "--set", "temprature=1"],
    "decode-set-not-assignment": [*_DECODE, "--set", "temperature"],
    "decode-secondary": [*_DECODE, "--secondary", "beauty"],
    "decode-storage-proc": [*_DECODE, "--storage", "sqlite:////proc/nope/x.db"],
    "decode-storage-under-file": [*_DECODE, "--storage", "sqlite:///{file}/x.db"],
    "decode-task-unknown": [*_DECODE[:3], "no-such-task", *_DECODE[4:]],
    "decode-task-empty-csv": [*_DECODE[:3], EMPTY_CSV, *_DECODE[4:]],
    "decode-model-unknown": [*_DECODE[:5], "no-such-model", *_DECODE[6:]],
    "decode-backend": [*_DECODE, "--backend", "grpc"],
    "decode-http-no-url": [*_DECODE, "--backend", "http"],
    "decode-json-under-file": [*_DECODE, "--json", UNDER],
    # -- generate
    "generate-model-unknown": ["generate", "--model", "no-such-model", "--prompt", "hi"],
    "generate-model-dir": ["generate", "--model", DIR, "--prompt", "hi"],
    "generate-temperature-negative": [*_GEN, "--temperature", "-1"],
    "generate-temperature-type": [*_GEN, "--temperature", "warm"],
    "generate-top-p": [*_GEN, "--top-p", "2"],
    "generate-max-new-tokens-zero": [*_GEN, "--max-new-tokens", "0"],
    "generate-config-missing": [*_GEN, "--config", MISSING],
    "generate-config-dir": [*_GEN, "--config", DIR],
    "generate-config-empty": [*_GEN, "--config", EMPTY_YAML],
    "generate-config-junk": [*_GEN, "--config", FILE],
    "generate-backend": [*_GEN, "--backend", "grpc"],
    "generate-http-no-url": [*_GEN, "--backend", "http"],
    "generate-batch-zero": [*_GEN, "--batch-size", "0"],
    "generate-json-under-file": [*_GEN, "--json", UNDER],
    # -- compare
    "compare-no-models": ["compare", "--models", ",", "--prompts", FILE],
    "compare-prompts-missing": ["compare", "--models", "tiny-llama", "--prompts", MISSING],
    "compare-prompts-dir": ["compare", "--models", "tiny-llama", "--prompts", DIR],
    "compare-prompts-empty": ["compare", "--models", "tiny-llama", "--prompts", "{empty_txt}"],
    "compare-prompts-proc": ["compare", "--models", "tiny-llama", "--prompts", PROC + ".txt"],
    "compare-configs": ["compare", "--models", "tiny-llama", "--prompts", FILE, "--configs",
                        "warm:temperature=hot"],
    "compare-configs-missing-file": ["compare", "--models", "tiny-llama", "--prompts", FILE,
                                     "--configs", MISSING + ".yaml"],
    "compare-task-unknown": ["compare", "--models", "tiny-llama", "--task", "no-such-task"],
    "compare-n-zero": ["compare", "--models", "tiny-llama", "--task", "sst2", "--n", "0"],
    "compare-output-format": ["compare", "--models", "tiny-llama", "--prompts", FILE, "-o", "x.xlsx"],
    "compare-output-under-file": ["compare", "--models", "tiny-llama", "--prompts", FILE, "-o",
                                  UNDER + ".csv"],
    "compare-model-unknown": ["compare", "--models", "no-such-model", "--prompts", FILE],
    # -- serve (never with a loadable model: a mistake here would serve forever)
    "serve-model-unknown": ["serve", "--model", "no-such-model"],
    "serve-model-dir": ["serve", "--model", DIR],
    "serve-port-zero": ["serve", "--model", "no-such-model", "--port", "0"],
    "serve-port-type": ["serve", "--model", "no-such-model", "--port", "http"],
    "serve-port-range": ["serve", "--model", "no-such-model", "--port", "70000"],
    # -- report
    "report-missing": ["report", MISSING + ".csv"],
    "report-dir": ["report", DIR],
    "report-junk": ["report", FILE],
    "report-empty-csv": ["report", EMPTY_CSV],
    "report-header-csv": ["report", HEADER_CSV],
    "report-proc": ["report", "sqlite:////proc/nope/x.db"],
    "report-under-file": ["report", "sqlite:///{file}/x.db"],
    "report-study": ["report", DB, "--study", "nope"],
    "report-output-under-file": ["report", TABLE, "-o", UNDER + ".html"],
    "report-output-dir": ["report", TABLE, "-o", DIR],
    "report-png-dir-file": ["report", TABLE, "--png-dir", FILE],
    "report-k-zero": ["report", TABLE, "--k", "0"],
    "report-tol-negative": ["report", TABLE, "--tol", "-1"],
    "report-unknown-column": ["report", TABLE, "--score-col", "nope"],
    # -- export
    "export-target": [*_EXPORT[:2], "slurm", *_EXPORT[3:], "--set", "learning_rate=1e-4"],
    "export-no-source": _EXPORT,
    "export-config-missing": [*_EXPORT, "--config", MISSING],
    "export-config-dir": [*_EXPORT, "--config", DIR],
    "export-config-empty": [*_EXPORT, "--config", EMPTY_YAML],
    "export-config-junk": [*_EXPORT, "--config", FILE],
    "export-recommendation": [*_EXPORT, "--from-recommendation", "nope/lora"],
    "export-rank-zero": [*_EXPORT, "--from-recommendation", "smollm2-135m/lora", "--rank", "0"],
    "export-study-missing": [*_EXPORT, "--from-study", MISSING + ".db"],
    "export-study-proc": [*_EXPORT, "--from-study", "sqlite:////proc/nope/x.db"],
    "export-study-unknown": [*_EXPORT, "--from-study", DB, "--study", "nope"],
    "export-set-negative-lr": [*_EXPORT, "--set", "learning_rate=-1"],
    "export-micro-batch-zero": [*_EXPORT, "--set", "learning_rate=1e-4", "--micro-batch", "0"],
    "export-devices-zero": [*_EXPORT, "--set", "learning_rate=1e-4", "--devices", "0"],
    "export-output-under-file": [*_EXPORT, "--set", "learning_rate=1e-4", "-o", UNDER + ".json"],
    "export-format": [*_EXPORT, "--set", "learning_rate=1e-4", "--format", "toml"],
    # -- plan
    "plan-model-unknown": ["plan", "--model", "no-such-model"],
    "plan-model-dir": ["plan", "--model", DIR],
    "plan-model-junk-file": ["plan", "--model", FILE],
    "plan-model-missing-json": ["plan", "--model", MISSING + "/config.json"],
    "plan-method": ["plan", "--model", "llama-3-8b", "--method", "half"],
    "plan-seq-zero": ["plan", "--model", "llama-3-8b", "--max-seq-length", "0"],
    "plan-seq-type": ["plan", "--model", "llama-3-8b", "--max-seq-length", "long"],
    "plan-micro-batch-negative": ["plan", "--model", "llama-3-8b", "--micro-batch", "-1"],
    "plan-lora-r-negative": ["plan", "--model", "llama-3-8b", "--lora-r", "-8"],
    "plan-optimizer": ["plan", "--model", "llama-3-8b", "--optimizer", "lion9"],
    "plan-precision": ["plan", "--model", "llama-3-8b", "--precision", "fp8"],
    "plan-checkpointing": ["plan", "--model", "llama-3-8b", "--gradient-checkpointing", "maybe"],
    "plan-device": ["plan", "--model", "llama-3-8b", "--device", "tpu"],
    "plan-gpu-memory-type": ["plan", "--model", "llama-3-8b", "--gpu-memory", "big"],
    "plan-gpu-memory-empty": ["plan", "--model", "llama-3-8b", "--gpu-memory", ","],
    "plan-gpu-memory-negative": ["plan", "--model", "llama-3-8b", "--gpu-memory", "-24"],
    "plan-margin": ["plan", "--model", "llama-3-8b", "--margin", "2"],
    "plan-json-under-file": ["plan", "--model", "llama-3-8b", "--json", UNDER],
    # -- doctor
    "doctor-json-under-file": ["doctor", "--json", UNDER],
    "doctor-json-proc": ["doctor", "--json", PROC],
    "doctor-json-dir": ["doctor", "--json", DIR],
}


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad-args")
    (root / "adir").mkdir()
    (root / "folder.csv").mkdir()
    (root / "afile").write_text("not a table, not a database: just text\n")
    (root / "empty.csv").write_text("")
    (root / "empty.txt").write_text("")
    (root / "header.csv").write_text("dataset,config_id,score\n")
    (root / "empty.yaml").write_text("")
    (root / "empty-space.yaml").write_text("name: empty\nparams: {}\n")
    rows = ["dataset,hp_learning_rate,score"]
    rows += [f"d{d},{lr},{0.5 + 0.1 * d + lr}" for d in range(3) for lr in (1e-4, 3e-4, 1e-3)]
    (root / "table.csv").write_text("\n".join(rows) + "\n")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    optuna.create_study(study_name="s", storage=f"sqlite:///{root / 'study.db'}")
    return {"missing": str(root / "missing"), "dir": str(root / "adir"),
            "dir_csv": str(root / "folder.csv"),
            "file": str(root / "afile"), "empty_csv": str(root / "empty.csv"),
            "empty_txt": str(root / "empty.txt"), "header_csv": str(root / "header.csv"),
            "empty_yaml": str(root / "empty.yaml"), "empty_space": str(root / "empty-space.yaml"),
            "table": str(root / "table.csv"), "db": str(root / "study.db"), "root": str(root)}


@pytest.fixture(scope="module")
def app():
    from staytuned.cli import build_app

    return build_app()


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_arguments_exit_2_without_traceback(case, places, app, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    args = [a.format(**places) for a in CASES[case]]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    res = CliRunner().invoke(app, args)
    text = res.output
    assert "Traceback" not in text, f"{case}: {args}\n{text}"
    exc = res.exception
    assert isinstance(exc, SystemExit) and res.exit_code == 2, (
        f"{case}: {args} -> exit {res.exit_code}, {exc!r}\n{text}")
    message = [line for line in text.splitlines() if line.strip()]
    assert message, f"{case}: exit 2 without a message"
    assert not list(tmp_path.glob("runs/*/study.db")), f"{case}: a study was created"


def test_every_command_is_swept(app):
    """A new command joins the sweep: its name must appear in CASES."""
    import typer.main

    click_app = typer.main.get_command(app)
    names: set[str] = set()
    for name, cmd in click_app.commands.items():
        sub = getattr(cmd, "commands", None)
        names.update(f"{name} {s}" for s in sub) if sub else names.add(name)
    swept = {" ".join(a for a in args[:2] if not a.startswith("-") and "{" not in a
                      and "/" not in a) for args in CASES.values()}
    swept |= {args[0] for args in CASES.values()}
    missing = sorted(n for n in names if n not in swept)
    assert not missing, f"commands without bad-argument cases: {missing}"


@pytest.mark.parametrize("url", ["sqlite:////proc/nope/x.db", "sqlite:///{file}/x.db"])
def test_bad_storage_in_a_real_process(url, places, tmp_path):
    """The storage errors of the issue, as a user sees them: a subprocess, stderr not a TTY."""
    import subprocess
    import sys

    url = url.format(**places)
    exe = Path(sys.executable).with_name("staytuned")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "staytuned.cli"]
    proc = subprocess.run([*cmd, "tune", "--task", "t", "--model", "m", "--trials", "1",
                           "--trial-fn", SYNTH, "--storage", url],
                          cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "80"})
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert url in proc.stderr.replace("\n", "")
