"""GPU check of the trainer: tokens/s, model FLOPs utilisation and peak memory against the planner.

Models, all built here with random weights (no download): Llama-3.2-1B and Llama-3-8B from the
architectures the memory planner ships (``staytuned/presets/models``), and the tiny test models
(``tiny-llama``, ``tiny-mistral``). Methods: LoRA (r 16, all linear layers), QLoRA (the same
adapters over an NF4 base, double quantization) when bitsandbytes imports, and full fine-tuning;
every case is first planned (``hardware.planner.choose``: micro-batch up to ``--micro-batch``,
checkpointing only when needed) and skipped when the planner says it does not fit.

Each case trains with staytuned's own trainer (``finetune.loop.train``: autocast, AdamW,
gradient clipping, the loss on the last ``--target`` tokens) on random token sequences of exactly
``--seq`` tokens: ``--warmup`` steps (compilation, allocator and cuBLAS warm-up; not timed), then
``--steps`` timed steps. Reported: tokens/s; model FLOPs per token (6N for full fine-tuning, 4N +
6 x adapter params for LoRA/QLoRA, whose frozen weights get no gradient; N = decoder linears + the
LM head over the positions kept, plus attention 12 x layers x seq x q_dim) and the utilisation of
the GPU's dense bf16 peak (table below; "unknown" for other GPUs); the peak of
``torch.cuda.max_memory_allocated`` beside the planner's estimate. Once ``--max-seconds`` have
passed no new case starts: the rest are listed as skipped, so the run stays inside its budget.

On one GPU, one command from the repository root (about 3-6 min on an H100/H200; it needs torch,
transformers, peft and tokenizers, not the rest of staytuned's dependencies; QLoRA runs only where
bitsandbytes >= 0.46 imports, else its cases say so):

    HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 python3 bench/bench_gpu.py --max-seconds 330 --out $OUT/gpu.json

(``--out`` where the result comes back from a lent machine; the default is bench/results/gpu.json.)

On CPU (``--cpu``, or automatic without a GPU): the tiny models only, short sequences, seconds:

    .venv/bin/python bench/bench_gpu.py --cpu --out /tmp/gpu_cpu.json

Writes bench/results/gpu.json (gpu_cpu.json on CPU; ``--out`` to change) and prints a table.

``--trl``: also one real staytuned trial per method with the ``trl`` trainer under ``accelerate
launch`` with the FSDP config staytuned writes (``distributed=fsdp`` on every visible GPU;
``--trl-model``, default tiny-llama, task sst2); recorded under ``trl_launch`` with what
accelerate actually ran (distributed type, processes, FSDP2 or not). This needs staytuned's
``train`` extra (trl, accelerate, datasets). Not yet run on a GPU.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

GPU_MODELS = ("tiny-llama", "tiny-mistral", "llama-3.2-1b", "llama-3-8b")
CPU_MODELS = ("tiny-llama", "tiny-mistral")
METHODS = ("lora", "qlora", "full")
#: Dense bf16 tensor-core peaks in TFLOP/s (vendor datasheets, without sparsity), matched against
#: torch's device name in this order (the first name contained in it wins).
BF16_PEAK_TFLOPS = (
    ("H200", 989.0), ("GH200", 989.0), ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0),
    ("H800", 989.0), ("A100", 312.0), ("A800", 312.0), ("L40S", 362.0), ("L4", 121.0),
    ("A10G", 70.0), ("A10", 125.0), ("RTX 4090", 165.0),
)
LORA = {"lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "lora_target_modules": "all-linear"}


def bf16_peak(gpu_name: str) -> float | None:
    for key, tflops in BF16_PEAK_TFLOPS:
        if key.lower() in gpu_name.lower():
            return tflops
    return None


def flops_per_token(arch: Any, method: str, seq: int, logit_positions: int, adapter_params: int) -> float:
    """Model FLOPs one training token costs (module docstring); recomputation is not counted."""
    head = 2 * arch.embedding_params * min(logit_positions, seq) / seq
    linear = 2 * arch.decoder_linear_params + head  # forward, per token
    attention = 4 * arch.num_hidden_layers * seq * arch.q_dim  # QK^T and AV, forward
    if method == "full":
        return 3 * linear + 3 * attention
    return 2 * linear + 3 * attention + 6 * adapter_params


# ---------------------------------------------------------------- building the models


def preset_config(name: str) -> dict[str, Any]:
    """The architecture fields the planner ships for ``name`` (one place for both)."""
    from staytuned.hardware.planner import known_models

    path = known_models()[name]
    return {k: v for k, v in json.loads(path.read_text(encoding="utf-8")).items() if not k.startswith("_")}


def build_random(name: str, dtype: Any, device: str) -> Any:
    """A randomly initialised model of a shipped architecture, built directly on ``device``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from staytuned.models import ATTN_IMPLEMENTATION

    fields = preset_config(name)
    config = AutoConfig.for_model(fields.pop("model_type"), attn_implementation=ATTN_IMPLEMENTATION, **fields)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model


