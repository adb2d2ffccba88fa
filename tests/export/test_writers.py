"""Exported files build the real TRL / PEFT / HF objects, and YAML keys are the tools' documented names."""

from __future__ import annotations

import json
import runpy

import pytest
import yaml

from staytuned.errors import InputError
from staytuned.export import export_config, pick_format

MODEL = "Qwen/Qwen2.5-0.5B"
BEST = {
    "learning_rate": 2e-4,
    "batch_size": 32,
    "epochs": 2,
    "lr_scheduler": "cosine",
    "warmup_ratio": 0.1,
    "weight_decay": 0.01,
    "lora_r": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.1,
    "lora_target_modules": "q_proj,v_proj",
    "max_seq_length": 256,
    "seed": 3,
}

# axolotl: documented config options, https://docs.axolotl.ai/docs/config-reference.html
# (also the README "All yaml options" list: base_model, adapter, lora_r, lora_alpha, lora_dropout,
# lora_target_modules, lora_target_linear, datasets[].path/.type, val_set_size, output_dir,
# sequence_len, micro_batch_size, gradient_accumulation_steps, num_epochs, optimizer, learning_rate,
# lr_scheduler, lr_scheduler_kwargs, warmup_ratio, weight_decay, seed, bf16 ("auto" | true | false)).
AXOLOTL_KEYS = {
    "base_model", "adapter", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules",
    "lora_target_linear", "datasets", "val_set_size", "output_dir", "sequence_len", "micro_batch_size",
    "gradient_accumulation_steps", "num_epochs", "optimizer", "learning_rate", "lr_scheduler",
    "lr_scheduler_kwargs", "warmup_ratio", "weight_decay", "seed", "bf16",
}
# LLaMA-Factory: examples/train_lora/llama3_lora_sft.yaml and src/llamafactory/hparams/
# (model_args: model_name_or_path; finetuning_args: stage, finetuning_type, lora_rank, lora_alpha,
# lora_dropout, lora_target; data_args: dataset, template, cutoff_len) plus the HF
# Seq2SeqTrainingArguments it parses (do_train, output_dir, per_device_train_batch_size,
# gradient_accumulation_steps, learning_rate, num_train_epochs, lr_scheduler_type,
# lr_scheduler_kwargs, warmup_ratio, weight_decay, optim, seed, bf16).
LLAMA_FACTORY_KEYS = {
    "model_name_or_path", "stage", "do_train", "finetuning_type", "lora_rank", "lora_alpha", "lora_dropout",
    "lora_target", "dataset", "template", "cutoff_len", "output_dir", "per_device_train_batch_size",
    "gradient_accumulation_steps", "learning_rate", "num_train_epochs", "lr_scheduler_type",
    "lr_scheduler_kwargs", "warmup_ratio", "weight_decay", "optim", "seed", "bf16",
}
# HF optimizer names (transformers.training_args.OptimizerNames) and scheduler names (SchedulerType).
HF_OPTIMIZERS = {"adamw_torch", "sgd", "adafactor"}
HF_SCHEDULERS = {"linear", "cosine", "constant", "constant_with_warmup", "polynomial"}


def test_axolotl_yaml_keys_and_values(tmp_path):
    r = export_config(BEST, "axolotl", model=MODEL, path=tmp_path / "a.yaml")
    cfg = yaml.safe_load(r.path.read_text())
    assert set(cfg) <= AXOLOTL_KEYS, set(cfg) - AXOLOTL_KEYS
    assert cfg["adapter"] == "lora" and cfg["lora_target_modules"] == ["q_proj", "v_proj"]
    assert (cfg["micro_batch_size"], cfg["gradient_accumulation_steps"]) == (8, 4)
    assert cfg["learning_rate"] == 2e-4 and cfg["num_epochs"] == 2.0 and cfg["sequence_len"] == 256
    assert cfg["lr_scheduler"] == "cosine" and cfg["optimizer"] in HF_OPTIMIZERS and cfg["bf16"] == "auto"
    assert {"path", "type"} <= set(cfg["datasets"][0])
    full = yaml.safe_load(export_config({**BEST, "method": "full", "lora_target_modules": "all-linear"},
                                        "axolotl", model=MODEL).text)
    assert "adapter" not in full and not any(k.startswith("lora_") for k in full)
    linear = yaml.safe_load(export_config({**BEST, "lora_target_modules": "all-linear"}, "axolotl", model=MODEL).text)
    assert linear["lora_target_linear"] is True and "lora_target_modules" not in linear


