"""The one declaration of every hyperparameter and execution setting.

A *hyperparameter* changes the trained model or its outputs (learning rate, schedule, batch,
epochs, method, LoRA r/alpha, decoding temperature ...): it is part of a config and its config id.
An *execution setting* says how one machine runs a config (precision, micro-batch, device,
threads): chosen per run, recorded with a trial, never part of a config id, a results-table HP
column or a recommendation.

TrainConfig/DecodingConfig validation, search-space validation, export defaults, the CLI options
and the docs tables all read these declarations (tests/hparams/test_schema.py checks each).
Light module: stdlib only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from staytuned.errors import InputError

Kind = Literal["hyperparameter", "execution"]
Scope = Literal["train", "decode"]
Method = Literal["lora", "qlora", "full"]

METHODS: tuple[Method, ...] = ("lora", "qlora", "full")
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup", "polynomial",
              "time_based", "step", "exponential")
OPTIMIZERS = ("adamw", "sgd", "adafactor")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
CHECKPOINTING = ("auto", "on", "off")
#: Who trains a trial (:mod:`staytuned.finetune.trainers`): staytuned's own loop, TRL's
#: SFTTrainer, or the user's own training command.
TRAINERS = ("native", "trl", "command")
#: How a ``trl`` trial spreads over processes (its ``distributed`` option).
DISTRIBUTED = ("auto", "none", "fsdp", "deepspeed")
#: Formats of the config file the command trainer writes for its command (``{config}``).
COMMAND_FORMATS = ("json", "axolotl", "llama-factory", "trl")
#: Default peak learning rate per method (``learning_rate: None`` means this).
DEFAULT_LR: dict[str, float] = {"lora": 1e-4, "qlora": 1e-4, "full": 1e-5}


@dataclass(frozen=True)
class HParam:
    """One declared name: its type, default, constraints and help text.

    ``low``/``high`` bound numbers (``low_open``/``high_open`` make a bound exclusive);
    ``choices`` lists the allowed values; ``methods`` are the training methods it applies to
    (LoRA-only names are ignored for full fine-tuning); ``nullable`` allows ``None`` (= default or
    "decide at run time"). ``trainers`` names the trainers an execution setting is an option of
    (passed to that trainer as ``trainer_options``); None: every trainer's setting.
    """

    name: str
    type: type
    default: Any
    help: str
    scope: Scope = "train"
    kind: Kind = "hyperparameter"
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    methods: tuple[Method, ...] = METHODS
    nullable: bool = False
    off: str = ""  # the value that switches a decoding filter or penalty off, e.g. "0 = greedy"
    trainers: tuple[str, ...] | None = None

    @property
    def expected(self) -> str:
        """What a valid value looks like, in words (used in every error message)."""
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self.choices))
        what = {int: "an integer", float: "a number", bool: "true or false",
                str: "a string"}[self.type]
        if self.low is not None and self.high is not None:
            text = (f"{what} in {'(' if self.low_open else '['}{_bound(self.low)}, "
                    f"{_bound(self.high)}{')' if self.high_open else ']'}")
        elif self.low is not None:
            text = f"{what} {'>' if self.low_open else '>='} {_bound(self.low)}"
        elif self.high is not None:
            text = f"{what} {'<' if self.high_open else '<='} {_bound(self.high)}"
        else:
            text = what
        return f"{text} ({self.off})" if self.off else text

    def check(self, value: Any, *, file: str | None = None, field: str | None = None) -> Any:
        """Coerce ``value`` to this type and check its constraints; return the clean value.

        Numeric strings (YAML reads ``1e-4`` as a string) and integral floats for ints are
        accepted; bools are never numbers. Raises InputError naming the field and what was
        expected.
        """
        field = field or self.name
        if value is None:
            if self.nullable:
                return None
            raise InputError(f"missing {self.name}", value=value, expected=self.expected, file=file, field=field)
        clean = _coerce(self.type, value)
        if clean is _BAD:
            raise InputError(f"invalid {self.name}", value=value, expected=self.expected, file=file, field=field)
        if self.choices is not None and clean not in self.choices:
            raise InputError(f"unknown {self.name}", value=value, expected=self.expected, file=file, field=field)
        if self.type in (int, float) and not _in_bounds(self, clean):
            raise InputError(f"invalid {self.name}", value=value, expected=self.expected, file=file, field=field)
        return clean


_BAD = object()


def _bound(x: float) -> str:
    return "2**63" if x == 2.0**63 else f"{x:g}"


def _coerce(kind: type, value: Any) -> Any:
    if hasattr(value, "item") and not isinstance(value, str | bytes):  # numpy scalars
        value = value.item()
    if kind is bool:
        return value if isinstance(value, bool) else _BAD
    if kind is str:
        return value if isinstance(value, str) else _BAD
    if isinstance(value, bool):
        return _BAD
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return _BAD
    if not isinstance(value, int | float) or not math.isfinite(value):
        return _BAD
    if kind is int:
        return int(value) if float(value).is_integer() else _BAD
    return float(value)


def _in_bounds(p: HParam, x: float) -> bool:
    if p.low is not None and (x <= p.low if p.low_open else x < p.low):
        return False
    return not (p.high is not None and (x >= p.high if p.high_open else x > p.high))


#: The methods that train a LoRA adapter and take the LoRA hyperparameters (qlora: on a 4-bit base).
LORA_METHODS: tuple[Method, ...] = ("lora", "qlora")

TRAIN: tuple[HParam, ...] = (
    HParam("method", str, "lora",
           "lora (train a LoRA adapter on the frozen base), qlora (the same adapter on a 4-bit NF4 "
           "base, needs bitsandbytes) or full (all weights).", choices=METHODS),
    HParam("learning_rate", float, None,
           "Peak learning rate (default 1e-4 for lora and qlora, 1e-5 for full).",
           low=0.0, low_open=True, nullable=True),
    HParam("lr_scheduler", str, "linear",
           "linear, cosine, constant, constant_with_warmup, polynomial; time_based lr/(1+k*t), "
           "step lr*gamma^floor(t/n), exponential lr*gamma^t (t in epochs).", choices=SCHEDULERS),
    HParam("warmup_ratio", float, 0.0, "Fraction of optimizer steps with linear warmup from 0.",
           low=0.0, high=1.0, high_open=True),
    HParam("weight_decay", float, 0.0, "Decoupled weight decay on matrices.", low=0.0),
    HParam("batch_size", int, 8, "Effective batch size, split into micro-batches x accumulation.",
           low=1),
    HParam("epochs", float, 3.0, "Passes over the training rows; fractions allowed.",
           low=0.0, low_open=True),
    HParam("max_seq_length", int, 512, "Prompt + answer tokens per example.", low=8),
    HParam("optimizer", str, "adamw", "adamw, sgd (momentum 0.9) or adafactor.", choices=OPTIMIZERS),
    HParam("seed", int, 0, "Training seed: adapter init, data order, dropout.", low=0),
    HParam("lora_r", int, 16, "LoRA rank.", low=1, methods=LORA_METHODS),
    HParam("lora_alpha", int, 32, "LoRA alpha (scale = alpha / r).", low=0, low_open=True,
           methods=LORA_METHODS),
    HParam("lora_dropout", float, 0.05,
           "Dropout on the LoRA input (on a CPU its masks cost a third of LoRA training time: 0 is faster).",
           low=0.0, high=1.0,
           high_open=True, methods=LORA_METHODS),
    HParam("lora_target_modules", str, "all-linear", '"all-linear" or a comma list like "q_proj,v_proj".',
           methods=LORA_METHODS),
    HParam("time_decay_k", float, 1.0, "time_based schedule: lr / (1 + k * epochs done).", low=0.0),
    HParam("step_size_epochs", float, 1.0, "step schedule: decay every n epochs.", low=0.0,
           low_open=True),
    HParam("step_gamma", float, 0.5, "step schedule: factor per step.", low=0.0, low_open=True),
    HParam("exp_gamma", float, 0.5, "exponential schedule: factor per epoch.", low=0.0, low_open=True),
)

DECODE: tuple[HParam, ...] = (
    HParam("max_new_tokens", int, 64, "Most tokens generated.", scope="decode", low=1),
    HParam("temperature", float, 1.0, "Sampling temperature; 0 = greedy.", scope="decode",
           low=0.0, high=2.0, off="0 = greedy"),
    HParam("top_k", int, 0, "Keep the k most likely tokens; 0 = off.", scope="decode", low=0,
           off="0 = off"),
    HParam("top_p", float, 1.0, "Nucleus sampling mass; 1 = off.", scope="decode", low=0.0,
           low_open=True, high=1.0, off="1 = off"),
    HParam("min_p", float, 0.0, "Drop tokens below min_p x the top probability; 0 = off.",
           scope="decode", low=0.0, high=1.0, off="0 = off"),
    HParam("frequency_penalty", float, 0.0, "OpenAI additive penalty per repeat; 0 = off.",
           scope="decode", low=-2.0, high=2.0, off="0 = off"),
    HParam("presence_penalty", float, 0.0, "OpenAI additive penalty once a token appeared; 0 = off.",
           scope="decode", low=-2.0, high=2.0, off="0 = off"),
    HParam("repetition_penalty", float, 1.0, "Multiplicative CTRL/HF penalty; 1 = off.",
           scope="decode", low=0.0, low_open=True, off="1 = off"),
    HParam("stop", str, None, "Stop sequence(s): generation ends before the first one.",
           scope="decode", nullable=True),
    HParam("do_sample", bool, None, "false forces greedy decoding (temperature 0).",
           scope="decode", nullable=True),
    HParam("seed", int, None, "Sampling seed.", scope="decode", low=0, high=2.0**63,
           high_open=True, nullable=True),
)

EXECUTION: tuple[HParam, ...] = (
    HParam("precision", str, "auto",
           "auto (measured: bf16 only where it is fast on this machine), fp32, bf16 or fp16.",
           kind="execution", choices=PRECISIONS),
    HParam("micro_batch_size", int, None, "Examples per forward pass (default: chosen to fit).",
           kind="execution", low=1, nullable=True),
    HParam("device", str, None, "cpu, cuda, cuda:1 ... (default: cuda when available).",
           kind="execution", nullable=True),
    HParam("threads", int, None, "torch CPU threads (default: the CPUs this process may use).",
           kind="execution", low=1, nullable=True),
    HParam("gradient_checkpointing", str, "auto",
           "auto (on only when the memory planner says the trial would not fit otherwise), on or off: "
           "recompute each layer's activations in the backward pass (less memory, about a third "
           "more compute).", kind="execution", choices=CHECKPOINTING),
    HParam("trainer", str, "native",
           "Who trains each trial: native (staytuned's lean loop), trl (TRL's SFTTrainer) or command "
           "(your own training command).", kind="execution", choices=TRAINERS),
    # Options of the command trainer (docs/trainers.md). None = unset, so that they reach no other trainer.
    HParam("command", str, None,
           "Your training command, run once per trial, e.g. `axolotl train {config}` or "
           "`python train.py --lr {learning_rate} --out {output_dir}` (placeholders: docs/trainers.md).",
           kind="execution", nullable=True, trainers=("command",)),
    HParam("command_format", str, None,
           "Format of the {config} file written for the command: json (default), axolotl, llama-factory "
           "or trl.", kind="execution", choices=COMMAND_FORMATS, nullable=True, trainers=("command",)),
    HParam("metric_file", str, None,
           "JSON file the command writes its score to (default {output_dir}/metrics.json).",
           kind="execution", nullable=True, trainers=("command",)),
    HParam("metric_regex", str, None,
           "Regex read on the command's output lines when there is no metric file: a group named "
           "score (or one group); with a group named epoch, per-epoch scores for pruning.",
           kind="execution", nullable=True, trainers=("command",)),
    HParam("trial_timeout", float, None,
           "Seconds a trial's command may run before its process group is killed (default: no limit).",
           kind="execution", low=0.0, low_open=True, nullable=True, trainers=("command",)),
    # Options of the trl trainer (README "Trainers"). None = unset (auto / every visible GPU).
    HParam("distributed", str, None,
           "How a trl trial spreads over processes: auto (default: accelerate launch with FSDP only when "
           "the memory planner says it does not fit on one GPU and several are visible), none (this "
           "process), fsdp or deepspeed (ZeRO-3) under accelerate launch.", kind="execution",
           choices=DISTRIBUTED, nullable=True, trainers=("trl",)),
    HParam("num_processes", int, None,
           "Processes (GPUs) of a trl trial's accelerate launch (default: every visible GPU).",
           kind="execution", low=1, nullable=True, trainers=("trl",)),
)

#: Names that say how a run executes, never what is trained.
EXECUTION_SETTINGS: frozenset[str] = frozenset(p.name for p in EXECUTION)
#: Names of a trial's cell (where a config runs), never part of a config's identity either.
CELL_AXES: tuple[str, ...] = ("task", "dataset", "model", "method", "train_size")

_BY_SCOPE: dict[str, dict[str, HParam]] = {
    "train": {p.name: p for p in TRAIN},
    "decode": {p.name: p for p in DECODE},
    "execution": {p.name: p for p in EXECUTION},
}


def hparams(scope: Literal["train", "decode", "execution"]) -> dict[str, HParam]:
    """Declarations of one scope, by name, in declaration order."""
    return dict(_BY_SCOPE[scope])


def train_defaults() -> dict[str, Any]:
    """Every training hyperparameter's default (``learning_rate`` None: per method)."""
    return {p.name: p.default for p in TRAIN}


