"""The memory planner's estimate beside the measured peak of real trials (issue 19).

Each case is one real ``run_trial`` of SmolLM2-135M on CPU in its own process, so peaks never mix:
full fine-tuning and LoRA (and QLoRA: a 4-bit NF4 base loaded with bitsandbytes, trained with
LoRA, when bitsandbytes is importable) at max_seq_length 128 and 512, batch 8 with the micro-batch
the trainer would choose (2048-token budget: 8 at 128, 4 at 512), 24 rows = 3 optimizer steps,
one torch thread. The rows are SciTLDR documents, joined until each example is longer than the
sequence length, so every micro-batch is exactly ``max_seq_length`` wide. ``peak_memory_mb`` is
the process's peak RSS during the trial (VmHWM reset at its start), which holds the Python/torch
runtime and the loaded base model too; the planner models both for device "cpu".

A case ``method:seq:on`` runs with gradient checkpointing on (``off``, the default, without):
the same trial, so peak memory, speed and loss curve compare directly
(``--cases lora:512,lora:512:on,full:512,full:512:on --out bench/results/checkpointing.json``).

Peak memory does not depend on how busy the machine is; run time does.

    .venv/bin/python bench/bench_plan_memory.py [--cases full:128,lora:512,...] [--precision auto]

Prints a table and writes bench/results/plan_memory.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
CASES = ["full:128", "lora:128", "full:512", "lora:512", "qlora:128", "qlora:512"]
TRAIN_ROWS, BATCH = 24, 8
CPU_TOKEN_BUDGET = 2048  # staytuned.finetune.loop.CPU_TOKEN_BUDGET, checked in the child

CHILD = r"""
import json, sys, warnings
warnings.filterwarnings("ignore")
method, seq, precision, rows_n, batch = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
checkpointing = sys.argv[6]
import torch
torch.set_num_threads(1)
import staytuned.finetune.memory as memory
from staytuned.finetune.loop import CPU_TOKEN_BUDGET, encode_pairs
from staytuned.finetune.trial import ModelCache, run_trial
from staytuned.tasks.sources import load_task
from staytuned.tasks.task import Task
from staytuned.tasks.templates import build_chat_example, completion_suffix
rss_imports = memory.current_rss_mb()
nf4, extra = None, {}
if method == "qlora":
    from staytuned.finetune.trainers.native import nf4_compute_dtype
    from staytuned.hparams.train import TrainConfig
    before_bnb = memory.current_rss_mb()
    import bitsandbytes
    rss_imports = memory.current_rss_mb()  # bitsandbytes' own libraries count as runtime
    extra = {"bitsandbytes": bitsandbytes.__version__, "bnb_import_mb": rss_imports - before_bnb}
    # the 4-bit base exactly as a qlora trial gets it: NF4, double quantization, its compute dtype
    nf4 = nf4_compute_dtype(TrainConfig(method="qlora"), precision, "cpu")
cache = ModelCache(device="cpu")
loaded = cache.get("smollm2-135m", nf4_compute_dtype=nf4)
tok = loaded.tokenizer
memory.trim_heap()  # as a worker does after each trial: quantizing leaves freed fp32 buffers
with torch.no_grad():  # read every weight once: safetensors loads lazily (mmap), a trial reads them all
    for p in loaded.model.parameters():
        p.sum()
storages = {p.untyped_storage().data_ptr(): p.untyped_storage().nbytes() for p in loaded.model.parameters()}
param_mb = sum(storages.values()) / 2**20
# Rows long enough for `seq` tokens: SciTLDR documents joined (the summary of the first kept).
sci = load_task("scitldr")
source = sci.split("train")
rows, i = [], 0
while len(rows) < rows_n + 2:
    doc, summary = source[i]["document"], source[i]["summary"]
    j = i + 1
    row = {"document": doc, "summary": summary}
    while len(tok(build_chat_example(sci, row, tok)[0], add_special_tokens=False)["input_ids"]) < seq + 8:
        doc = doc + "\n\n" + source[j]["document"]
        row = {"document": doc, "summary": summary}
        j += 1
    rows.append(row)
    i = j
