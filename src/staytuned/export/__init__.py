"""Export a staytuned config as a ready-to-run config for axolotl, LLaMA-Factory, TRL, PEFT or HF.

>>> result = export_config({"learning_rate": 2e-4, "batch_size": 32}, "axolotl", model="Qwen/Qwen2.5-0.5B")
>>> result.path is None and "micro_batch_size: 8" in result.text
True
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from staytuned._util.io import atomic_write_text
from staytuned.errors import InputError
from staytuned.export.mapping import map_schedule, resolve_config, split_batch
from staytuned.export.writers import ExportPlan, render
from staytuned.hparams.schema import LORA_METHODS, check_execution, split_execution

#: target -> (formats, default format)
TARGETS: dict[str, tuple[tuple[str, ...], str]] = {
    "axolotl": (("yaml",), "yaml"),
    "llama-factory": (("yaml",), "yaml"),
    "trl": (("py", "json"), "py"),
    "peft": (("json", "py"), "json"),
    "hf-args": (("py", "json"), "py"),
}
_SUFFIX = {".yaml": "yaml", ".yml": "yaml", ".py": "py", ".json": "json"}

__all__ = ["TARGETS", "ExportPlan", "ExportResult", "export_config", "plan_export", "write_export"]


@dataclass(frozen=True)
class ExportResult:
    """An exported file: its text, format, the plan it came from and where it was written."""

    plan: ExportPlan
    format: str
    text: str
    path: Path | None = None

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.plan.warnings

    def to_dict(self) -> dict[str, Any]:
        b = self.plan.batch
        return {
            "path": str(self.path) if self.path else None,
            "target": self.plan.target,
            "format": self.format,
            "model": self.plan.model,
            "source": self.plan.source,
            "hp": self.plan.hp,
            "micro_batch": b.micro_batch,
            "grad_accum": b.grad_accum,
            "devices": b.devices,
            "lr_scheduler": self.plan.schedule.name,
            "lr_scheduler_kwargs": self.plan.schedule.kwargs,
            "warnings": list(self.plan.warnings),
            "notes": list(self.plan.notes),
        }


def pick_format(target: str, path: str | Path | None, fmt: str | None) -> str:
    """The format asked for, else the one the file suffix implies, else the target's default."""
    if target not in TARGETS:
        raise InputError("unknown export target", field="target", value=target, expected=", ".join(TARGETS))
    formats, default = TARGETS[target]
    if fmt is None and path is not None:
        fmt = _SUFFIX.get(Path(path).suffix.lower())
        if fmt is None and Path(path).suffix:
            raise InputError("unknown file type", field="path", value=str(path),
                             expected=" or ".join(f".{f}" for f in formats))
    fmt = fmt or default
    if fmt not in formats:
        raise InputError(f"{target} exports are written as {' or '.join(formats)}", field="fmt",
                         value=fmt, expected=" or ".join(formats))
    return fmt


