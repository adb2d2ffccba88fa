"""What the columns and cells of a results table mean: column roles, cell values, directions.

:class:`ColumnSpec` names the column of each role; :func:`parse_value` turns a cell into a
number or a string; :func:`infer_direction` tells from a metric name whether lower is better.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any

from staytuned._util.parse import parse_assignments, parse_number
from staytuned.errors import InputError

__all__ = [
    "DIRECTIONS",
    "ColumnSpec",
    "check_direction",
    "infer_direction",
    "parse_assignment",
    "parse_value",
]

DIRECTIONS = ("max", "min")
# Metric names whose smaller values are better; everything else defaults to "max".
_LOWER_IS_BETTER = re.compile(
    r"(loss|perplexity|ppl|error|err|wer|cer|mae|mse|rmse|latency|runtime|time|cost|regret)",
    re.IGNORECASE,
)


def infer_direction(metric: str | None) -> str:
    """``"min"`` for loss/perplexity/error-like metric names, else ``"max"``."""
    if metric and _LOWER_IS_BETTER.search(str(metric)):
        return "min"
    return "max"


def check_direction(d: str) -> str:
    """``d`` when it is ``"max"`` or ``"min"``; else :class:`InputError` naming ``direction``."""
    if d not in DIRECTIONS:
        raise InputError("unknown direction", field="direction", value=d, expected="'max' (higher is better) or 'min'")
    return d


@dataclass(frozen=True)
class ColumnSpec:
    """Which column plays which role. Defaults read the canonical table (docs/CONTRACTS.md).

    Optional roles (everything but ``dataset`` and ``score``) are used when their column exists;
    naming a non-default column that does not exist is an error.

    HP columns, when ``hps`` is not given: the ``hp_*`` columns if any; else every column with
    no role, minus ``ignore``, minus numeric columns with more distinct values than the largest
    number of rows of one dataset (those are measurements such as other metrics, not HPs).
    """

    dataset: str = "dataset"
    score: str = "score"
    config: str | None = "config_id"
    test_score: str | None = "score_test"
    status: str | None = "status"
    seed: str | None = "seed"
    model: str | None = "model"
    method: str | None = "method"
    train_size: str | None = "train_size"
    metric: str | None = "metric"
    split: str | None = "split"
    group: str | None = None
    hp_json: str | None = "hps"
    hps: tuple[str, ...] | None = None
    ignore: tuple[str, ...] = ("runtime_s", "versions", "error", "trial_id", "trial_number", "study",
                               "metrics", "n_train", "n_eval", "trainer", "precision",
                               "train_tokens_per_s", "peak_memory_mb")

    def roles(self) -> dict[str, str]:
        """role -> column name for every role that has one (not hps/ignore)."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in ("hps", "ignore") and getattr(self, f.name) is not None
        }

    def explicit(self) -> set[str]:
        """Roles whose column name differs from the default (the user named them)."""
        defaults = ColumnSpec()
        return {r for r in self.roles() if getattr(self, r) != getattr(defaults, r)}


_HP_ALIASES = {"lr": "learning_rate", "bs": "batch_size", "batch": "batch_size", "r": "lora_r", "alpha": "lora_alpha"}


def parse_assignment(text: str) -> dict[str, Any]:
    """``"lr=1e-4,epochs=3"`` -> ``{"learning_rate": 1e-4, "epochs": 3}`` (aliases lr, bs, r, alpha;
    the rules of :func:`staytuned._util.parse.parse_assignments`)."""
    return parse_assignments(text, aliases=_HP_ALIASES, expected="name=value[,name=value...]")


def parse_value(text: Any) -> Any:
    """Cell text -> int, float or str (``"3"`` -> 3, ``"1e-4"`` -> 0.0001, ``"cosine"`` stays);
    other cell values (numbers, a float 0.0 kept as float) are returned as they are."""
    return parse_number(text) if isinstance(text, str) else text
