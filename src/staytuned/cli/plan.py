"""``staytuned plan``: a trial's estimated peak memory, whether it fits a device, and what would."""

from __future__ import annotations

from typing import Any

import typer
from rich import box
from rich.table import Table

from staytuned.cli._common import cli_errors, out, write_json
from staytuned.cli._options import JsonOpt, QuietOpt
from staytuned.errors import InputError

_GIB = 2**30


def _sizes(text: str) -> list[str]:
    sizes = [s.strip() for s in text.split(",") if s.strip()]
    if not sizes:
        raise InputError("expected a comma list of GPU sizes", field="--gpu-memory", value=text,
                         expected="e.g. 24,48,80,141 (GiB)")
    return [s if s[-1:].isalpha() else f"{s}GB" for s in sizes]


def _component_table(plan: Any) -> Table:
    table = Table(title=f"{plan.model.name}: {plan.setting.describe()} on {plan.device.label}",
                  box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left")
    table.add_column("component")
    table.add_column("GiB", justify="right", no_wrap=True)
    table.add_column("how")
    for c in plan.components:
        table.add_row(c.name, f"{c.bytes / _GIB:.2f}", c.how)
    table.add_row("[bold]total[/]", f"[bold]{plan.total / _GIB:.2f}[/]",
                  f"device {plan.device.memory / _GIB:.1f} GiB, usable {plan.usable / _GIB:.1f} GiB "
                  f"({plan.margin:.0%} margin)")
    return table


def _print_plan(plan: Any) -> None:
    out.print(_component_table(plan))
    style = "green" if plan.fits else "red"
    head, _, rest = plan.verdict.partition(":")
    out.print(f"[bold {style}]{head}[/]:{rest}", highlight=False)
    if plan.setting != plan.requested:
        out.print(f"requested: {plan.requested.describe()}", highlight=False)


def _print_sizes(plans: list[Any]) -> None:
    first = plans[0]
    table = Table(title=f"{first.model.name}: {first.requested.describe()}", box=box.SIMPLE_HEAD,
                  pad_edge=False, title_justify="left")
    for col, right in [("GPU", True), ("fits", False), ("micro-batch", True), ("checkpointing", False),
                       ("total GiB", True), ("nearest that fits / what it needs", False)]:
        table.add_column(col, justify="right" if right else "left", no_wrap=right)
    for plan in plans:
        note = "" if plan.fits else _short(plan)
        fits = plan.fits
        table.add_row(f"{plan.device.memory / _GIB:g} GiB", "[green]yes[/]" if fits else "[red]no[/]",
                      str(plan.setting.micro_batch) if fits else "—",
                      ("on" if plan.setting.gradient_checkpointing else "off") if fits else "—",
                      f"{plan.total / _GIB:.1f}" if fits else f"≥ {(plan.minimum_total or plan.total) / _GIB:.1f}",
                      note)
    out.print(table)


def _short(plan: Any) -> str:
    """What would fit, in a few words: "LoRA, micro-batch 1 (20.5 GiB); or 4 GPUs sharded"."""
    parts = []
    near = plan.nearest
    if near is not None:
        words = []
        if near.method != plan.requested.method:
            words.append({"lora": "LoRA", "qlora": "QLoRA", "full": "full"}[near.method])
        words.append(f"micro-batch {near.micro_batch}")
        if near.gradient_checkpointing:
            words.append("checkpointing")
        parts.append(f"{', '.join(words)} ({(plan.nearest_total or 0) / _GIB:.1f} GiB)")
    if plan.shard_gpus:
        parts.append(f"{plan.shard_gpus} GPUs sharded")
    return "; or ".join(parts) or "nothing on one GPU"


def register(app: typer.Typer) -> None:
    @app.command("plan")
    def plan(
        model: str = typer.Option(..., "--model", help="Known model (llama-3-8b, mistral-7b, llama-3.2-1b, "
                                  "llama-3-70b, smollm2-135m), a config.json or model folder, or a hub id "
                                  "whose config.json is in the local Hugging Face cache."),
        method: str = typer.Option("lora", "--method", help="full, lora or qlora."),
        max_seq_length: int = typer.Option(512, "--max-seq-length", help="Tokens per example."),
        micro_batch: int = typer.Option(8, "--micro-batch", help="Largest micro-batch to consider."),
        lora_r: int = typer.Option(16, "--lora-r", help="LoRA rank (lora, qlora)."),
        lora_targets: str = typer.Option("all-linear", "--lora-target-modules",
                                         help="'all-linear' or a comma list like q_proj,v_proj."),
        optimizer: str = typer.Option("adamw", "--optimizer", help="adamw, sgd or adafactor."),
        precision: str = typer.Option("bf16", "--precision", help="fp32, bf16 or fp16."),
        checkpointing: str = typer.Option("auto", "--gradient-checkpointing",
                                          help="auto (on only when needed to fit), on or off."),
        device: str = typer.Option("cuda", "--device",
                                   help="cpu, cuda[:N] (this machine's GPU) or a GPU size like 24GB."),
        gpu_memory: str | None = typer.Option(None, "--gpu-memory",
                                              help="Plan for several GPU sizes at once: 24,48,80,141 (GiB)."),
        margin: float = typer.Option(0.10, "--margin", help="Share of device memory kept free."),
        json_path: str | None = JsonOpt,
        quiet: bool = QuietOpt,
    ) -> None:
        """Estimate a trial's peak memory (weights, gradients, optimizer states, activations,
        logits) and choose micro-batch and gradient checkpointing so it fits, or say what would."""
        from staytuned.hardware.planner import TrialSetting, choose, resolve_arch, resolve_device

        with cli_errors():
            if checkpointing not in ("auto", "on", "off"):
                raise InputError("unknown value", field="--gradient-checkpointing", value=checkpointing,
                                 expected="auto, on or off")
            arch = resolve_arch(model)
            setting = TrialSetting(method=method, lora_r=lora_r, lora_target_modules=lora_targets,
                                   optimizer=optimizer, precision=precision, max_seq_length=max_seq_length,
                                   micro_batch=micro_batch, gradient_checkpointing=checkpointing == "on")
            devices = [resolve_device(s) for s in _sizes(gpu_memory)] if gpu_memory else [resolve_device(device)]
            fixed = None if checkpointing == "auto" else checkpointing == "on"
            plans = [choose(arch, setting, dev, margin=margin, checkpointing=fixed) for dev in devices]
        if json_path is not None:
            payload = plans[0].to_dict() if len(plans) == 1 and not gpu_memory else {
                "model": arch.to_dict(), "plans": [p.to_dict() for p in plans]}
            write_json(json_path, payload)
        if quiet or json_path == "-":
            return
        if len(plans) == 1:
            _print_plan(plans[0])
        else:
            _print_sizes(plans)