def quantize_nf4(model: Any, compute_dtype: Any) -> int:
    """Replace every linear layer but the LM head by a bitsandbytes NF4 ``Linear4bit`` (double
    quantization), in place and on the weights' device, as a QLoRA base is loaded. Returns how many."""
    import bitsandbytes as bnb
    from torch import nn

    from staytuned.models import keep_4bit_trainable

    n = 0
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if type(child) is not nn.Linear or child_name == "lm_head":
                continue
            q = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                  compute_dtype=compute_dtype, compress_statistics=True, quant_type="nf4",
                                  device="meta")
            weight = child.weight.data
            q.weight = bnb.nn.Params4bit(weight, requires_grad=False, compress_statistics=True,
                                         quant_type="nf4", module=q).to(weight.device)
            if child.bias is not None:
                q.bias = child.bias
            setattr(parent, child_name, q)
            n += 1
    keep_4bit_trainable(model)
    return n


def build(name: str, method: str, choice: Any, device: str) -> tuple[Any, Any]:
    """(model ready to train, its planner architecture)."""
    from staytuned.hardware.planner import ModelArch, resolve_arch
    from staytuned.models import TINY_ALIASES, load_model

    dtype = choice.torch_load_dtype()
    if name in TINY_ALIASES:
        model, _ = load_model(name, dtype=dtype, device=device)
        arch = ModelArch.from_config(model.config.to_dict(), name=name)
    else:
        model, arch = build_random(name, dtype, device), resolve_arch(name)
    if method == "qlora":
        quantize_nf4(model, choice.torch_dtype())
    return model, arch


# ---------------------------------------------------------------- one case


def bitsandbytes_problem() -> str | None:
    from staytuned.errors import InputError
    from staytuned.models import require_bitsandbytes

    try:
        require_bitsandbytes()
    except InputError as exc:
        return str(exc)
    return None


def plan_case(arch: Any, method: str, args: argparse.Namespace, precision: str, device: Any) -> Any:
    from staytuned.hardware.planner import TrialSetting, choose

    setting = TrialSetting(method=method, precision=precision, max_seq_length=args.seq,
                           micro_batch=args.micro_batch, logit_positions=args.target + 1,
                           double_quant=method == "qlora", resident_base=False, optimizer="adamw",
                           lora_r=LORA["lora_r"], lora_dropout=LORA["lora_dropout"],
                           lora_target_modules=LORA["lora_target_modules"])
    return choose(arch, setting, device)


def examples(n: int, seq: int, target: int, vocab: int, seed: int) -> list[Any]:
    from staytuned.finetune.loop import Example

    rng = random.Random(seed)
    return [Example(input_ids=[rng.randrange(3, vocab) for _ in range(seq)], n_prompt=seq - target)
            for _ in range(n)]


