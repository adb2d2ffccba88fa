"""The untuned model's score on a study's own evaluation rows: what tuning has to beat.

Scored once with the study's trial function (``eval_only=True``: no training) and cached under
``$STAYTUNED_CACHE/untuned/`` per model, task, split, rows and the settings that change scoring,
so a resumed or repeated study pays nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from staytuned.search.objective import resolve_trial_fn
from staytuned.search.study import StudySpec

# Training hyperparameters that change how the untuned model is scored (prompt truncation).
_SCORING_HPS = ("max_seq_length",)


@dataclass(frozen=True)
class Baseline:
    """The untuned model's score (``cached``: read back, not scored now)."""

    model: str
    task: str
    metric: str
    score: float
    n_eval: int
    eval_split: str
    runtime_s: float
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def baseline_key(spec: StudySpec) -> dict[str, Any]:
    """What the untuned score depends on (the cache key, in words)."""
    space = spec.load_space()
    fixed = {**space.fixed, **spec.settings.overrides}
    key = {
        "model": spec.model, "task": spec.task, "split": spec.settings.eval_split,
        "eval_size": spec.settings.eval_size, "seed": spec.settings.seed,
        "trial_fn": spec.trial_fn, "precision": spec.settings.execution.precision,
        **{k: fixed[k] for k in _SCORING_HPS if k in fixed},
    }
    # Another trainer scores its own way (a training command reports its own metric): a native
    # untuned score is not its baseline. Native keys stay as they were, so their caches still hit.
    if spec.settings.execution.trainer != "native":
        key["trainer"] = spec.settings.execution.trainer
    return key


def untuned_baseline(spec: StudySpec, *, cache_dir: Path | None = None) -> Baseline | None:
    """Score (or read back) the untuned model on the study's evaluation rows.

    None when the study has no single model (``model`` searched) or its trial function cannot
    score without training. Raises what the trial function raises for bad input.
    """
    if spec.model is None or spec.load_space().kind != "train":
        return None
    key = baseline_key(spec)
    if cache_dir is None:
        from staytuned.models import cache_root

        cache_dir = cache_root() / "untuned"
    digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = cache_dir / f"{digest}.json"
    if path.is_file():
        try:
            return Baseline(**{**json.loads(path.read_text(encoding="utf-8"))["baseline"],
                               "cached": True})
        except (ValueError, KeyError, TypeError):
            pass  # a damaged cache entry is scored again
    fn = resolve_trial_fn(spec.trial_fn)
    config = {k: v for k, v in key.items() if k in _SCORING_HPS}
    start = time.perf_counter()
    result = fn(model=spec.model, task=spec.task, config=config, train_size=spec.settings.train_size,
                eval_size=spec.settings.eval_size, eval_split=spec.settings.eval_split,
                seed=spec.settings.seed, eval_only=True, **spec.settings.execution.trial_kwargs())
    data = result.to_dict() if hasattr(result, "to_dict") else dict(result)
    score = data.get("score")
    if data.get("status", "ok") != "ok" or score is None or not math.isfinite(float(score)):
        return None
    baseline = Baseline(model=str(spec.model), task=spec.task, metric=str(data.get("metric") or ""),
                        score=float(score), n_eval=int(data.get("n_eval") or 0),
                        eval_split=spec.settings.eval_split,
                        runtime_s=round(time.perf_counter() - start, 2))
    from staytuned._util.io import atomic_write_text

    cache_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"key": key, "baseline": baseline.to_dict()}, indent=2,
                                       default=str) + "\n")
    return baseline