def split_execution(values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a mapping into (hyperparameters and everything else, execution settings)."""
    hps = {k: v for k, v in values.items() if k not in EXECUTION_SETTINGS}
    execution = {k: v for k, v in values.items() if k in EXECUTION_SETTINGS}
    return hps, execution


def execution_error(name: str, *, file: str | None = None, field: str | None = None) -> InputError:
    """The error for an execution setting given where a hyperparameter belongs."""
    return InputError(
        f"{name} is an execution setting, not a hyperparameter: it is chosen per run and never "
        "part of a config", file=file, field=field or name,
        expected=f"pass {name}=... to run_trial / the study (CLI: --{name.replace('_', '-')})",
    )


def check_execution(values: Mapping[str, Any]) -> dict[str, Any]:
    """Validate execution settings (unknown names are errors); return the clean values."""
    known = _BY_SCOPE["execution"]
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name not in known:
            raise InputError("unknown execution setting", field=name, value=value,
                             expected="one of " + ", ".join(known))
        out[name] = known[name].check(value)
    return out


def markdown_table(scope: Literal["train", "decode", "execution"]) -> str:
    """The docs table of one scope (README and docs/CONTRACTS.md embed it verbatim)."""
    rows = ["| name | type | default | notes |", "|---|---|---|---|"]
    for p in _BY_SCOPE[scope].values():
        default = ("1e-4 (lora, qlora), 1e-5 (full)" if p.name == "learning_rate"
                   else "—" if p.default is None else str(p.default))
        note = p.help + (" LoRA and QLoRA only." if p.methods == LORA_METHODS else "")
        if p.trainers is not None:
            note += " Trainer " + ", ".join(p.trainers) + " only."
        rows.append(f"| `{p.name}` | {p.type.__name__} | {default} | {note} |")
    return "\n".join(rows)


def names(items: Iterable[HParam]) -> list[str]:
    return [p.name for p in items]