def run_case(name: str, method: str, args: argparse.Namespace, ctx: dict[str, Any]) -> dict[str, Any]:
    import torch

    from staytuned.finetune.loop import OutOfMemory, train
    from staytuned.finetune.memory import PeakMemory
    from staytuned.finetune.trainers.native import enable_checkpointing, wrap_lora
    from staytuned.hparams.train import TrainConfig

    device, choice = ctx["device"], ctx["precision"]
    case: dict[str, Any] = {"model": name, "method": method, "status": "ok"}
    started = time.perf_counter()
    if method == "qlora" and ctx["bnb_problem"]:
        return {**case, "status": "skipped", "reason": ctx["bnb_problem"]}
    from staytuned.hardware.planner import resolve_arch

    arch = None if name.startswith("tiny-") else resolve_arch(name)
    if arch is not None:  # plan before building: an 8B full fine-tuning that cannot fit is never built
        plan = plan_case(arch, method, args, choice.dtype, ctx["plan_device"])
        if not plan.fits:
            return {**case, "status": "skipped", "reason": f"planner: {plan.verdict}"}
    model, arch = build(name, method, choice, device)
    plan = plan_case(arch, method, args, choice.dtype, ctx["plan_device"])
    case.update(params=arch.n_params, planner_verdict=plan.verdict)
    if not plan.fits:
        return {**case, "status": "skipped", "reason": f"planner: {plan.verdict}"}
    micro, ckpt = plan.setting.micro_batch, plan.setting.gradient_checkpointing
    config = TrainConfig.from_dict({"method": "full" if method == "full" else "lora", "learning_rate": 1e-5,
                                    "batch_size": micro, "epochs": 1, "max_seq_length": args.seq,
                                    "lr_scheduler": "constant", **({} if method == "full" else LORA)})
    if method != "full":
        torch.manual_seed(0)
        model = wrap_lora(model, config)
    if ckpt:
        enable_checkpointing(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    case.update(trainable_params=trainable, micro_batch=micro, gradient_checkpointing=ckpt,
                build_s=round(time.perf_counter() - started, 2))
    pad = 0
    warm = examples(micro * args.warmup, args.seq, args.target, arch.vocab_size, seed=1)
    timed = examples(micro * args.steps, args.seq, args.target, arch.vocab_size, seed=2)

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    try:
        with PeakMemory(device) as peak:
            if warm:
                train(model, warm, config, pad_id=pad, device=device, micro_batch_size=micro, precision=choice)
            sync()
            t0 = time.perf_counter()
            stats = train(model, timed, config, pad_id=pad, device=device, micro_batch_size=micro,
                          precision=choice)
            sync()
            seconds = time.perf_counter() - t0
    except OutOfMemory as exc:
        return {**case, "status": "failed", "reason": f"out of memory: {exc}"[:300]}
    finally:
        del model
        gc.collect()
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    tokens = stats.train_tokens
    adapters = 0 if method == "full" else trainable
    per_token = flops_per_token(arch, method, args.seq, args.target + 1, adapters)
    tflops = per_token * tokens / seconds / 1e12
    peak_tflops = ctx["peak_tflops"]
    estimate_mib = plan.total / 2**20
    case.update(
        steps=stats.steps, tokens=tokens, seconds=round(seconds, 3),
        tokens_per_s=round(tokens / seconds, 1), flops_per_token=per_token,
        model_tflops=round(tflops, 3),
        mfu=round(tflops / peak_tflops, 4) if peak_tflops else "unknown",
        peak_memory_mib=round(peak.mb, 1), planner_estimate_mib=round(estimate_mib, 1),
        measured_over_estimate=round(peak.mb / estimate_mib, 3) if estimate_mib else None,
        loss_first=stats.loss_curve[0][1] if stats.loss_curve else None,
        loss_last=stats.loss_curve[-1][1] if stats.loss_curve else None,
        case_s=round(time.perf_counter() - started, 2),
    )
    if stats.micro_batch_size != micro:  # the trainer halved it after an out-of-memory error
        case["trainer_micro_batch"] = stats.micro_batch_size
    return case


# ---------------------------------------------------------------- the run


def machine(device: str) -> dict[str, Any]:
    import peft
    import torch
    import transformers

    from staytuned.hardware.probe import cpu_info

    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "transformers": transformers.__version__, "peft": peft.__version__,
                "cuda": torch.version.cuda}
    try:
        import bitsandbytes

        versions["bitsandbytes"] = bitsandbytes.__version__
    except Exception:
        versions["bitsandbytes"] = None
    info: dict[str, Any] = {"cpu": cpu_info().model, "machine": platform.machine(), "versions": versions}
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(0)
        peak = bf16_peak(str(props.name))
        info["gpu"] = {"name": str(props.name), "memory_gib": round(props.total_memory / 2**30, 2),
                       "capability": f"{props.major}.{props.minor}",
                       "bf16_peak_tflops": peak if peak is not None else "unknown"}
    return info


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpu", action="store_true", help="the CPU check: tiny models only (default without a GPU)")
    ap.add_argument("--models", default=None, help=f"comma list (GPU default {','.join(GPU_MODELS)})")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--seq", type=int, default=None, help="tokens per sequence (GPU 1024, CPU 64)")
    ap.add_argument("--target", type=int, default=32, help="trained (loss) tokens at each sequence's end")
    ap.add_argument("--micro-batch", type=int, default=None, help="the most sequences per step (GPU 8, CPU 2)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (GPU 4, CPU 2)")
    ap.add_argument("--max-seconds", type=float, default=330.0, help="start no case after this many seconds")
    ap.add_argument("--out", default=None, help="JSON file (default bench/results/gpu.json, gpu_cpu.json on CPU)")
    ap.add_argument("--trl", action="store_true", help="also run the trl trainer under accelerate launch (FSDP)")
    ap.add_argument("--trl-model", default="tiny-llama", help="model of the --trl trials")
    args = ap.parse_args(argv)
    wall = time.perf_counter()
    import torch

    from staytuned.hardware.planner import Device, machine_memory, resolve_device
    from staytuned.hardware.precision import choose_precision

    gpu = torch.cuda.is_available() and not args.cpu
    device = "cuda" if gpu else "cpu"
    args.seq = args.seq or (1024 if gpu else 64)
    args.micro_batch = args.micro_batch or (8 if gpu else 2)
    args.steps = args.steps or (4 if gpu else 2)
    if not 0 < args.target < args.seq:
        ap.error("--target must be between 1 and --seq - 1")
    models = args.models.split(",") if args.models else list(GPU_MODELS if gpu else CPU_MODELS)
    methods = args.methods.split(",")
    info = machine(device)
    precision = choose_precision("bf16" if gpu and torch.cuda.is_bf16_supported() else
                                 "fp16" if gpu else "fp32", device, warn=False)
    ctx = {"device": device, "precision": precision,
           "plan_device": resolve_device("cuda") if gpu else Device("cpu", machine_memory(), "cpu"),
           "peak_tflops": info.get("gpu", {}).get("bf16_peak_tflops") if gpu else None,
           "bnb_problem": bitsandbytes_problem() if "qlora" in methods else None}
    if ctx["peak_tflops"] == "unknown":
        ctx["peak_tflops"] = None
    cases: list[dict[str, Any]] = []
    skipped_for_time: list[str] = []
    print(f"{info.get('gpu', {}).get('name', info['cpu'])}: {len(models) * len(methods)} cases, "
          f"seq {args.seq}, precision {precision.dtype}", flush=True)
    for name in models:
        for method in methods:
            label = f"{name}/{method}"
            if time.perf_counter() - wall > args.max_seconds:
                skipped_for_time.append(label)
                cases.append({"model": name, "method": method, "status": "skipped",
                              "reason": f"time budget: --max-seconds {args.max_seconds:g} passed"})
                continue
            try:
                case = run_case(name, method, args, ctx)
            except Exception as exc:  # one broken case must not lose the others
                case = {"model": name, "method": method, "status": "failed",
                        "reason": f"{type(exc).__name__}: {exc}".splitlines()[0][:300]}
                gc.collect()
                if gpu:
                    torch.cuda.empty_cache()
            cases.append(case)
            print(f"{label}: " + (f"{case['tokens_per_s']:.0f} tok/s, MFU {case['mfu']}, peak "
                                  f"{case['peak_memory_mib']:.0f} MiB (planner {case['planner_estimate_mib']:.0f})"
                                  if case["status"] == "ok" else f"{case['status']}: {case['reason']}"),
                  flush=True)
    if skipped_for_time:
        print(f"time budget of {args.max_seconds:g} s reached: skipped {', '.join(skipped_for_time)}", flush=True)
    result = {
        "date": date.today().isoformat(), "device": device, **info,
        "settings": {"seq": args.seq, "target_tokens": args.target, "max_micro_batch": args.micro_batch,
                     "warmup_steps": args.warmup, "timed_steps": args.steps, "precision": precision.dtype,
                     "max_seconds": args.max_seconds, "lora": LORA, "optimizer": "adamw"},
        "cases": cases, "skipped_for_time": skipped_for_time,
        "wall_s": round(time.perf_counter() - wall, 1),
    }
    if args.trl:
        result["trl_launch"] = trl_launch_cases(args.trl_model, methods, gpu)
        result["wall_s"] = round(time.perf_counter() - wall, 1)
    _print_table(cases)
    out = Path(args.out) if args.out else REPO / "bench" / "results" / ("gpu.json" if gpu else "gpu_cpu.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out} ({result['wall_s']:.0f} s)")
    return result


