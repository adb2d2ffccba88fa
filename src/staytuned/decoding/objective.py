"""Score one decoding config on a task: n seeded samples -> mean, confidence interval, secondaries.

Sampling is noisy, so a config is decoded ``samples`` times with seeds ``seed, seed+1, ...`` and
its task metric is reported as the mean over samples with a Student-t confidence interval.
Greedy decoding is deterministic: it is decoded once (interval of width 0, ``n_samples`` 1).

Secondary objectives, computed on the same outputs:
``output_tokens`` (mean generated tokens per prompt), ``distinct_n`` (distinct n-grams / all
n-grams over all outputs of a sample: diversity), ``repetition_rate`` (share of an output's
n-grams that repeat an earlier n-gram of the same output, averaged over outputs).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from staytuned.hparams.decode import DecodingConfig

if TYPE_CHECKING:
    from staytuned.decoding.base import Backend, Generation
    from staytuned.tasks import Task

# Secondary objectives: name -> optimization direction.
SECONDARY = {"output_tokens": "min", "distinct_n": "max", "repetition_rate": "min"}

# Default generation length per task type: a label is short, a summary needs room.
DEFAULT_MAX_NEW_TOKENS = {"classification": 16, "qa": 32, "summarization": 64}


# ------------------------------------------------------------------------------ statistics


def t_quantile(confidence: float, df: int) -> float:
    """Two-sided Student-t quantile (e.g. 0.95, df=2 -> 4.303). Exact via the regularized
    incomplete beta function inverted by bisection: no scipy needed for a handful of samples."""
    if df < 1:
        return math.nan
    target = (1 + confidence) / 2  # the CDF value at the quantile

    def cdf(t: float) -> float:
        x = df / (df + t * t)
        return 1 - 0.5 * _betainc(df / 2, 0.5, x)

    lo, hi = 0.0, 1.0
    while cdf(hi) < target:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if cdf(mid) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b) by Lentz's continued fraction (Numerical Recipes)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log1p(-x))
    if x > (a + 1) / (a + b + 2):
        return 1.0 - _betainc(b, a, 1 - x)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        num = m * (b - m) * x / ((a + m2 - 1) * (a + m2))
        d = 1.0 + num * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + num / c if abs(1.0 + num / c) > tiny else tiny
        h *= d * c
        num = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1))
        d = 1.0 + num * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + num / c if abs(1.0 + num / c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return front * h / a


@dataclass(frozen=True)
class Estimate:
    """Mean of per-sample values with a t confidence interval (half-width 0 for one sample)."""

    mean: float
    low: float
    high: float
    std: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float], confidence: float = 0.95) -> Estimate:
        vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
        if not vals:
            nan = float("nan")
            return cls(nan, nan, nan, nan, 0)
        mean = statistics.fmean(vals)
        if len(vals) == 1:
            return cls(mean, mean, mean, 0.0, 1)
        std = statistics.stdev(vals)
        half = t_quantile(confidence, len(vals) - 1) * std / math.sqrt(len(vals))
        return cls(mean, mean - half, mean + half, std, len(vals))

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def to_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "ci_low": self.low, "ci_high": self.high, "std": self.std,
                "n": self.n}


# ------------------------------------------------------------------------------ text statistics


def _tokens(text: str) -> list[str]:
    return text.lower().split()


def _ngrams(words: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Distinct n-grams / all n-grams over ``texts`` (whitespace words); nan when none."""
    grams = [g for t in texts for g in _ngrams(_tokens(t), n)]
    return len(set(grams)) / len(grams) if grams else float("nan")


def repetition_rate(text: str, n: int = 2) -> float:
    """Share of the n-grams of ``text`` that already occurred earlier in it (0 = no loops)."""
    grams = _ngrams(_tokens(text), n)
    if not grams:
        return 0.0
    seen: set[tuple[str, ...]] = set()
    repeats = 0
    for g in grams:
        repeats += g in seen
        seen.add(g)
    return repeats / len(grams)


# ------------------------------------------------------------------------------ scoring


@dataclass
class SampleResult:
    """One decoding pass over the prompts with one seed."""

    seed: int | None
    score: float
    metrics: dict[str, float]
    output_tokens: float
    distinct_n: float
    repetition_rate: float
    generations: list[Generation] = field(default_factory=list, repr=False)


