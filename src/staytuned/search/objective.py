"""The Optuna objective: one trial = a plain function (model, task, config) -> result.

The function is ``staytuned.finetune.run_trial`` by default; any importable callable with the
same keywords works (the tests use a cheap synthetic one). Everything the trial produced goes
into the trial's user_attrs through :mod:`staytuned.search.records` (names in docs/CONTRACTS.md
"Storage / results"); a failed trial is marked failed with its reason and never stops the study.
"""

from __future__ import annotations

import importlib
import math
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from staytuned.errors import InputError
from staytuned.hparams.execution import ExecutionSettings
from staytuned.search.records import cell_attrs, result_attrs, write_record
from staytuned.search.space import SearchSpace

DEFAULT_TRIAL_FN = "staytuned.finetune:run_trial"


class TrialFailed(Exception):
    """A trial failed (its reason is in the user_attrs); the study goes on."""


@dataclass(frozen=True)
class TrialSettings:
    """What every trial of a study shares besides its config."""

    train_size: int | None = None
    eval_size: int | None = 200
    eval_split: str = "validation"
    seed: int = 0
    overrides: Mapping[str, Any] = field(default_factory=dict)  # fixed HPs from the command line
    eval_test: bool = False  # also score the test split (score_test in the results table)
    execution: ExecutionSettings = field(default_factory=ExecutionSettings)  # how, never what


def _prunes(trial: Any) -> bool:
    """Whether ``trial``'s study can prune (a trial without a study is assumed to)."""
    import optuna

    pruner = getattr(getattr(trial, "study", None), "pruner", None)
    return not isinstance(pruner, optuna.pruners.NopPruner)


def resolve_trial_fn(ref: str) -> Callable[..., Any]:
    """``"package.module:function"`` -> the function (a string keeps StudySpec picklable)."""
    module, _, name = ref.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise InputError(f"cannot import trial function: {exc}", field="trial_fn", value=ref,
                         expected="module:function") from None
    return fn


@dataclass
class Objective:
    """Callable Optuna objective for one cell (task, model, method, train size)."""

    space: SearchSpace
    task: str
    model: str | None
    method: str | None
    settings: TrialSettings
    trial_fn: str = DEFAULT_TRIAL_FN
    versions: Mapping[str, str] = field(default_factory=dict)
    model_cache: Any = None  # finetune ModelCache: the base model is loaded once per worker

    @property
    def context(self) -> dict[str, Any]:
        ctx: dict[str, Any] = {"task": self.task, "train_size": self.settings.train_size}
        if self.model is not None:
            ctx["model"] = self.model
        ctx["method"] = self.method or self.space.fixed.get("method", "lora")
        return ctx

    def config_for(self, trial: Any) -> tuple[str, dict[str, Any]]:
        """(model, TrainConfig dict) for an Optuna trial."""
        config = self.space.suggest(trial, self.context)
        config.update(self.settings.overrides)
        model = str(config.pop("model", self.model))
        if self.space.kind == "train":
            config.setdefault("method", self.context["method"])
        return model, config

    def __call__(self, trial: Any) -> float:
        import optuna

        model, config = self.config_for(trial)
        write_record(trial, cell_attrs(task=self.task, model=model, method=config.get("method"),
                                       train_size=self.settings.train_size, seed=self.settings.seed,
                                       config=config, versions=self.versions))

        def on_epoch(epoch: int, score: float) -> bool:
            # Per-epoch validation scores drive the pruner (median / successive halving ...).
            # Without one they would only cost: on generation tasks, an evaluation per epoch.
            if score is None or not math.isfinite(float(score)):
                return False
            trial.report(float(score), int(epoch))
            return bool(trial.should_prune())

        start = time.perf_counter()
        try:
            fn = resolve_trial_fn(self.trial_fn)
            extra: dict[str, Any] = {"eval_test": True} if self.settings.eval_test else {}
            if self.trial_fn == DEFAULT_TRIAL_FN and self.settings.execution.threads:
                import torch

                torch.set_num_threads(self.settings.execution.threads)
            if self.model_cache is None and self.trial_fn == DEFAULT_TRIAL_FN:
                from staytuned.finetune.trial import ModelCache

                self.model_cache = ModelCache(device=self.settings.execution.device)
            result = fn(model=model, task=self.task, config=config,
                        train_size=self.settings.train_size, eval_size=self.settings.eval_size,
                        eval_split=self.settings.eval_split, seed=self.settings.seed,
                        on_epoch=on_epoch if _prunes(trial) else None, model_cache=self.model_cache,
                        **self.settings.execution.trial_kwargs(), **extra)
            data = result.to_dict() if hasattr(result, "to_dict") else dict(result)
        except InputError:
            raise  # every trial would fail the same way: stop and say why
        except Exception as exc:  # a crash in one trial must not end the study
            data = {"status": "failed", "score": float("nan"),
                    "error": f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"}
        data.setdefault("runtime_s", time.perf_counter() - start)
        attrs = result_attrs(data, execution=self.settings.execution.to_dict())
        write_record(trial, attrs)
        if attrs["status"] == "pruned":
            raise optuna.TrialPruned(f"pruned at epoch {len(data.get('epoch_scores') or [])}")
        if attrs["status"] != "ok":
            raise TrialFailed(str(attrs["error"]))
        return float(attrs["score"])