def test_llama_factory_yaml_keys_and_values(tmp_path):
    r = export_config({**BEST, "lr_scheduler": "exponential"}, "llama-factory", model=MODEL,
                      path=tmp_path / "lf.yml", micro_batch=4)
    text = r.path.read_text()
    cfg = yaml.safe_load(text)
    assert set(cfg) <= LLAMA_FACTORY_KEYS, set(cfg) - LLAMA_FACTORY_KEYS
    assert cfg["stage"] == "sft" and cfg["finetuning_type"] == "lora" and cfg["lora_rank"] == 8
    assert cfg["lora_target"] == "q_proj,v_proj" and cfg["cutoff_len"] == 256
    assert (cfg["per_device_train_batch_size"], cfg["gradient_accumulation_steps"]) == (4, 8)
    assert cfg["lr_scheduler_type"] == "polynomial" and set(cfg["lr_scheduler_kwargs"]) == {"lr_end", "power"}
    assert cfg["optim"] in HF_OPTIMIZERS
    assert "# WARNING: lr_scheduler 'exponential' has no equivalent" in text  # the warning is in the file
    cfg_all = yaml.safe_load(export_config({**BEST, "lora_target_modules": "all-linear"}, "llama-factory",
                                           model=MODEL).text)
    assert cfg_all["lora_target"] == "all"


def test_trl_python_builds_sftconfig_and_loraconfig(tmp_path):
    from peft import LoraConfig
    from trl import SFTConfig

    r = export_config({**BEST, "lr_scheduler": "time_based"}, "trl", model=MODEL, path=tmp_path / "train.py",
                      output_dir=str(tmp_path / "out"))
    ns = runpy.run_path(str(r.path), run_name="staytuned_test")  # not __main__: builds, does not train
    sft, lora = ns["sft_config"], ns["lora_config"]
    assert isinstance(sft, SFTConfig) and isinstance(lora, LoraConfig)
    assert sft.learning_rate == 2e-4 and sft.per_device_train_batch_size == 8
    assert sft.gradient_accumulation_steps == 4 and sft.num_train_epochs == 2
    assert sft.max_length == 256 and sft.seed == 3 and sft.weight_decay == 0.01
    assert sft.lr_scheduler_type.value == "polynomial" and sft.lr_scheduler_kwargs["power"] > 0
    assert sft.warmup_steps == 0.1  # transformers 5: a float below 1 is a warmup ratio
    assert lora.r == 8 and lora.lora_alpha == 16 and set(lora.target_modules) == {"q_proj", "v_proj"}
    assert "WARNING: lr_scheduler 'time_based'" in r.text


def test_trl_json_builds_objects(tmp_path):
    from peft import LoraConfig
    from trl import SFTConfig

    r = export_config(BEST, "trl", model=MODEL, path=tmp_path / "trl.json", output_dir=str(tmp_path / "o"))
    data = json.loads(r.path.read_text())
    sft = SFTConfig(**data["sft_config"])
    lora = LoraConfig(**data["lora_config"])
    assert sft.lr_scheduler_type.value == "cosine" and sft.gradient_accumulation_steps == 4
    assert lora.lora_dropout == 0.1 and data["model_name_or_path"] == MODEL
    full = json.loads(export_config({**BEST, "method": "full"}, "trl", model=MODEL, fmt="json").text)
    assert full["lora_config"] is None


def test_hf_args_python_and_json_build_training_arguments(tmp_path):
    from transformers import TrainingArguments

    py = export_config({**BEST, "optimizer": "adafactor", "precision": "fp32"}, "hf-args", model=MODEL,
                       path=tmp_path / "args.py", output_dir=str(tmp_path / "o"))
    args = runpy.run_path(str(py.path), run_name="staytuned_test")["training_args"]
    assert isinstance(args, TrainingArguments)
    assert args.optim.value == "adafactor" and args.per_device_train_batch_size == 8 and not args.bf16
    js = export_config(BEST, "hf-args", model=MODEL, path=tmp_path / "args.json", output_dir=str(tmp_path / "o"))
    data = json.loads(js.path.read_text())
    args = TrainingArguments(**data["training_args"])
    assert args.learning_rate == 2e-4 and args.gradient_accumulation_steps == 4
    assert args.lr_scheduler_type.value in HF_SCHEDULERS and data["max_seq_length"] == 256


def test_peft_json_is_an_adapter_config(tmp_path):
    from peft import LoraConfig

    # a folder (here one to create, written with a trailing slash) gets adapter_config.json
    r = export_config(BEST, "peft", model=MODEL, path=f"{tmp_path / 'adapter'}/")
    assert r.path == tmp_path / "adapter" / "adapter_config.json"
    loaded = LoraConfig.from_pretrained(str(tmp_path / "adapter"))
    direct = LoraConfig(**json.loads(r.path.read_text()))
    for cfg in (loaded, direct):
        assert cfg.r == 8 and cfg.lora_alpha == 16 and cfg.task_type == "CAUSAL_LM"
        assert cfg.base_model_name_or_path == MODEL
    with pytest.raises(InputError, match="full fine-tuning has no PEFT"):
        export_config({**BEST, "method": "full"}, "peft", model=MODEL)


