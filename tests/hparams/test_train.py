"""TrainConfig: names and defaults of docs/CONTRACTS.md, coercion, validation messages."""

from __future__ import annotations

import math

import pytest

from staytuned.errors import InputError
from staytuned.hparams.train import TrainConfig

CONTRACT_DEFAULTS = {
    "method": "lora", "learning_rate": 1e-4, "lr_scheduler": "linear", "warmup_ratio": 0.0,
    "weight_decay": 0.0, "batch_size": 8, "epochs": 3, "max_seq_length": 512, "optimizer": "adamw",
    "seed": 0, "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "lora_target_modules": "all-linear",
    "time_decay_k": 1.0, "step_size_epochs": 1.0, "step_gamma": 0.5, "exp_gamma": 0.5,
}


def test_defaults_match_the_contract() -> None:
    assert TrainConfig().to_dict() == CONTRACT_DEFAULTS
    assert TrainConfig(method="full").learning_rate == 1e-5
    assert TrainConfig.from_dict({"method": "full"}).learning_rate == 1e-5
    assert TrainConfig.from_dict({"method": "full", "learning_rate": 3e-5}).learning_rate == 3e-5


def test_config_module_is_light() -> None:
    import subprocess
    import sys

    code = "import sys, staytuned.hparams, staytuned.finetune; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_from_dict_coerces_strings_and_integral_floats() -> None:
    cfg = TrainConfig.from_dict({"learning_rate": "2e-4", "batch_size": 16.0, "epochs": "1.5", "lora_r": "8"})
    assert cfg.learning_rate == 2e-4 and cfg.batch_size == 16 and isinstance(cfg.batch_size, int)
    assert cfg.epochs == 1.5 and cfg.lora_r == 8
    assert TrainConfig.from_dict(cfg, seed=3).seed == 3
    assert TrainConfig.from_dict({"learning_rate": None}).learning_rate == 1e-4  # None = default


@pytest.mark.parametrize("values,field", [
    ({"method": "dora"}, "method"),
    ({"lr_scheduler": "warm_restarts"}, "lr_scheduler"),
    ({"optimizer": "lion"}, "optimizer"),
    ({"precision": "bf16"}, "precision"),  # an execution setting, never part of a config
    ({"learning_rate": 0}, "learning_rate"),
    ({"learning_rate": -1e-4}, "learning_rate"),
    ({"learning_rate": math.nan}, "learning_rate"),
    ({"warmup_ratio": 1.0}, "warmup_ratio"),
    ({"batch_size": 0}, "batch_size"),
    ({"batch_size": 2.5}, "batch_size"),
    ({"epochs": 0}, "epochs"),
    ({"max_seq_length": 4}, "max_seq_length"),
    ({"lora_alpha": 0}, "lora_alpha"),
    ({"lora_r": 0}, "lora_r"),
    ({"lora_dropout": 1.0}, "lora_dropout"),
    ({"lora_target_modules": "q_proj,,v_proj"}, "lora_target_modules"),
    ({"step_gamma": 0}, "step_gamma"),
    ({"exp_gamma": -0.5}, "exp_gamma"),
    ({"batch_size": "eight"}, "batch_size"),
])
def test_invalid_values_name_the_field(values: dict, field: str) -> None:
    with pytest.raises(InputError) as info:
        TrainConfig.from_dict(values)
    assert info.value.field == field
    assert f"field {field!r}" in str(info.value) and "expected" in str(info.value)


def test_unknown_hp_lists_the_valid_names() -> None:
    with pytest.raises(InputError, match="unknown training hyperparameter") as info:
        TrainConfig.from_dict({"lerning_rate": 1e-4})
    assert info.value.field == "lerning_rate" and "learning_rate" in str(info.value)


def test_lora_fields_are_ignored_for_full() -> None:
    cfg = TrainConfig.from_dict({"method": "full", "lora_alpha": 0, "lora_r": -3})
    assert cfg.method == "full"
    assert "lora_alpha" not in cfg.hp_dict() and "lora_alpha" in TrainConfig().hp_dict()


def test_qlora_takes_the_lora_hyperparameters_and_validates_them() -> None:
    from staytuned.hardware import planner
    from staytuned.hparams.schema import DEFAULT_LR, LORA_METHODS, METHODS

    cfg = TrainConfig.from_dict({"method": "qlora", "lora_r": "8", "lora_alpha": 16.0,
                                 "lora_target_modules": "q_proj,v_proj"})
    assert (cfg.method, cfg.learning_rate, cfg.lora_r, cfg.lora_alpha) == ("qlora", 1e-4, 8, 16)
    assert DEFAULT_LR["qlora"] == DEFAULT_LR["lora"] and LORA_METHODS == ("lora", "qlora")
    assert cfg.hp_dict()["lora_target_modules"] == "q_proj,v_proj"  # kept, as for lora
    for bad, field in (({"lora_r": 0}, "lora_r"), ({"lora_alpha": 0}, "lora_alpha"),
                       ({"lora_dropout": 1.0}, "lora_dropout"),
                       ({"lora_target_modules": "q_proj,"}, "lora_target_modules")):
        with pytest.raises(InputError) as info:
            TrainConfig.from_dict({"method": "qlora", **bad})
        assert info.value.field == field
    with pytest.raises(InputError, match="lora, qlora, full"):
        TrainConfig.from_dict({"method": "qlroa"})
    # The memory planner plans the same three methods under the same names.
    assert set(planner.METHODS) == set(METHODS)
