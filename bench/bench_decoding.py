"""Decoding benchmark on SmolLM2-135M (local transformers backend).

1. Throughput (generated tokens/s): the same prompts generated in batches vs one at a time.
2. Cost of the penalty processors relative to plain sampling, in the same run:
   end to end (tokens/s of sampling with frequency/presence and repetition penalties vs without)
   and per decoding step (the processor chain alone on logits of SmolLM2's vocabulary size).

Run: .venv/bin/python bench/bench_decoding.py [--prompts 16] [--max-new-tokens 48] [--repeats 3] [--threads N]
Writes bench/results/decoding.json and prints a table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

PROMPTS = [
    "Write a short poem about the sea.",
    "Explain what a hash table is.",
    "Give three tips for learning a new language.",
    "What is the capital of Australia?",
    "Describe a sunset in two sentences.",
    "List the planets of the solar system.",
    "Why is the sky blue?",
    "Summarize the plot of Romeo and Juliet.",
    "How do vaccines work?",
    "Write a haiku about autumn leaves.",
    "What is machine learning?",
    "Suggest a name for a coffee shop.",
    "How does a bicycle stay upright?",
    "Translate 'good morning' into French and Spanish.",
    "What are the benefits of regular exercise?",
    "Tell me a fun fact about octopuses.",
]


def _run_once(backend, prompts, config):
    gens = backend.generate(prompts, config)
    stats = backend.last_stats
    return {"tokens": stats.n_output_tokens, "seconds": stats.seconds, "tokens_per_s": stats.tokens_per_s,
            "mean_len": statistics.fmean(g.n_output_tokens for g in gens)}


def _processor_step_costs(cases, vocab, batch, generated, rounds=5, calls=20):
    """Microseconds per call of each processor chain on (batch, vocab) logits; the chains are
    timed in interleaved rounds and the fastest round counts (the least disturbed one)."""
    import torch

    from staytuned.decoding.processors import build_processors
    from staytuned.hparams.decode import DecodingConfig

    ids = torch.randint(0, vocab, (batch, 32 + generated))
    logits = torch.randn(batch, vocab)
    chains = {name: build_processors(DecodingConfig(**kw), prompt_length=32) for name, kw in cases}
    for chain in chains.values():
        chain(ids, logits)  # warm-up
    best = {name: float("inf") for name in chains}
    for _ in range(rounds):
        for name, chain in chains.items():
            start = time.perf_counter()
            for _ in range(calls):
                chain(ids, logits)
            best[name] = min(best[name], (time.perf_counter() - start) / calls * 1e6)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the best run of each case counts")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads (default: torch's choice; 1 is far faster on a busy machine)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "decoding.json"))
    args = ap.parse_args()

    import torch
    import transformers

    from staytuned.decoding.hf_backend import HFBackend
    from staytuned.hparams.decode import DecodingConfig

    transformers.logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)
    prompts = (PROMPTS * ((args.prompts + len(PROMPTS) - 1) // len(PROMPTS)))[: args.prompts]
    t0 = time.perf_counter()
    batched = HFBackend.load(args.model, device="cpu", batch_size=args.batch_size)
    load_s = time.perf_counter() - t0
    single = HFBackend(batched.model, batched.tokenizer, model_name=args.model, batch_size=1)
    sampling = DecodingConfig(temperature=0.7, top_p=0.95, max_new_tokens=args.max_new_tokens, seed=0)
    batched.generate(prompts[:2], sampling.replace(max_new_tokens=4))  # warm-up

    results = {}
    print(f"model {args.model} loaded in {load_s:.1f} s; {len(prompts)} prompts, "
          f"max_new_tokens={args.max_new_tokens}, torch threads={torch.get_num_threads()}", file=sys.stderr)
    cases = [
        ("one_at_a_time", single, sampling),
        (f"batched_{args.batch_size}", batched, sampling),
        ("batched_freq_presence", batched, sampling.replace(frequency_penalty=0.5, presence_penalty=0.5)),
        ("batched_all_penalties", batched, sampling.replace(frequency_penalty=0.5, presence_penalty=0.5,
                                                            repetition_penalty=1.2)),
        ("batched_greedy", batched, sampling.replace(temperature=0.0)),
    ]
    # Rounds interleave the cases (A B C A B C ...): on a shared machine the load drifts, and
    # interleaving spreads the drift over every case instead of biasing the last ones.
    runs: dict[str, list[dict]] = {name: [] for name, _, _ in cases}
    for round_ in range(args.repeats):
        for name, backend, cfg in cases:
            r = _run_once(backend, prompts, cfg)
            runs[name].append(r)
            print(f"  round {round_ + 1} {name:24s} {r['tokens_per_s']:8.1f} tok/s  ({r['tokens']} tokens "
                  f"in {r['seconds']:.1f} s)", file=sys.stderr)
    for name, _, cfg in cases:
        best = max(runs[name], key=lambda r: r["tokens_per_s"])  # the least disturbed run
        results[name] = {"config": cfg.describe(), "best": best, "runs": runs[name]}

    vocab = batched.model.config.vocab_size
    # Each penalty processor is timed alone next to the plain sampling chain: subtracting two
    # chains that both contain the (dominant) top-p sort would leave mostly noise.
    step = _processor_step_costs([
        ("sampling chain (T, top_p)", {"temperature": 0.7, "top_p": 0.95}),
        ("frequency/presence alone", {"frequency_penalty": 0.5, "presence_penalty": 0.5}),
        ("repetition alone", {"repetition_penalty": 1.2}),
    ], vocab, args.batch_size, args.max_new_tokens)

    def tps(name, how):
        values = [r["tokens_per_s"] for r in results[name]["runs"]]
        return max(values) if how == "best" else statistics.median(values)

    base = f"batched_{args.batch_size}"
    # One decoding step of the plain sampling batch (median run), to put the chain cost in scale.
    step_ms = statistics.median(r["seconds"] for r in results[base]["runs"]) / args.max_new_tokens * 1e3
    penalty_us = step["frequency/presence alone"] + step["repetition alone"]
    summary = {
        "batched_speedup_best": tps(base, "best") / tps("one_at_a_time", "best"),
        "batched_speedup_median": tps(base, "median") / tps("one_at_a_time", "median"),
        "freq_presence_relative_throughput_median": tps("batched_freq_presence", "median") / tps(base, "median"),
        "all_penalties_relative_throughput_median": tps("batched_all_penalties", "median") / tps(base, "median"),
        "processor_us_per_step": step,
        "sampling_step_ms_median": step_ms,
        "penalties_added_ms_per_step": penalty_us / 1e3,
        "penalties_relative_to_sampling_chain": penalty_us / step["sampling chain (T, top_p)"],
        "penalties_share_of_step": penalty_us / 1e3 / step_ms,
    }
    payload = {
        "benchmark": "decoding", "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "torch": torch.__version__, "transformers": transformers.__version__},
        "settings": {"model": args.model, "prompts": len(prompts), "max_new_tokens": args.max_new_tokens,
                     "batch_size": args.batch_size, "repeats": args.repeats, "load_s": load_s},
        "results": results, "summary": summary,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")

    print(f"\nDecoding benchmark: {args.model}, {len(prompts)} prompts x {args.max_new_tokens} new tokens, "
          f"{os.cpu_count()} CPU cores")
    print(f"{'case':26s} {'best tok/s':>10s} {'median tok/s':>12s} {'tokens':>7s}")
    for name, r in results.items():
        print(f"{name:26s} {tps(name, 'best'):10.1f} {tps(name, 'median'):12.1f} {r['best']['tokens']:7d}")
    print(f"batched ({args.batch_size}) vs one at a time: x{summary['batched_speedup_best']:.2f} (best runs), "
          f"x{summary['batched_speedup_median']:.2f} (medians)")
    print("end-to-end throughput relative to plain sampling (medians): "
          f"freq/presence {summary['freq_presence_relative_throughput_median']:.0%}, "
          f"all penalties {summary['all_penalties_relative_throughput_median']:.0%}")
    print(f"processor chain per step (batch {args.batch_size}, vocab {vocab}):")
    for name, us in step.items():
        print(f"  {name:24s} {us / 1e3:8.2f} ms")
    print(f"penalties add {summary['penalties_added_ms_per_step']:.2f} ms per step = "
          f"{summary['penalties_relative_to_sampling_chain']:.0%} of the plain sampling chain, "
          f"{summary['penalties_share_of_step']:.1%} of a {step_ms:.0f} ms sampling step")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
