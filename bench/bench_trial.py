"""Trial benchmark on SmolLM2-135M: seconds per trial and training overhead vs a plain loop.

For each method (lora, full) and training size (100, 1000 rows of the bundled SST-2):

1. ``run_trial`` end to end (training + scoring ``--eval-size`` validation rows): seconds per
   trial and its training tokens/s;
2. a plain hand-written PyTorch loop on the same model (same fresh LoRA adapter or a fresh copy),
   the same tokenized examples (prompt tokens masked with -100), the same batch size,
   optimizer (AdamW), linear schedule, gradient clipping and number of optimizer steps:
   right-padded batches, ``model(input_ids, attention_mask, labels=...).loss.backward()``.
   Its tokens/s is the reference for the trainer's overhead (ratio >= 0.9 is the target).
   Tokens/s counts non-pad tokens (prompt + target) of every example trained on.

Also: seconds to evaluate ``--eval-size`` classification rows of SST-2 (label log-likelihood).

Run: .venv/bin/python bench/bench_trial.py [--sizes 100,1000] [--methods lora,full] [--epochs 1]
     [--eval-size 200] [--max-seq-length 128] [--threads N]
Writes bench/results/trial.json and prints a table.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import math
import os
import platform
import sys
import time
from pathlib import Path


def plain_loop(model, examples, pad_id: int, batch_size: int, epochs: float, lr: float) -> dict:
    """The reference: the textbook causal-LM fine-tuning loop, nothing else."""
    import random

    import torch
    from transformers import get_scheduler

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    steps_per_epoch = math.ceil(len(examples) / batch_size)
    total = max(1, math.ceil(epochs * steps_per_epoch))
    sched = get_scheduler("linear", opt, num_warmup_steps=0, num_training_steps=total)
    order = list(range(len(examples)))
    rng = random.Random(0)
    model.train()
    tokens = step = 0
    start, cpu_start = time.perf_counter(), time.process_time()
    while step < total:
        rng.shuffle(order)
        for k in range(0, len(order), batch_size):
            if step >= total:
                break
            batch = [examples[i] for i in order[k:k + batch_size]]
            width = max(len(e.input_ids) for e in batch)
            ids = torch.full((len(batch), width), pad_id)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            labels = torch.full((len(batch), width), -100)
            for r, e in enumerate(batch):
                n = len(e.input_ids)
                ids[r, :n] = torch.tensor(e.input_ids)
                mask[r, :n] = 1
                labels[r, e.n_prompt:n] = torch.tensor(e.input_ids[e.n_prompt:])
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            tokens += int(mask.sum())
            step += 1
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    model.eval()
    return {"seconds": seconds, "cpu_s": cpu, "tokens": tokens, "tokens_per_s": tokens / seconds,
            "tokens_per_cpu_s": tokens / cpu, "steps": step,
            "final_loss": float(loss.detach())}


def run_plain(cache, task, method: str, size: int, cfg) -> dict:
    import torch

    from staytuned.finetune.loop import encode_pairs
    from staytuned.finetune.trainers.native import wrap_lora
    from staytuned.tasks import build_chat_example, completion_suffix

    loaded = cache.get("smollm2-135m")
    tok = loaded.tokenizer
    rows = task.train_rows(size, seed=0)
    examples = encode_pairs([build_chat_example(task, r, tok) for r in rows], tok, cfg.max_seq_length,
                            completion_suffix(tok))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        if method == "lora":
            model = wrap_lora(loaded.model, cfg)
        else:
            model = copy.deepcopy(loaded.model)
            for p in model.parameters():
                p.requires_grad_(True)
        try:
            return plain_loop(model, examples, tok.pad_token_id, cfg.batch_size, cfg.epochs, cfg.learning_rate)
        finally:
            if method == "lora":
                model.unload()
            del model
            import gc

            gc.collect()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,1000")
    ap.add_argument("--methods", default="lora,full")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--eval-size", type=int, default=200)
    ap.add_argument("--max-seq-length", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-plain", action="store_true", help="Skip the plain-loop reference (saves half the time).")
    ap.add_argument("--append", action="store_true", help="Add these trials to the records already in --out.")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "trial.json"))
    args = ap.parse_args()

    import torch
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    from staytuned.finetune import ModelCache, TrainConfig, run_trial
    from staytuned.finetune.evaluate import evaluate
    from staytuned.tasks import load_task

    task = load_task("sst2")
    cache = ModelCache(device="cpu")
    t0 = time.perf_counter()
    loaded = cache.get("smollm2-135m")
    load_s = time.perf_counter() - t0
    rows = task.eval_rows("validation", args.eval_size)
    evaluate(loaded.model, loaded.tokenizer, task, rows[:8], max_seq_length=args.max_seq_length)  # warm-up
    cpu0 = time.process_time()
    ev = evaluate(loaded.model, loaded.tokenizer, task, rows, max_seq_length=args.max_seq_length)
    eval_cpu_s = time.process_time() - cpu0
    cpu0 = time.process_time()
    ev16 = evaluate(loaded.model, loaded.tokenizer, task, rows, max_seq_length=args.max_seq_length, precision="bf16")
    eval16_cpu_s = time.process_time() - cpu0
    print(f"eval of {len(rows)} sst2 rows, bf16 autocast: {ev16.runtime_s:.1f} s ({eval16_cpu_s:.1f} CPU s), "
          f"accuracy {ev16.metrics['accuracy']:.3f}", flush=True)
    records = []
    print(f"model load {load_s:.1f} s; eval of {len(rows)} sst2 rows (loglik): {ev.runtime_s:.1f} s "
          f"({eval_cpu_s:.1f} CPU s), "
          f"accuracy {ev.metrics['accuracy']:.3f}", flush=True)
    for method in args.methods.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            lr = 1e-4 if method == "lora" else 1e-5
            cfg = TrainConfig.from_dict({"method": method, "learning_rate": lr, "epochs": args.epochs,
                                         "batch_size": args.batch_size, "max_seq_length": args.max_seq_length})
            plain = None if args.no_plain else run_plain(cache, task, method, size, cfg)
            cpu0 = time.process_time()
            res = run_trial("smollm2-135m", task, cfg, train_size=size, eval_size=args.eval_size,
                            model_cache=cache)
            trial_cpu_s = time.process_time() - cpu0
            rec = {"method": method, "train_size": size, "epochs": args.epochs, "status": res.status,
                   "trial_s": res.runtime_s, "trial_cpu_s": trial_cpu_s, "train_s": res.train_runtime_s,
                   "eval_s": res.eval_runtime_s, "trial_tokens_per_s": res.train_tokens_per_s,
                   "trial_tokens_per_cpu_s": res.train_tokens / res.train_cpu_s if res.train_cpu_s else None,
                   "plain_tokens_per_s": plain["tokens_per_s"] if plain else None,
                   "plain_tokens_per_cpu_s": plain["tokens_per_cpu_s"] if plain else None,
                   "plain_train_s": plain["seconds"] if plain else None,
                   "plain_cpu_s": plain["cpu_s"] if plain else None,
                   "ratio": res.train_tokens_per_s / plain["tokens_per_s"] if plain else None,
                   "steps": res.steps, "accuracy": res.score, "peak_memory_mb": res.peak_memory_mb,
                   "micro_batch": res.micro_batch_size, "load_average": os.getloadavg(), "error": res.error}
            records.append(rec)
            ref = (f"plain loop {plain['tokens_per_s']:7.1f} tok/s | ratio {rec['ratio']:.2f} (per CPU s: "
                   f"{rec['trial_tokens_per_cpu_s'] or 0:.1f} vs {plain['tokens_per_cpu_s']:.1f})"
                   ) if plain else "no plain loop"
            print(f"{method:5s} n={size:5d}: trial {res.runtime_s:7.1f} s ({trial_cpu_s:.1f} CPU s) "
                  f"(train {res.train_runtime_s:.1f} s, eval {res.eval_runtime_s:.1f} s) "
                  f"{res.train_tokens_per_s:7.1f} tok/s | {ref} | acc {res.score:.3f}", flush=True)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    result = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {os.cpu_count()} CPU cores, {platform.system()}",
        "python": sys.version.split()[0], "torch": torch.__version__, "transformers": transformers.__version__,
        "threads": torch.get_num_threads(), "load_average_at_end": load,
        "settings": vars(args), "model_load_s": load_s,
        "eval": {"rows": len(rows), "seconds": ev.runtime_s, "cpu_s": eval_cpu_s, "label_scoring": "loglik",
                 "accuracy": ev.metrics["accuracy"]},
        "eval_bf16": {"rows": len(rows), "seconds": ev16.runtime_s, "cpu_s": eval16_cpu_s,
                      "label_scoring": "loglik", "accuracy": ev16.metrics["accuracy"]},
        "trials": records,
    }
    if args.append and Path(args.out).is_file():
        previous = json.loads(Path(args.out).read_text(encoding="utf-8"))
        result["trials"] = previous.get("trials", []) + records
        result["earlier_runs"] = [
            *previous.get("earlier_runs", []),
            {k: previous.get(k) for k in ("date", "settings", "eval", "eval_bf16", "load_average_at_end")}]
        records = result["trials"]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print()
    print("| method | train rows | s / trial (wall) | CPU s / trial | train tok/s trial / plain (wall) | ratio | "
          "train tok per CPU s trial / plain | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in records:
        if r.get("plain_tokens_per_s"):
            cpu_ratio = (r["trial_tokens_per_cpu_s"] or 0) / r["plain_tokens_per_cpu_s"]
            plain = (f"{r['trial_tokens_per_s']:.0f} / {r['plain_tokens_per_s']:.0f} | {r['ratio']:.2f} | "
                     f"{r['trial_tokens_per_cpu_s'] or 0:.0f} / {r['plain_tokens_per_cpu_s']:.0f} | {cpu_ratio:.2f}")
        else:
            plain = f"{r['trial_tokens_per_s']:.0f} / - | - | {r['trial_tokens_per_cpu_s'] or 0:.0f} / - | -"
        print(f"| {r['method']} | {r['train_size']} | {r['trial_s']:.1f} | {r['trial_cpu_s']:.1f} | {plain} |")
    print(f"\neval of {len(rows)} classification rows: fp32 {ev.runtime_s:.1f} s wall ({eval_cpu_s:.1f} CPU s); "
          f"bf16 autocast {ev16.runtime_s:.1f} s wall ({eval16_cpu_s:.1f} CPU s); wrote {args.out}")


if __name__ == "__main__":
    main()
