"""ExecutionSettings: how one machine runs a trial, never what is trained.

Chosen per run (CLI flags, ``run_trial`` keywords, a study's settings) and recorded with each
trial; never part of a config, a config id or a recommendation. Declared in
:mod:`staytuned.hparams.schema` like every hyperparameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from staytuned.hparams.schema import check_execution, hparams


@dataclass(frozen=True)
class ExecutionSettings:
    """Precision, micro-batch, device, threads, gradient checkpointing and trainer of a run;
    ``None`` (and "auto") means "decide at run time". A setting declared with ``trainers=`` in the
    schema is an option of those trainers only (``trainer_options``)."""

    precision: str = "auto"
    micro_batch_size: int | None = None
    device: str | None = None
    threads: int | None = None
    gradient_checkpointing: str = "auto"
    trainer: str = "native"
    # command trainer options (docs/trainers.md)
    command: str | None = None
    command_format: str | None = None
    metric_file: str | None = None
    metric_regex: str | None = None
    trial_timeout: float | None = None
    # trl trainer options
    distributed: str | None = None
    num_processes: int | None = None

    def __post_init__(self) -> None:
        for name, value in check_execution(asdict(self)).items():
            object.__setattr__(self, name, value)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> ExecutionSettings:
        """Build from a mapping; unknown names and bad values raise InputError naming them."""
        return cls(**check_execution({k: v for k, v in (values or {}).items() if v is not None}))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def trial_kwargs(self) -> dict[str, Any]:
        """The keywords ``run_trial`` takes (unset ones left out; threads are set per process);
        trainer-specific settings go into ``trainer_options``."""
        declared = hparams("execution")
        kwargs: dict[str, Any] = {}
        options: dict[str, Any] = {}
        for k, v in asdict(self).items():
            if v is None or k == "threads":
                continue
            (options if declared[k].trainers is not None else kwargs)[k] = v
        if options:
            kwargs["trainer_options"] = options
        return kwargs
