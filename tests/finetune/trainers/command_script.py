"""A stand-in training command for tests/finetune/test_command_trainer.py (no model, no torch).

python command_script.py MODE --config FILE [--pids FILE] [--scores 0.3,0.2] [--child] [--sleep S]

MODE: ok (epoch lines for --scores, then metrics.json from the config's learning rate), fail
(prints a traceback, exits 3), hang (sleeps), epochs (epoch lines, --sleep seconds apart, then
hangs: only pruning or a timeout ends it), regex (prints "eval_accuracy = X" lines, writes no
metrics file), final (the score as a final protocol line, no metrics file), silent (exits 0,
reports nothing). --pids writes this process's pid (and its child's, with --child) to FILE;
--runs FILE logs each run's pid there, and runs after the second print --late-scores instead.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import traceback
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode")
    ap.add_argument("--config", required=True)
    ap.add_argument("--pids")
    ap.add_argument("--scores", default="")
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--sleep", type=float, default=0.0)
    ap.add_argument("--runs", help="a file each run appends to: from the third run on, --late-scores")
    ap.add_argument("--late-scores", default="")
    args = ap.parse_args()
    config = json.loads(Path(args.config).read_text(encoding="utf-8"))
    pids = [str(Path("/proc/self").resolve().name)]
    if args.child:  # a child in the same process group, which must die with the command
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        pids.append(str(child.pid))
    if args.pids:
        Path(args.pids).write_text("\n".join(pids) + "\n", encoding="utf-8")
    scores = [float(s) for s in args.scores.split(",") if s]
    if args.runs:
        runs = Path(args.runs)
        done = len(runs.read_text().splitlines()) if runs.exists() else 0
        with runs.open("a") as f:
            f.write(f"{pids[0]}\n")
        if done >= 2:
            scores = [float(s) for s in args.late_scores.split(",") if s]
    print(f"training {config['model']} on {config['task']} with {config['config']['learning_rate']}")
    if args.mode == "fail":
        try:
            raise RuntimeError("CUDA error: something went wrong")
        except RuntimeError:
            traceback.print_exc()
        return 3
    if args.mode == "hang":
        time.sleep(600)
    if args.mode == "regex":
        for epoch, score in enumerate(scores, 1):
            print(f"epoch {epoch}: eval_accuracy = {score}")
        return 0
    for epoch, score in enumerate(scores, 1):
        print(json.dumps({"staytuned": {"epoch": epoch, "score": score}}))
        time.sleep(args.sleep)
    if args.mode == "epochs":
        time.sleep(600)
    score = round(1.0 - abs(config["config"]["learning_rate"] - 1e-3) * 100, 6)
    if args.mode == "final":
        print(json.dumps({"staytuned": {"score": score}}))
    elif args.mode == "ok":
        rows = Path(config["train_file"]).read_text(encoding="utf-8").splitlines()
        Path(config["metric_file"]).write_text(json.dumps(
            {"score": score, "metrics": {"accuracy": score, "train_rows": len(rows)}}), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