def plan_export(
    config: dict[str, Any],
    target: str,
    *,
    model: str,
    source: str = "a config",
    micro_batch: int | None = None,
    devices: int = 1,
    dataset: str | None = None,
    output_dir: str | None = None,
    strict: bool = False,
    precision: str | None = None,
) -> ExportPlan:
    """Resolve defaults, split the batch and map the schedule for ``target``.

    ``precision`` is an execution setting of the exported run (auto, fp32, bf16, fp16); a config
    that carries execution settings (e.g. an older study's) has them split off, and an explicit
    ``precision`` wins over the config's.
    """
    if target not in TARGETS:
        raise InputError("unknown export target", field="target", value=target, expected=", ".join(TARGETS))
    if not model or not str(model).strip():
        raise InputError("a model id is required", field="model", expected="e.g. Qwen/Qwen2.5-0.5B")
    config, execution = split_execution(config)
    precision = check_execution({"precision": precision or execution.get("precision") or "auto"})[
        "precision"]
    hp = resolve_config(config)
    if target == "peft" and hp["method"] not in LORA_METHODS:
        raise InputError("full fine-tuning has no PEFT adapter config", field="method",
                         value=hp["method"], expected="lora or qlora (or export to trl or hf-args)")
    batch = split_batch(hp["batch_size"], micro_batch, devices)
    schedule = map_schedule(hp, strict=strict)
    warnings = [schedule.warning] if schedule.warning and target != "peft" else []
    notes: list[str] = []
    defaulted = _defaulted(config, hp)
    if defaulted:
        notes.append("not set by the source, staytuned defaults used: " + ", ".join(defaulted))
    if target == "peft":
        notes.append("a PEFT LoraConfig holds only the adapter; export to trl or hf-args for "
                     "the learning rate, schedule and batch size")
    if hp["method"] == "qlora":
        notes.append("qlora: LoRA on the base loaded in 4-bit NF4 with double quantization (bitsandbytes)"
                     + ("; adapter_config.json cannot say so: load the base with that "
                        "BitsAndBytesConfig (export to peft as .py for it)" if target == "peft" else ""))
    if target == "hf-args":
        notes.append(f"TrainingArguments has no sequence length: truncate inputs to "
                     f"{hp['max_seq_length']} tokens")
    if precision == "auto" and target in ("trl", "hf-args"):
        notes.append("precision 'auto': bf16 where the GPU supports it (Python files decide at run time; "
                     "JSON files say \"bf16\": false: set it true on such GPUs"
                     + (", and bnb_4bit_compute_dtype \"bfloat16\")" if hp["method"] == "qlora" else ")"))
    return ExportPlan(target=target, model=str(model), hp=hp, batch=batch, schedule=schedule,
                      source=source, dataset=dataset, output_dir=output_dir,
                      warnings=tuple(warnings), notes=tuple(notes), precision=precision)


_ONLY_FOR = {"time_decay_k": "time_based", "step_size_epochs": "step", "step_gamma": "step", "exp_gamma": "exponential"}


def _defaulted(config: dict[str, Any], hp: dict[str, Any]) -> list[str]:
    """HPs the export filled in (the ones that matter for this config)."""
    from staytuned.export.mapping import DEFAULTS

    out = []
    for name in ("learning_rate", *DEFAULTS):
        if name in config or name == "method":
            continue
        if name.startswith("lora_") and hp["method"] not in LORA_METHODS:
            continue
        if name in _ONLY_FOR and hp["lr_scheduler"] != _ONLY_FOR[name]:
            continue
        out.append(f"{name}={hp[name]}")
    return out


def export_config(
    config: dict[str, Any],
    target: str,
    *,
    model: str,
    path: str | Path | None = None,
    fmt: str | None = None,
    **options: Any,
) -> ExportResult:
    """Build the export; write it to ``path`` when given (a directory gets the tool's file name)."""
    chosen = pick_format(target, None if path is None or _is_dir(path) else path, fmt)
    plan = plan_export(config, target, model=model, **options)
    result = ExportResult(plan=plan, format=chosen, text=render(plan, chosen))
    return write_export(result, path) if path is not None else result


def _is_dir(path: str | Path) -> bool:
    """An existing folder, or a path written with a trailing slash (a folder to create)."""
    return Path(path).is_dir() or str(path).endswith(("/", "\\"))


_DEFAULT_NAMES = {
    "axolotl": "axolotl.yaml",
    "llama-factory": "llama_factory_sft.yaml",
    "trl": "train_sft.py",
    "peft": "adapter_config.json",
    "hf-args": "training_args.py",
}


def write_export(result: ExportResult, path: str | Path) -> ExportResult:
    """Write atomically; an existing directory receives the tool's usual file name."""
    p = Path(path)
    if _is_dir(path):
        p.mkdir(parents=True, exist_ok=True)
        name = _DEFAULT_NAMES[result.plan.target]
        p = p / (Path(name).stem + "." + result.format)
    atomic_write_text(p, result.text)
    return ExportResult(plan=result.plan, format=result.format, text=result.text, path=p)
