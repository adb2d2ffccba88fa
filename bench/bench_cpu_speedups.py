"""CPU training speed-ups, each measured against its absence in one process on SmolLM2-135M.

1. ``malloc``: glibc thresholds raised so freed training buffers stay in the heap
   (``staytuned.hardware.malloc.keep_freed_memory``); off = glibc's starting thresholds.
2. ``head``: the LM head's input made contiguous (``staytuned.models.contiguous_head_input``);
   off = the hook removed (transformers' non-contiguous ``logits_to_keep`` slice).
3. ``no dropout``: ``lora_dropout`` 0 (the demo space's value) instead of the default 0.05.

Variants: all on, each one off alone, all off. They run interleaved in ``--rounds`` rounds (a
LoRA trial of ``--train-size`` SST-2 rows each, 1 epoch, batch 8, fp32, then ``--eval-size``
validation rows scored) so that drifts of the machine hit all of them alike; the figures are
each variant's median training and evaluation times and their ratios to "all on". Also the
head alone: a frozen 576 x 49152 linear on the last 3 of 71 positions of 8 rows, forward and
forward + backward, non-contiguous vs contiguous input.

``--isa avx2`` restarts the script with torch, oneDNN and MKL held to their AVX2 kernels (what
an AVX2-only CPU runs, on this CPU's cores). Run on an idle machine.

    .venv/bin/python bench/bench_cpu_speedups.py [--rounds 3] [--train-size 48] [--isa avx2]
Writes bench/results/cpu_speedups.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import date
from pathlib import Path

from bench_main_job import AVX2_ENV, cpu_flags, cpu_model

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {  # name: (malloc kept, contiguous head, lora_dropout)
    "all on": (True, True, 0.0),
    "malloc off": (False, True, 0.0),
    "head off": (True, False, 0.0),
    "dropout 0.05": (True, True, 0.05),
    "all off": (False, False, 0.05),
}


def time_head(rounds: int) -> dict[str, float]:
    import torch

    head = torch.nn.Linear(576, 49152, bias=False)
    head.weight.requires_grad_(False)
    hidden = torch.randn(8, 71, 576, requires_grad=True)

    def run(contiguous: bool, backward: bool) -> float:
        start = time.perf_counter()
        for _ in range(5):
            x = hidden[:, -3:, :]
            out = head(x.contiguous() if contiguous else x)
            if backward:
                out.sum().backward()
        return (time.perf_counter() - start) / 5 * 1000

    res: dict[str, list[float]] = {}
    for _ in range(rounds + 1):  # the first round warms up and is dropped below
        for name, c, b in (("fwd_noncontig_ms", False, False), ("fwd_contig_ms", True, False),
                           ("fwdbwd_noncontig_ms", False, True), ("fwdbwd_contig_ms", True, True)):
            res.setdefault(name, []).append(run(c, b))
    return {k: round(statistics.median(v[1:]), 1) for k, v in res.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--train-size", type=int, default=48)
    ap.add_argument("--eval-size", type=int, default=64)
    ap.add_argument("--isa", choices=["native", "avx2"], default="native")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "cpu_speedups.json")
    args = ap.parse_args()
    if args.isa == "avx2" and os.environ.get("ATEN_CPU_CAPABILITY") != "avx2":
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **AVX2_ENV})

    import torch

    import staytuned.hardware.malloc as malloc
    from staytuned.finetune.trial import ModelCache, run_trial
    from staytuned.models import _contiguous_input

    cache = ModelCache()
    head = cache.get("smollm2-135m").model.get_output_embeddings()
    keep_freed = malloc.keep_freed_memory

    def glibc_defaults() -> bool:
        return malloc.set_malloc_thresholds(*malloc.GLIBC_DEFAULTS)

    def set_variant(kept: bool, contiguous: bool) -> None:
        # Every trial calls keep_freed_memory() itself: swap it for the "off" variants.
        malloc.keep_freed_memory = keep_freed if kept else glibc_defaults
        for key, hook in list(head._forward_pre_hooks.items()):
            if hook is _contiguous_input:
                del head._forward_pre_hooks[key]
        if contiguous:
            head.register_forward_pre_hook(_contiguous_input)

    def trial(dropout: float, train_size: int, eval_size: int = 1) -> tuple[float, float]:
        cfg = {"batch_size": 8, "max_seq_length": 128, "epochs": 1, "learning_rate": 3e-4,
               "lr_scheduler": "constant", "lora_r": 8, "method": "lora", "lora_dropout": dropout}
        r = run_trial(model="smollm2-135m", task="sst2", config=cfg, train_size=train_size, eval_size=eval_size,
                      model_cache=cache, precision="fp32")
        if r.status != "ok":
            sys.exit(f"trial failed: {r.error}")
        return r.train_runtime_s, r.eval_runtime_s

    trial(0.0, 16)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    evals: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for rnd in range(args.rounds):
        for name, (kept, contiguous, dropout) in VARIANTS.items():
            set_variant(kept, contiguous)
            train_s, eval_s = trial(dropout, args.train_size, args.eval_size)
            times[name].append(round(train_s, 2))
            evals[name].append(round(eval_s, 2))
            print(f"round {rnd + 1}: {name:13s} train {train_s:6.2f} s  eval {eval_s:6.2f} s", flush=True)
    set_variant(True, True)
    medians = {name: statistics.median(v) for name, v in times.items()}
    eval_medians = {name: statistics.median(v) for name, v in evals.items()}
    out = {
        "date": date.today().isoformat(), "cpu": cpu_model(), "cores": os.cpu_count(),
        "cpu_flags": cpu_flags(), "isa": args.isa, "threads": torch.get_num_threads(),
        "torch": torch.__version__, "train_size": args.train_size, "rounds": args.rounds,
        "train_s": times, "median_train_s": {k: round(v, 2) for k, v in medians.items()},
        "ratio_to_all_on": {k: round(v / medians["all on"], 2) for k, v in medians.items()},
        "eval_size": args.eval_size, "eval_s": evals,
        "median_eval_s": {k: round(v, 2) for k, v in eval_medians.items()},
        "eval_ratio_to_all_on": {k: round(v / eval_medians["all on"], 2) for k, v in eval_medians.items()},
        "head_linear": time_head(args.rounds),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    results[args.isa] = out
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps({k: out[k] for k in ("median_train_s", "ratio_to_all_on", "median_eval_s",
                                                   "eval_ratio_to_all_on", "head_linear")}, indent=1))


if __name__ == "__main__":
    main()
