"""Trainers: who trains one trial. One module each, behind :class:`~.base.Trainer`.

============ ==============================================================================
``native``   staytuned's lean PyTorch loop (:mod:`staytuned.finetune.loop`), the default
``trl``      TRL's ``SFTTrainer`` (HF Trainer underneath), optionally under ``accelerate launch``
``command``  the user's own training command (axolotl, LLaMA-Factory, torchtune, any script)
============ ==============================================================================

Everything above a trial (spaces, strategies, pruning, storage, tables, CBS) is the same for
every trainer; :func:`staytuned.finetune.run_trial` resolves the task, config and rows into a
:class:`~.base.TrialJob` and hands it to the trainer named by the ``trainer`` execution setting.
The trainer is recorded with each trial and never part of a config id.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from staytuned.errors import InputError
from staytuned.finetune.trainers.base import Trainer, TrialJob
from staytuned.hparams.schema import TRAINERS, hparams

#: trainer name -> "module:class" (imported on use: trl and its dependencies are heavy).
_IMPLEMENTATIONS: dict[str, str] = {
    "native": "staytuned.finetune.trainers.native:NativeTrainer",
    "trl": "staytuned.finetune.trainers.trl:TRLTrainer",
    "command": "staytuned.finetune.trainers.command:CommandTrainer",
}


def trainer_options(name: str) -> list[str]:
    """The execution settings that are options of trainer ``name`` (declared with ``trainers=``)."""
    return [p.name for p in hparams("execution").values() if p.trainers is not None and name in p.trainers]


def get_trainer(name: str = "native", options: Mapping[str, Any] | None = None) -> Trainer:
    """The trainer ``name`` configured with ``options``; InputError for an unknown trainer or an
    option it does not take."""
    if name not in TRAINERS:
        raise InputError("unknown trainer", field="trainer", value=name, expected="one of " + ", ".join(TRAINERS))
    given = {k: v for k, v in (options or {}).items() if v is not None}
    allowed = trainer_options(name)
    for key in given:
        if key not in allowed:
            owners = [t for t in TRAINERS if key in trainer_options(t)]
            raise InputError(f"{key} is not an option of the {name} trainer"
                             + (f" (it is one of the {' and '.join(owners)} trainer)" if owners else ""),
                             field=key, value=given[key],
                             expected=f"options of {name}: " + (", ".join(allowed) or "none"))
    module, _, cls = _IMPLEMENTATIONS[name].partition(":")
    try:
        impl = getattr(importlib.import_module(module), cls)
    except ModuleNotFoundError as exc:
        raise InputError(f"the {name} trainer needs {exc.name}, which is not installed", field="trainer",
                         value=name, expected="pip install 'staytuned[train]' (see the README)") from None
    trainer: Trainer = impl(**given)
    return trainer


__all__ = ["TRAINERS", "Trainer", "TrialJob", "get_trainer", "trainer_options"]
