"""Shared-prefix training, timed: one forward + backward of an 8-row SST-2 micro-batch of
SmolLM2-135M with a fresh LoRA adapter (r 8, all linear layers), with the prompt start common to
all rows (chat template, system prompt, instruction, label list) run once per micro-batch or
once per row, alternating, several times. Also checks that the two give the same loss.

Run on an idle machine: .venv/bin/python bench/bench_shared_prefix.py [--reps 3] [--precision fp32]
Writes bench/results/shared_prefix.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "shared_prefix.json")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    import torch
    from peft import LoraConfig, get_peft_model

    from staytuned.finetune.loop import encode_pairs, shared_prefix_len, target_loss_sum
    from staytuned.hardware.doctor import diagnose
    from staytuned.models import load_model
    from staytuned.tasks import load_task
    from staytuned.tasks.templates import build_prompt, completion_suffix, target_text

    dtype = torch.float32 if args.precision == "fp32" else torch.bfloat16
    model, tok = load_model("smollm2-135m", device="cpu", dtype=dtype)
    for p in model.parameters():
        p.requires_grad_(False)
    torch.manual_seed(0)
    lora = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear",
                                            task_type="CAUSAL_LM"))
    lora.train()
    task = load_task("sst2")
    rows = task.train_rows(args.rows, seed=0)
    pairs = [(build_prompt(task, r, tok), target_text(task, r)) for r in rows]
    batch = encode_pairs(pairs, tok, 128, suffix=completion_suffix(tok))
    n_prefix = shared_prefix_len([e.input_ids[:e.n_prompt] for e in batch])

    def step(k: int) -> tuple[float, float]:
        lora.zero_grad(set_to_none=True)
        start = time.perf_counter()
        loss, _ = target_loss_sum(lora, batch, tok.pad_token_id, "cpu", True, k)
        loss.backward()
        return time.perf_counter() - start, float(loss)

    step(0)  # warm-up
    times: dict[str, list[float]] = {"per_row": [], "shared": []}
    losses: dict[str, float] = {}
    for _ in range(args.reps):
        for name, k in (("per_row", 0), ("shared", n_prefix)):
            seconds, losses[name] = step(k)
            times[name].append(round(seconds, 3))
    doctor = diagnose().to_dict()
    result = {
        "date": date.today().isoformat(),
        "cpu": doctor["cpu"],
        "precision": args.precision,
        "threads": torch.get_num_threads(),
        "rows": len(batch),
        "mean_tokens_per_row": round(sum(len(e.input_ids) for e in batch) / len(batch), 1),
        "shared_prefix_tokens": n_prefix,
        "seconds_per_row_prefix": times["per_row"],
        "seconds_shared_prefix": times["shared"],
        "median_speedup": round(statistics.median(times["per_row"]) / statistics.median(times["shared"]), 2),
        "loss_per_row_prefix": losses["per_row"],
        "loss_shared_prefix": losses["shared"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"{len(batch)} rows x {result['mean_tokens_per_row']} tokens, shared prefix {n_prefix} tokens, "
          f"{args.precision}, {result['threads']} threads: forward+backward "
          f"{statistics.median(times['per_row']):.2f} s -> {statistics.median(times['shared']):.2f} s "
          f"({result['median_speedup']}x); loss {losses['per_row']:.5f} vs {losses['shared']:.5f}")


if __name__ == "__main__":
    main()
