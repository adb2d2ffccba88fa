"""One writer per tool: a resolved config + batch split + schedule mapping -> file text.

Key names follow each tool's documentation (see tests/export/test_writers.py for the lists and
their sources). Writers are pure functions of an :class:`ExportPlan`; nothing here touches disk.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import yaml

from staytuned.export.mapping import OPTIMIZERS, BatchSplit, ScheduleMapping, target_modules
from staytuned.hparams.schema import LORA_METHODS


@dataclass(frozen=True)
class ExportPlan:
    """Everything a writer needs; built by :func:`staytuned.export.plan_export`."""

    target: str
    model: str
    hp: dict[str, Any]
    batch: BatchSplit
    schedule: ScheduleMapping
    source: str
    dataset: str | None = None
    output_dir: str | None = None
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
    #: An execution setting of the exported run, not a hyperparameter: auto, fp32, bf16 or fp16.
    precision: str = "auto"

    @property
    def lora(self) -> bool:
        """A LoRA adapter is trained (lora, and qlora on a 4-bit base)."""
        return self.hp["method"] in LORA_METHODS

    @property
    def qlora(self) -> bool:
        """The frozen base loads in 4-bit NF4 with double quantization (bitsandbytes)."""
        return self.hp["method"] == "qlora"

    @property
    def train_dir(self) -> str:
        if self.output_dir:
            return self.output_dir
        base = self.model.rstrip("/").split("/")[-1] or "model"
        return f"outputs/{base}-{self.hp['method']}"


def _header(plan: ExportPlan, prefix: str = "# ") -> str:
    from staytuned import __version__

    b = plan.batch
    lines = [
        f"{plan.target} config exported by staytuned {__version__} from {plan.source}",
        f"model: {plan.model}; method: {plan.hp['method']}",
        f"effective batch size {b.effective} = {b.micro_batch} per device x {b.grad_accum} "
        f"gradient accumulation x {b.devices} device(s)",
    ]
    lines += [f"WARNING: {w}" for w in plan.warnings]
    lines += [f"NOTE: {n}" for n in plan.notes]
    return "".join(f"{prefix}{line}\n" for line in lines)


def _yaml(plan: ExportPlan, body: dict[str, Any]) -> str:
    return _header(plan) + yaml.safe_dump(body, sort_keys=False, default_flow_style=False, width=100)


# --------------------------------------------------------------------------- axolotl
def axolotl_config(plan: ExportPlan) -> dict[str, Any]:
    """axolotl YAML (docs.axolotl.ai/docs/config-reference.html)."""
    hp = plan.hp
    cfg: dict[str, Any] = {"base_model": plan.model}
    if plan.qlora:
        cfg["load_in_4bit"] = True  # axolotl's QLoRA: NF4 with double quantization
    if plan.lora:
        cfg["adapter"] = "qlora" if plan.qlora else "lora"
        cfg["lora_r"] = hp["lora_r"]
        cfg["lora_alpha"] = hp["lora_alpha"]
        cfg["lora_dropout"] = hp["lora_dropout"]
        modules = target_modules(hp)
        if modules == "all-linear":
            cfg["lora_target_linear"] = True
        else:
            cfg["lora_target_modules"] = modules
    cfg["datasets"] = [{"path": plan.dataset or "mhenrichsen/alpaca_2k_test", "type": "alpaca"}]
    cfg["val_set_size"] = 0.0
    cfg["output_dir"] = plan.train_dir
    cfg["sequence_len"] = hp["max_seq_length"]
    cfg["micro_batch_size"] = plan.batch.micro_batch
    cfg["gradient_accumulation_steps"] = plan.batch.grad_accum
    cfg["num_epochs"] = hp["epochs"]
    cfg["optimizer"] = OPTIMIZERS[hp["optimizer"]]
    cfg["learning_rate"] = hp["learning_rate"]
    cfg.update(_schedule_keys(plan, "lr_scheduler"))
    cfg["seed"] = hp["seed"]
    cfg["bf16"] = {"auto": "auto", "bf16": True, "fp32": False, "fp16": False}[plan.precision]
    if plan.precision == "fp16":
        cfg["fp16"] = True
    return cfg


def _schedule_keys(plan: ExportPlan, scheduler_key: str) -> dict[str, Any]:
    """The schedule, warmup and weight decay as axolotl and LLaMA-Factory name them (the scheduler
    key apart: ``lr_scheduler`` / ``lr_scheduler_type``)."""
    keys: dict[str, Any] = {scheduler_key: plan.schedule.name}
    if plan.schedule.kwargs:
        keys["lr_scheduler_kwargs"] = dict(plan.schedule.kwargs)
    keys["warmup_ratio"] = plan.hp["warmup_ratio"]
    keys["weight_decay"] = plan.hp["weight_decay"]
    return keys


# --------------------------------------------------------------------------- LLaMA-Factory
def llama_factory_config(plan: ExportPlan) -> dict[str, Any]:
    """LLaMA-Factory YAML for ``llamafactory-cli train`` (examples/train_lora/*.yaml)."""
    hp = plan.hp
    cfg: dict[str, Any] = {"model_name_or_path": plan.model}
    if plan.qlora:  # LLaMA-Factory's QLoRA: LoRA on a base it quantizes while loading
        cfg.update(quantization_bit=4, quantization_method="bnb", quantization_type="nf4",
                   double_quantization=True)
    cfg.update(stage="sft", do_train=True, finetuning_type="lora" if plan.lora else hp["method"])
    if plan.lora:
        modules = target_modules(hp)
        cfg["lora_rank"] = hp["lora_r"]
        cfg["lora_alpha"] = hp["lora_alpha"]
        cfg["lora_dropout"] = hp["lora_dropout"]
        cfg["lora_target"] = "all" if modules == "all-linear" else ",".join(modules)
    cfg["dataset"] = plan.dataset or "alpaca_en_demo"
    cfg["template"] = "default"
    cfg["cutoff_len"] = hp["max_seq_length"]
    cfg["output_dir"] = plan.train_dir
    cfg["per_device_train_batch_size"] = plan.batch.micro_batch
    cfg["gradient_accumulation_steps"] = plan.batch.grad_accum
    cfg["learning_rate"] = hp["learning_rate"]
    cfg["num_train_epochs"] = hp["epochs"]
    cfg.update(_schedule_keys(plan, "lr_scheduler_type"))
    cfg["optim"] = OPTIMIZERS[hp["optimizer"]]
    cfg["seed"] = hp["seed"]
    # "auto" means bf16 where the GPU has it; LLaMA-Factory has no auto, and its examples use bf16.
    cfg["bf16"] = plan.precision in ("auto", "bf16")
    if plan.precision == "fp16":
        cfg["fp16"] = True
    return cfg


# --------------------------------------------------------------------------- HF / TRL / PEFT
def _transformers_major() -> int:
    """Major version of the installed transformers (5 when absent: the current API)."""
    try:
        return int(metadata.version("transformers").split(".")[0])
    except (metadata.PackageNotFoundError, ValueError):
        return 5


def training_kwargs(plan: ExportPlan, *, json_mode: bool) -> dict[str, Any]:
    """TrainingArguments keyword arguments shared by ``hf-args`` and ``trl``.

    In JSON the warmup key follows the installed transformers (v5 folded ``warmup_ratio`` into a
    fractional ``warmup_steps``); the Python files choose at run time instead.
    """
    hp = plan.hp
    kw: dict[str, Any] = {
        "output_dir": plan.train_dir,
        "learning_rate": hp["learning_rate"],
        "num_train_epochs": hp["epochs"],
        "per_device_train_batch_size": plan.batch.micro_batch,
        "gradient_accumulation_steps": plan.batch.grad_accum,
        "lr_scheduler_type": plan.schedule.name,
    }
    if plan.schedule.kwargs:
        kw["lr_scheduler_kwargs"] = dict(plan.schedule.kwargs)
    if json_mode:
        key = "warmup_ratio" if _transformers_major() < 5 else "warmup_steps"
        kw[key] = hp["warmup_ratio"]
    kw["weight_decay"] = hp["weight_decay"]
    kw["optim"] = OPTIMIZERS[hp["optimizer"]]
    kw["seed"] = hp["seed"]
    if json_mode:
        # JSON cannot test the GPU at run time, and TRL defaults bf16 to True (which fails on CPUs
        # and older GPUs): state it. "auto" -> false here; the note in the file says when to flip it.
        kw["bf16"] = plan.precision == "bf16"
    elif plan.precision == "bf16":
        kw["bf16"] = True
    if plan.precision == "fp16":
        kw["fp16"] = True
    kw["report_to"] = "none"
    return kw


def lora_kwargs(plan: ExportPlan) -> dict[str, Any]:
    """PEFT LoraConfig keyword arguments."""
    hp = plan.hp
    return {
        "r": hp["lora_r"],
        "lora_alpha": hp["lora_alpha"],
        "lora_dropout": hp["lora_dropout"],
        "target_modules": target_modules(hp),
        "bias": "none",
        "task_type": "CAUSAL_LM",
    }


#: How the base of a qlora export computes, per precision (auto: bf16 where the GPU has it, else fp32).
_COMPUTE_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32", "auto": "float32"}
_COMPUTE_AUTO = "torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32"


def bnb_kwargs(plan: ExportPlan) -> dict[str, Any]:
    """transformers ``BitsAndBytesConfig`` keyword arguments of a qlora base (JSON: the dtype as a name)."""
    return {
        "load_in_4bit": True,
        "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_compute_dtype": _COMPUTE_DTYPES[plan.precision],
        "bnb_4bit_use_double_quant": True,
    }


def _bnb_python(plan: ExportPlan) -> str:
    """``quantization_config = BitsAndBytesConfig(...)`` of a qlora export, else nothing."""
    if not plan.qlora:
        return ""
    kw = bnb_kwargs(plan)
    name = kw.pop("bnb_4bit_compute_dtype")
    dtype = _COMPUTE_AUTO if plan.precision == "auto" else f"torch.{name}"
    return ("# QLoRA: the LoRA adapter trains on the frozen base loaded in 4-bit NF4 (bitsandbytes):\n"
            "# AutoModelForCausalLM.from_pretrained(MODEL, quantization_config=quantization_config)\n"
            "quantization_config = " + _py_call("BitsAndBytesConfig", kw, [f"bnb_4bit_compute_dtype={dtype}"])
            + "\n\n")


def _py_call(name: str, kwargs: dict[str, Any], extra: Sequence[str] = ()) -> str:
    args = [f"    {k}={v!r}," for k, v in kwargs.items()] + [f"    {e}," for e in extra]
    return f"{name}(\n" + "\n".join(args) + "\n)"


_BF16_AUTO = "bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported()"
_WARMUP_PY = (
    "# transformers>=5 folded warmup_ratio into warmup_steps (a float below 1 is a ratio).\n"
    "_ARG_FIELDS = {{f.name for f in dataclasses.fields({cls})}}\n"
    "_WARMUP = {{'warmup_ratio': {ratio!r}}} if 'warmup_ratio' in _ARG_FIELDS else {{'warmup_steps': {ratio!r}}}\n"
)


def _precision_extra(plan: ExportPlan) -> list[str]:
    if plan.precision == "auto":
        return [_BF16_AUTO]
    return [] if plan.precision == "bf16" else ["bf16=False"]  # TRL's default is bf16=True


def hf_args_python(plan: ExportPlan) -> str:
    kw = training_kwargs(plan, json_mode=False)
    return (
        '"""' + _header(plan, prefix="").rstrip() + '\n"""\n\n'
        "import dataclasses\n\nimport torch\nfrom transformers import "
        + ("BitsAndBytesConfig, TrainingArguments" if plan.qlora else "TrainingArguments") + "\n\n"
        f"MODEL = {plan.model!r}\n"
        f"# TrainingArguments has no sequence length: truncate/pack your data to this many tokens.\n"
        f"MAX_SEQ_LENGTH = {plan.hp['max_seq_length']!r}\n\n"
        + _WARMUP_PY.format(cls="TrainingArguments", ratio=plan.hp["warmup_ratio"]) + "\n"
        + _bnb_python(plan)
        + "training_args = "
        + _py_call("TrainingArguments", kw, [*_precision_extra(plan), "**_WARMUP"])
        + "\n"
    )


def hf_args_json(plan: ExportPlan) -> dict[str, Any]:
    return {
        "model_name_or_path": plan.model,
        "max_seq_length": plan.hp["max_seq_length"],
        **({"quantization_config": bnb_kwargs(plan)} if plan.qlora else {}),
        "training_args": training_kwargs(plan, json_mode=True),
        "staytuned": _meta(plan),
    }


def trl_python(plan: ExportPlan) -> str:
    kw = training_kwargs(plan, json_mode=False)
    lora = _py_call("LoraConfig", lora_kwargs(plan)) if plan.lora else "None  # full fine-tuning"
    dataset = plan.dataset or "trl-lib/Capybara"
    return (
        '"""' + _header(plan, prefix="").rstrip() + "\n\nRun: python THIS_FILE [DATASET]"
        ' (a Hub dataset id or a local .json/.jsonl file)\n"""\n\n'
        "import dataclasses\nimport sys\n\nimport torch\nfrom peft import LoraConfig\n"
        + ("from transformers import AutoModelForCausalLM, BitsAndBytesConfig\n" if plan.qlora else "")
        + "from trl import SFTConfig, SFTTrainer\n\n"
        f"MODEL = {plan.model!r}\nDATASET = {dataset!r}\n\n"
        + _WARMUP_PY.format(cls="SFTConfig", ratio=plan.hp["warmup_ratio"])
        + "# TRL renamed max_seq_length to max_length.\n"
        f"_SEQ = {{'max_length': {plan.hp['max_seq_length']!r}}} if 'max_length' in _ARG_FIELDS"
        f" else {{'max_seq_length': {plan.hp['max_seq_length']!r}}}\n\n"
        f"lora_config = {lora}\n\n"
        + _bnb_python(plan)
        + "sft_config = "
        + _py_call("SFTConfig", kw, [*_precision_extra(plan), "**_WARMUP", "**_SEQ"])
        + "\n\n\n"
        "def main(argv: list[str]) -> None:\n"
        "    from datasets import load_dataset\n\n"
        "    source = argv[1] if len(argv) > 1 else DATASET\n"
        "    if source.endswith(('.json', '.jsonl')):\n"
        "        train = load_dataset('json', data_files=source, split='train')\n"
        "    else:\n"
        "        train = load_dataset(source, split='train')\n"
        + ("    model = AutoModelForCausalLM.from_pretrained(MODEL, quantization_config=quantization_config)\n"
           if plan.qlora else "")
        + "    trainer = SFTTrainer(model=" + ("model" if plan.qlora else "MODEL")
        + ", args=sft_config, train_dataset=train, peft_config=lora_config)\n"
        "    trainer.train()\n"
        "    trainer.save_model()\n\n\n"
        "if __name__ == '__main__':\n"
        "    main(sys.argv)\n"
    )


def trl_json(plan: ExportPlan) -> dict[str, Any]:
    sft = training_kwargs(plan, json_mode=True)
    sft["max_length"] = plan.hp["max_seq_length"]
    return {
        "model_name_or_path": plan.model,
        **({"quantization_config": bnb_kwargs(plan)} if plan.qlora else {}),
        "sft_config": sft,
        "lora_config": lora_kwargs(plan) if plan.lora else None,
        "staytuned": _meta(plan),
    }


def peft_json(plan: ExportPlan) -> dict[str, Any]:
    """Flat ``adapter_config.json`` contents: ``LoraConfig(**d)`` and ``LoraConfig.from_pretrained`` read it."""
    return {"base_model_name_or_path": plan.model, "peft_type": "LORA", **lora_kwargs(plan)}


def peft_python(plan: ExportPlan) -> str:
    return (
        '"""' + _header(plan, prefix="").rstrip() + '\n"""\n\n'
        + ("import torch\nfrom peft import LoraConfig\nfrom transformers import BitsAndBytesConfig\n\n"
           if plan.qlora else "from peft import LoraConfig\n\n")
        + f"MODEL = {plan.model!r}\n\n"
        + _bnb_python(plan)
        + "lora_config = " + _py_call("LoraConfig", lora_kwargs(plan)) + "\n"
    )


def _meta(plan: ExportPlan) -> dict[str, Any]:
    from staytuned import __version__

    return {
        "version": __version__,
        "source": plan.source,
        "target": plan.target,
        "hp": plan.hp,
        "batch": {"effective": plan.batch.effective, "micro_batch": plan.batch.micro_batch,
                  "grad_accum": plan.batch.grad_accum, "devices": plan.batch.devices},
        "lr_scheduler": {"source": plan.schedule.source, "exported": plan.schedule.name,
                         "kwargs": plan.schedule.kwargs, "exact": plan.schedule.exact},
        "warnings": list(plan.warnings),
        "notes": list(plan.notes),
    }


def render(plan: ExportPlan, fmt: str) -> str:
    """File text for ``plan`` in ``fmt`` ('yaml', 'py' or 'json')."""
    target = plan.target
    if target == "axolotl":
        return _yaml(plan, axolotl_config(plan))
    if target == "llama-factory":
        return _yaml(plan, llama_factory_config(plan))
    if fmt == "py":
        return {"trl": trl_python, "hf-args": hf_args_python, "peft": peft_python}[target](plan)
    body = {"trl": trl_json, "hf-args": hf_args_json, "peft": peft_json}[target](plan)
    return json.dumps(body, indent=2) + "\n"
