"""Benchmark: `staytuned report` build time and page size against the number of trials.

Builds SQLite studies with the documented trial user_attrs (3 datasets, 3 HPs, 5% failures),
then times write_report (read + CBS + fANOVA + figures + HTML) and the PNG export separately.
Run: .venv/bin/python bench/bench_report.py   (writes bench/results/report.json)
"""

from __future__ import annotations

import json
import math
import platform
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path


def make_storage(path: Path, n_trials: int, seed: int = 0) -> str:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = random.Random(seed)
    url = f"sqlite:///{path}"
    study = optuna.create_study(study_name="bench", storage=url, direction="maximize")
    study.set_user_attr("kind", "tune")
    dist = {"learning_rate": optuna.distributions.FloatDistribution(1e-5, 1e-3, log=True),
            "epochs": optuna.distributions.IntDistribution(1, 5),
            "lr_scheduler": optuna.distributions.CategoricalDistribution(["linear", "cosine", "constant"])}
    trials = []
    for i in range(n_trials):
        p = {"learning_rate": 10 ** rng.uniform(-5, -3), "epochs": rng.randint(1, 5),
             "lr_scheduler": rng.choice(["linear", "cosine", "constant"])}
        task = ("sst2", "trec", "banking77")[i % 3]
        failed = rng.random() < 0.05
        score = 0.9 - 0.1 * abs(math.log10(p["learning_rate"]) + 4) - 0.03 * abs(p["epochs"] - 3) + rng.gauss(0, 0.01)
        attrs = {"status": "failed" if failed else "ok", "error": "CUDA out of memory" if failed else None,
                 "task": task, "model": "smollm2-135m", "method": "lora", "seed": 0, "train_size": 100,
                 "config_id": f"c{i}", "metric": "accuracy", "score": None if failed else score}
        trials.append(optuna.trial.create_trial(
            params=p, distributions=dist, value=None if failed else score, user_attrs=attrs,
            state=optuna.trial.TrialState.FAIL if failed else optuna.trial.TrialState.COMPLETE))
    study.add_trials(trials)
    return url


def main() -> None:
    from staytuned.report import write_report

    rows = []
    for n in (100, 1000, 5000):
        with tempfile.TemporaryDirectory() as tmp:
            url = make_storage(Path(tmp) / "s.db", n)
            t0 = time.perf_counter()
            res = write_report(url, Path(tmp) / "r.html")
            t_html = time.perf_counter() - t0
            t0 = time.perf_counter()
            res_png = write_report(url, Path(tmp) / "r2.html", png_dir=Path(tmp) / "png")
            t_both = time.perf_counter() - t0
            rows.append({"trials": n, "html_s": round(t_html, 2), "html_plus_png_s": round(t_both, 2),
                         "html_mb": round(res.bytes / 1e6, 2), "pngs": len(res_png.pngs)})
            print(f"{n:>6} trials  html {t_html:6.2f} s  html+png {t_both:6.2f} s  "
                  f"{res.bytes / 1e6:5.2f} MB  {len(res_png.pngs)} PNGs", flush=True)
    out = {"machine": f"{platform.machine()} 2-core CPU (shared with other jobs)",
           "python": sys.version.split()[0], "date": datetime.now(UTC).strftime("%Y-%m-%d"), "rows": rows}
    path = Path(__file__).parent / "results" / "report.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