def trl_launch_cases(model: str, methods: list[str], gpu: bool) -> list[dict[str, Any]]:
    """One trl trial per method under ``accelerate launch`` (FSDP on every visible GPU; on CPU one
    process, where accelerate leaves the FSDP section unused): status, score, tokens/s and what
    accelerate ran."""
    import staytuned.finetune.trainers.trl_launch as launch
    from staytuned.finetune.trial import run_trial

    reports: list[dict[str, Any]] = []
    real = launch.run_launched

    def spy(job: Any, plan: Any, **kwargs: Any) -> dict[str, Any]:
        reports.append({"plan": {"mode": plan.mode, "num_processes": plan.num_processes, "cpu": plan.cpu}})
        reports[-1]["launch"] = real(job, plan, **kwargs)
        return reports[-1]["launch"]

    launch.run_launched = spy
    out: list[dict[str, Any]] = []
    try:
        for method in [m for m in methods if m in ("lora", "full")]:
            start = time.perf_counter()
            reports.clear()
            r = run_trial(model, "sst2", {"method": method, "epochs": 1, "batch_size": 8, "max_seq_length": 128,
                                          "learning_rate": 1e-3 if method == "lora" else 1e-5},
                          train_size=64, eval_size=32, device="cuda" if gpu else "cpu", trainer="trl",
                          trainer_options={"distributed": "fsdp"}, on_epoch=lambda e, s: False)
            out.append({"model": model, "method": method, "status": r.status, "error": r.error, "score": r.score,
                        "steps": r.steps, "train_tokens_per_s": r.train_tokens_per_s,
                        "peak_memory_mb": r.peak_memory_mb, "wall_s": round(time.perf_counter() - start, 1),
                        **(reports[-1] if reports else {"launch": None})})
            print(f"trl launch {model}/{method}: {r.status} {r.error or ''} {out[-1].get('launch')}", flush=True)
    finally:
        launch.run_launched = real
    return out


def _print_table(cases: list[dict[str, Any]]) -> None:
    print(f"{'model':14} {'method':6} {'mb':>3} {'ckpt':>4} {'tok/s':>9} {'TFLOP/s':>8} {'MFU':>6} "
          f"{'peak MiB':>9} {'plan MiB':>9} {'ratio':>6}")
    for c in cases:
        if c["status"] != "ok":
            print(f"{c['model']:14} {c['method']:6} {c['status']}: {c['reason'][:90]}")
            continue
        mfu = f"{c['mfu']:.1%}" if isinstance(c["mfu"], float) else "?"
        ckpt = "on" if c["gradient_checkpointing"] else "off"
        print(f"{c['model']:14} {c['method']:6} {c['micro_batch']:>3} {ckpt:>4} "
              f"{c['tokens_per_s']:9.0f} {c['model_tflops']:8.1f} {mfu:>6} {c['peak_memory_mib']:9.0f} "
              f"{c['planner_estimate_mib']:9.0f} {c['measured_over_estimate']:6.2f}")


if __name__ == "__main__":
    sys.exit(1 if any(c["status"] == "failed" for c in main()["cases"]) else 0)