def test_formats_and_bad_targets(tmp_path):
    assert pick_format("trl", "x.json", None) == "json"
    assert pick_format("trl", None, None) == "py"
    assert pick_format("axolotl", "x.yml", None) == "yaml"
    with pytest.raises(InputError, match="axolotl exports are written as yaml"):
        pick_format("axolotl", "x.json", None)
    with pytest.raises(InputError, match=r"unknown export target.*axolotl, llama-factory, trl, peft, hf-args"):
        export_config(BEST, "unsloth", model=MODEL)
    with pytest.raises(InputError, match="unknown file type"):
        pick_format("trl", "x.txt", None)


def test_qlora_exports_a_4bit_base_and_the_same_lora_adapter(tmp_path):
    from peft import LoraConfig
    from transformers import BitsAndBytesConfig
    from trl import SFTConfig

    qlora = {**BEST, "method": "qlora"}
    axo = yaml.safe_load(export_config(qlora, "axolotl", model=MODEL).text)
    assert set(axo) <= AXOLOTL_KEYS | {"load_in_4bit"}, set(axo) - AXOLOTL_KEYS
    assert axo["adapter"] == "qlora" and axo["load_in_4bit"] is True
    assert (axo["lora_r"], axo["lora_alpha"], axo["lora_dropout"]) == (8, 16, 0.1)
    assert axo["lora_target_modules"] == ["q_proj", "v_proj"]
    lora_axo = yaml.safe_load(export_config(BEST, "axolotl", model=MODEL).text)
    assert {k: v for k, v in axo.items() if k not in ("adapter", "load_in_4bit", "output_dir")} == {
        k: v for k, v in lora_axo.items() if k not in ("adapter", "output_dir")}

    # LLaMA-Factory: QLoRA is finetuning_type lora + on-the-fly 4-bit quantization (model_args.py
    # QuantizationArguments: quantization_bit, quantization_method bnb = bitsandbytes, quantization_type,
    # double_quantization; examples/train_qlora/*.yaml).
    lf = yaml.safe_load(export_config(qlora, "llama-factory", model=MODEL).text)
    quant_keys = {"quantization_bit", "quantization_method", "quantization_type", "double_quantization"}
    assert set(lf) <= LLAMA_FACTORY_KEYS | quant_keys, set(lf) - LLAMA_FACTORY_KEYS
    assert lf["finetuning_type"] == "lora" and lf["quantization_bit"] == 4
    assert lf["quantization_method"] == "bnb" and lf["quantization_type"] == "nf4" and lf["double_quantization"]
    assert (lf["lora_rank"], lf["lora_target"]) == (8, "q_proj,v_proj")

    # TRL: the script builds a BitsAndBytesConfig and loads the base with it.
    py = export_config(qlora, "trl", model=MODEL, path=tmp_path / "train.py", output_dir=str(tmp_path / "o"),
                       precision="fp32")  # bf16 would not build an SFTConfig on a CPU
    ns = runpy.run_path(str(py.path), run_name="staytuned_test")
    bnb, lora, sft = ns["quantization_config"], ns["lora_config"], ns["sft_config"]
    assert isinstance(bnb, BitsAndBytesConfig) and isinstance(lora, LoraConfig) and isinstance(sft, SFTConfig)
    assert bnb.load_in_4bit and bnb.bnb_4bit_quant_type == "nf4" and bnb.bnb_4bit_use_double_quant
    assert bnb.bnb_4bit_compute_dtype == ns["torch"].float32
    assert "bnb_4bit_compute_dtype=torch.bfloat16,\n" in export_config(qlora, "trl", model=MODEL, precision="bf16").text
    assert lora.r == 8 and set(lora.target_modules) == {"q_proj", "v_proj"}
    assert "from_pretrained(MODEL, quantization_config=quantization_config)" in py.text
    js = json.loads(export_config(qlora, "trl", model=MODEL, fmt="json").text)
    bnb_json = BitsAndBytesConfig(**js["quantization_config"])
    assert bnb_json.load_in_4bit and bnb_json.bnb_4bit_quant_type == "nf4"
    assert LoraConfig(**js["lora_config"]).lora_alpha == 16 and js["staytuned"]["hp"]["method"] == "qlora"

    # PEFT: the adapter is a LoRA adapter; the .py file also says how to load the base.
    peft = json.loads(export_config(qlora, "peft", model=MODEL).text)
    assert peft["peft_type"] == "LORA" and peft["r"] == 8
    pns = runpy.run_path(str(export_config(qlora, "peft", model=MODEL, path=tmp_path / "adapter.py").path),
                         run_name="staytuned_test")
    assert isinstance(pns["quantization_config"], BitsAndBytesConfig) and isinstance(pns["lora_config"], LoraConfig)
    assert "quantization_config" not in export_config(BEST, "trl", model=MODEL).text  # lora stays as it was