@dataclass
class ConfigScore:
    """A config's result over its samples (what a decoding trial stores)."""

    config: DecodingConfig
    metric: str
    direction: str
    samples: list[SampleResult]
    runtime_s: float
    confidence: float = 0.95

    @property
    def score(self) -> Estimate:
        return Estimate.of([s.score for s in self.samples], self.confidence)

    def secondary(self, name: str) -> float:
        vals = [getattr(s, name) for s in self.samples if math.isfinite(getattr(s, name))]
        return statistics.fmean(vals) if vals else float("nan")

    def metrics(self) -> dict[str, Any]:
        """Flat metrics for storage: task metrics averaged over samples, the interval, secondaries."""
        est = self.score
        names = sorted({k for s in self.samples for k in s.metrics})
        out: dict[str, Any] = {k: statistics.fmean([s.metrics[k] for s in self.samples
                                                     if k in s.metrics]) for k in names}
        out.update({f"{self.metric}_ci_low": est.low, f"{self.metric}_ci_high": est.high,
                    f"{self.metric}_std": est.std, "n_samples": est.n,
                    "sample_scores": [s.score for s in self.samples],
                    "seeds": [s.seed for s in self.samples]})
        for name in SECONDARY:
            out[name] = self.secondary(name)
        return out


def task_prompts(task: Task, rows: Sequence[dict[str, Any]], backend: Backend
                 ) -> tuple[list[str], bool]:
    """Prompts for ``rows`` as ``backend`` wants them: ``(prompts, raw)``.

    Local models get the task template rendered with their own chat template (``raw=True``:
    passed as is). A chat HTTP server renders templates itself, so it gets the instruction;
    a plain completion server gets the plain instruction format.
    """
    from staytuned.tasks import build_prompt, format_instruction

    tokenizer = getattr(backend, "tokenizer", None)
    if tokenizer is not None:
        use_chat = bool(getattr(backend, "chat", True))
        return [build_prompt(task, r, tokenizer, use_chat_template=use_chat) for r in rows], True
    if getattr(backend, "chat", False):
        return [format_instruction(task, r) for r in rows], True
    return [build_prompt(task, r, None) for r in rows], True


def score_config(backend: Backend, task: Task, rows: Sequence[dict[str, Any]],
                 config: DecodingConfig, *, samples: int = 3, seed: int = 0,
                 prompts: tuple[list[str], bool] | None = None, distinct: int = 2,
                 keep_generations: bool = False, confidence: float = 0.95,
                 on_sample: Callable[[int, int], None] | None = None) -> ConfigScore:
    """Decode ``rows`` ``samples`` times (seeds ``seed + i``) and score each pass with the task metric."""
    from staytuned.tasks import compute_metrics

    if samples < 1:
        from staytuned.errors import InputError

        raise InputError("must be at least 1", field="samples", value=samples, expected="an integer >= 1")
    texts, raw = prompts or task_prompts(task, rows, backend)
    references = task.references(rows)
    n = samples if config.do_sample else 1  # greedy: every seed gives the same text
    started = time.perf_counter()
    results: list[SampleResult] = []
    for i in range(n):
        cfg = config.replace(seed=seed + i)
        gens = backend.generate(texts, cfg, raw=raw)
        outputs = [g.text for g in gens]
        metrics = compute_metrics(task, outputs, references)
        results.append(SampleResult(
            seed=cfg.seed, score=float(metrics[task.metric]), metrics=dict(metrics),
            output_tokens=statistics.fmean(g.n_output_tokens for g in gens) if gens else 0.0,
            distinct_n=distinct_n(outputs, distinct),
            repetition_rate=statistics.fmean(repetition_rate(o, distinct) for o in outputs) if outputs else 0.0,
            generations=list(gens) if keep_generations else [],
        ))
        if on_sample is not None:
            on_sample(i + 1, n)
    direction = "min" if str(task.direction).lower().startswith("min") else "max"
    return ConfigScore(config=config, metric=task.metric, direction=direction, samples=results,
                       runtime_s=time.perf_counter() - started, confidence=confidence)