task = Task(name="scitldr-long", type="summarization", splits={"train": rows[:rows_n], "validation": rows[rows_n:]})
pairs = [build_chat_example(task, r, tok) for r in rows[:rows_n]]
examples = encode_pairs(pairs, tok, seq, completion_suffix(tok))
longest = max(len(e.input_ids) for e in examples)
max_target = max(e.n_target for e in examples)
micro = max(1, min(batch, CPU_TOKEN_BUDGET // longest))
rss_loaded = memory.current_rss_mb()
# File-backed pages count in RSS too: a 4-bit load from fp32 safetensors keeps the file mapped.
status = {line.split(":")[0]: int(line.split()[1]) / 1024 for line in open("/proc/self/status")
          if line.startswith(("RssAnon", "RssFile"))}
cfg = {"method": "lora" if method == "qlora" else method, "learning_rate": 1e-4, "epochs": 1,
       "batch_size": batch, "max_seq_length": seq}
r = run_trial(loaded, task, cfg, train_size=rows_n, eval_size=2, micro_batch_size=micro, precision=precision,
              gradient_checkpointing=checkpointing)
assert r.status == "ok", r.error
print(json.dumps({"method": method, "seq": seq, "precision": r.precision, "micro_batch": r.micro_batch_size,
                  "checkpointing": r.gradient_checkpointing, "loss_curve": r.loss_curve,
                  "train_runtime_s": r.train_runtime_s,
                  "steps": r.steps, "longest_example": longest, "max_target": max_target,
                  "trainer_micro_batch": micro, "token_budget": CPU_TOKEN_BUDGET,
                  "rss_after_imports_mb": rss_imports, "rss_loaded_mb": rss_loaded, "param_mb": param_mb,
                  "rss_file_loaded_mb": status.get("RssFile"), "rss_anon_loaded_mb": status.get("RssAnon"),
                  "runtime_mb": rss_loaded - param_mb, "peak_mb": r.peak_memory_mb,
                  "train_tokens_per_s": r.train_tokens_per_s, "runtime_s": r.runtime_s, **extra}))
"""


def run_case(method: str, seq: int, precision: str, checkpointing: str = "off") -> dict:
    print(f"running {method} at {seq} tokens, checkpointing {checkpointing} ...", file=sys.stderr, flush=True)
    proc = subprocess.run([sys.executable, "-c", CHILD, method, str(seq), precision, str(TRAIN_ROWS), str(BATCH),
                           checkpointing], capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        return {"method": method, "seq": seq, "error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip()
                else f"exit {proc.returncode}"}
    case = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(case), file=sys.stderr, flush=True)
    return case


def estimate(case: dict) -> dict:
    from staytuned.hardware.planner import Device, machine_memory
    from staytuned.hardware.planner import estimate as plan_estimate

    plan = plan_estimate("smollm2-135m", device=Device("cpu", machine_memory(), "cpu"),
                         method=case["method"], max_seq_length=case["seq"], micro_batch=case["micro_batch"],
                         precision=case["precision"], logit_positions=case["max_target"] + 1,
                         gradient_checkpointing=case.get("checkpointing") == "on")
    return {"estimate_mb": plan.total / 2**20,
            "components_mb": {c.name: round(c.bytes / 2**20, 1) for c in plan.components}}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default=",".join(CASES), help="method:seq,... (qlora needs bitsandbytes)")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "plan_memory.json"))
    ap.add_argument("--reestimate", action="store_true",
                    help="keep the measurements in --out and recompute only the planner's estimates")
    args = ap.parse_args()
    out = Path(args.out)
    previous = json.loads(out.read_text()) if args.reestimate else None
    if previous is not None:
        rows = [c for c in previous["cases"]]
    else:
        rows = [run_case(method, int(seq), args.precision, *rest)
                for method, seq, *rest in (spec.split(":") for spec in args.cases.split(","))]
    for case in rows:
        if "error" not in case:
            case.update(estimate(case))
            case["ratio"] = case["estimate_mb"] / case["peak_mb"]
    print(f"{'method':6} {'seq':>4} {'prec':5} {'mb':>3} {'ckpt':>4} {'estimate MiB':>12} {'measured MiB':>12} "
          f"{'ratio':>6} {'train tok/s':>11}")
    for c in rows:
        if "error" in c:
            print(f"{c['method']:6} {c['seq']:>4} did not run: {c['error']}")
            continue
        print(f"{c['method']:6} {c['seq']:>4} {c['precision']:5} {c['micro_batch']:>3} "
              f"{c.get('checkpointing') or 'off':>4} {c['estimate_mb']:12.0f} {c['peak_mb']:12.0f} {c['ratio']:6.2f} "
              f"{c['train_tokens_per_s']:11.0f}")
    import torch
    import transformers

    from staytuned.hardware import planner

    result = previous or {"date": date.today().isoformat(), "cpu": cpu_model(), "machine": platform.machine(),
                          "torch": torch.__version__, "transformers": transformers.__version__,
                          "train_rows": TRAIN_ROWS, "batch_size": BATCH, "threads": 1}
    result["cases"] = rows
    result["planner"] = {"cpu_runtime_mb": planner.CPU_RUNTIME_BYTES / 2**20,
                         "cpu_heap_retention": planner.CPU_HEAP_RETENTION}
    if previous is not None:
        result["reestimated"] = date.today().isoformat()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
