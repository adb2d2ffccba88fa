"""Evaluation speed of SmolLM2-135M on 200 SST-2 validation rows, fp32 vs bf16 autocast.

Label log-likelihood scoring (the default for classification), the model loaded once; each
precision is measured ``--repeats`` times, interleaved. Then one whole LoRA trial per precision
(100 training rows, 1 epoch, 100 validation rows): its runtime and training tokens/s.
Writes bench/results/eval.json.

    .venv/bin/python bench/bench_eval.py [--threads 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import platform
from datetime import date
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--rows", type=int, default=200)
    args = parser.parse_args()

    import torch

    from staytuned.finetune import ModelCache, TrainConfig, run_trial

    torch.set_num_threads(args.threads)
    cache = ModelCache()
    # Warm-up: dequantize/load the model and the task once, outside the timings.
    run_trial("smollm2-135m", "sst2", TrainConfig(), eval_size=8, eval_only=True, model_cache=cache,
              precision="fp32")
    runs: dict[str, list[dict[str, float]]] = {"fp32": [], "bf16": []}
    for _ in range(args.repeats):
        for precision in runs:
            config = TrainConfig(max_seq_length=128)
            r = run_trial("smollm2-135m", "sst2", config, eval_size=args.rows, eval_only=True, model_cache=cache,
                          precision=precision)
            if r.status != "ok":
                raise SystemExit(f"{precision}: {r.error}")
            runs[precision].append({"eval_s": r.eval_runtime_s, "accuracy": r.score})
            print(f"{precision}: {args.rows} rows in {r.eval_runtime_s:.2f} s, accuracy {r.score:.3f}", flush=True)
    summary = {p: min(x["eval_s"] for x in v) for p, v in runs.items()}
    print("best of repeats: " + ", ".join(f"{p} {s:.2f} s" for p, s in summary.items()))
    trial: dict[str, dict[str, float]] = {}
    for precision in runs:
        config = TrainConfig(method="lora", epochs=1)
        r = run_trial("smollm2-135m", "sst2", config, train_size=100, eval_size=100, model_cache=cache,
                      precision=precision)
        if r.status != "ok":
            raise SystemExit(f"{precision} trial: {r.error}")
        trial[precision] = {"runtime_s": r.runtime_s, "train_tokens_per_s": r.train_tokens_per_s,
                            "accuracy": r.score}
        print(f"{precision} LoRA trial: {r.runtime_s:.1f} s, {r.train_tokens_per_s:.0f} training tokens/s", flush=True)
    out = Path(__file__).parent / "results" / "eval.json"
    out.write_text(json.dumps({
        "date": date.today().isoformat(), "machine": platform.machine(), "threads": args.threads,
        "rows": args.rows, "runs": runs, "best_s": summary, "lora_trial": trial,
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
