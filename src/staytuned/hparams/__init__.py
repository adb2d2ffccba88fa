"""Hyperparameters and execution settings: one declaration (schema), and the configs built on it.

``TrainConfig`` (fine-tuning), ``DecodingConfig`` (generation) and ``ExecutionSettings`` (how one
machine runs a trial). Light: importing this package loads no torch.
"""

from staytuned.hparams.decode import DecodingConfig
from staytuned.hparams.execution import ExecutionSettings
from staytuned.hparams.schema import (
    DECODE,
    EXECUTION,
    EXECUTION_SETTINGS,
    TRAIN,
    HParam,
    split_execution,
)
from staytuned.hparams.train import TrainConfig

__all__ = ["DECODE", "EXECUTION", "EXECUTION_SETTINGS", "TRAIN", "DecodingConfig",
           "ExecutionSettings", "HParam", "TrainConfig", "split_execution"]
