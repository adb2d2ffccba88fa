"""A space is validated whole before any trial: fixed values, choices, grid values, points and
``when`` conditions; a value no trial could accept is exit 2 naming the file and the field."""

from __future__ import annotations

import pytest

from staytuned.errors import InputError
from staytuned.search.space import parse_space

from .conftest import SYNTH

BAD_SPACES = {
    "fixed": ("params:\n  lora_r: {type: int, values: [8]}\nfixed:\n  learning_rate: -0.001\n",
              "learning_rate"),
    "shorthand-fixed": ("params:\n  learning_rate: -0.001\n  lora_r: [8, 16]\n", "learning_rate"),
    "choices": ("params:\n  learning_rate: {choices: [1.0e-4, -0.001]}\n", "learning_rate"),
    "shorthand-choices": ("params:\n  learning_rate: [1.0e-4, -0.001]\n", "learning_rate"),
    "discrete-values": ("params:\n  learning_rate: {type: float, values: [1.0e-4, -0.001]}\n",
                        "learning_rate"),
    "range": ("params:\n  learning_rate: {type: float, low: -0.001, high: 0.001, "
              "values: [1.0e-4]}\n", "learning_rate.low"),
    "int-choice": ("params:\n  batch_size: {type: int, values: [8, 0]}\n", "batch_size"),
    "point": ("params:\n  learning_rate: {type: float, low: 1.0e-5, high: 1.0e-3, "
              "values: [1.0e-4]}\npoints:\n  - {learning_rate: 0.5}\n", "points[0].learning_rate"),
    "when-method": ("params:\n  lora_r: {type: int, values: [8], when: {method: lroa}}\n",
                    "lora_r.when.method"),
    "when-choice": ("params:\n  lr_scheduler: [linear, cosine]\n  warmup_ratio: {type: float, "
                    "values: [0.1], when: {lr_scheduler: cosin}}\n",
                    "warmup_ratio.when.lr_scheduler"),
    "when-fixed": ("params:\n  lora_r: {type: int, values: [8], when: {epochs: 3}}\n"
                   "fixed:\n  epochs: 2\n", "lora_r.when.epochs"),
    "when-range": ("params:\n  batch_size: {type: int, low: 4, high: 16, step: 4}\n"
                   "  lora_r: {type: int, values: [8], when: {batch_size: [8, 6]}}\n",
                   "lora_r.when.batch_size"),
}


@pytest.mark.parametrize("case", sorted(BAD_SPACES))
def test_a_value_no_trial_accepts_is_refused_when_parsed(case):
    text, field = BAD_SPACES[case]
    import yaml

    with pytest.raises(InputError) as info:
        parse_space(yaml.safe_load(text), source="s.yaml")
    assert info.value.file == "s.yaml" and info.value.field == field, str(info.value)


def test_conditions_on_values_the_parameter_takes_are_fine():
    space = parse_space({"fixed": {"epochs": 2}, "params": {
        "lr_scheduler": ["linear", "cosine"],
        "batch_size": {"type": "int", "low": 4, "high": 16, "step": 4},
        "warmup_ratio": {"type": "float", "values": [0.1], "when": {"lr_scheduler": "cosine"}},
        "lora_r": {"type": "int", "values": [8], "when": {"method": "lora", "epochs": [2, 3],
                                                           "batch_size": [8, 12]}},
        "lora_alpha": {"type": "int", "values": [16], "when": {"model": "anything"}},
    }}, source="s.yaml")
    assert [p.name for p in space.params][-1] == "lora_alpha"


@pytest.mark.parametrize("case", ["fixed", "choices", "when-choice"])
def test_cli_refuses_the_space_before_any_trial(run_cli, tmp_path, case):
    text, field = BAD_SPACES[case]
    (tmp_path / "bad.yaml").write_text(text)
    res = run_cli("tune", "--task", "t", "--model", "m", "--space", "bad.yaml", "--trials", "1",
                  "--trial-fn", SYNTH)
    assert res.exit_code == 2, res.output
    message = res.output.replace("\n", "")
    assert "bad.yaml" in message and f"field {field!r}" in message
    assert not list(tmp_path.glob("runs/*/study.db"))  # no study, so no trial


def test_set_refuses_a_value_no_trial_accepts(run_cli, tmp_path):
    res = run_cli("tune", "--task", "t", "--model", "m", "--space", "preset:demo", "--trials", "1",
                  "--trial-fn", SYNTH, "--set", "learning_rate=-1")
    assert res.exit_code == 2, res.output
    assert "--set" in res.output and "learning_rate" in res.output
    assert not list(tmp_path.glob("runs/*/study.db"))
