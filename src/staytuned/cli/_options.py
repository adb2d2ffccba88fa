"""Options shared by several commands (typer defaults): output, verbosity, execution settings,
and :class:`OptionGroup` for a set of options several commands take together."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Collection, Mapping
from typing import Any, ClassVar, TypeVar

import typer

from staytuned.cli._common import check_output
from staytuned.errors import InputError, StaytunedError
from staytuned.hparams.schema import CHECKPOINTING, EXECUTION, TRAINERS, check_execution


def _json_path(value: str | None) -> str | None:
    """--json PATH: refused before the command runs when PATH cannot be written."""
    if value is not None and value != "-":
        try:
            check_output(value, "--json")
        except StaytunedError as exc:
            raise typer.BadParameter(str(exc).replace("field '--json': ", "")) from None
    return value


JsonOpt = typer.Option(None, "--json", callback=_json_path,
                       help="Also write the result as JSON to PATH ('-' for stdout).")
QuietOpt = typer.Option(False, "--quiet", "-q", help="Print only errors.")
VerboseOpt = typer.Option(False, "--verbose", "-v", help="Print more detail (debug logs).")

# Execution settings (how a machine runs trials, never part of a config): help from the schema.
_EXEC_HELP = {p.name: p.help for p in EXECUTION}
PrecisionOpt = typer.Option("auto", "--precision", help=_EXEC_HELP["precision"])
DeviceOpt = typer.Option(None, "--device", help=_EXEC_HELP["device"])
ThreadsOpt = typer.Option(None, "--threads", help=_EXEC_HELP["threads"])
MicroBatchOpt = typer.Option(None, "--micro-batch-size", help=_EXEC_HELP["micro_batch_size"])


def _checkpointing(value: str) -> str:
    """--gradient-checkpointing: refused (exit 2) before the command runs unless the schema allows it."""
    try:
        return str(check_execution({"gradient_checkpointing": value})["gradient_checkpointing"])
    except StaytunedError:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(CHECKPOINTING)}") from None


CheckpointingOpt = typer.Option("auto", "--gradient-checkpointing", callback=_checkpointing,
                                help=_EXEC_HELP["gradient_checkpointing"])


def _trainer(value: str) -> str:
    """--trainer: refused (exit 2) before the command runs unless it names a trainer."""
    if value not in TRAINERS:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(TRAINERS)}")
    return value


TrainerOpt = typer.Option("native", "--trainer", callback=_trainer, help=_EXEC_HELP["trainer"])


def _checked(name: str) -> Callable[[Any], Any]:
    """A callback that refuses (exit 2) a value the schema does not allow for setting ``name``."""
    def check(value: Any) -> Any:
        if value is None:
            return value
        try:
            return check_execution({name: value})[name]
        except InputError as exc:
            raise typer.BadParameter(f"{value!r}: expected {exc.expected}" if exc.expected else str(exc)) from None

    return check


# The command trainer's options (docs/trainers.md); library errors name them by these flags.
TRAINER_FLAGS = {"command": "--command", "command_format": "--command-format",
                 "metric_file": "--metric-file", "metric_regex": "--metric-regex",
                 "trial_timeout": "--trial-timeout",
                 "distributed": "--distributed", "num_processes": "--num-processes"}
CommandOpt = typer.Option(None, "--command", help=_EXEC_HELP["command"])
CommandFormatOpt = typer.Option(None, "--command-format", callback=_checked("command_format"),
                                help=_EXEC_HELP["command_format"])
MetricFileOpt = typer.Option(None, "--metric-file", help=_EXEC_HELP["metric_file"])
MetricRegexOpt = typer.Option(None, "--metric-regex", help=_EXEC_HELP["metric_regex"])
TrialTimeoutOpt = typer.Option(None, "--trial-timeout", callback=_checked("trial_timeout"),
                               help=_EXEC_HELP["trial_timeout"])
# The trl trainer's options.
DistributedOpt = typer.Option(None, "--distributed", callback=_checked("distributed"),
                              help=_EXEC_HELP["distributed"])
NumProcessesOpt = typer.Option(None, "--num-processes", callback=_checked("num_processes"),
                               help=_EXEC_HELP["num_processes"])


def check_trainer(trainer: str, options: Mapping[str, Any] | None) -> None:
    """Refuse a trainer's options before any model loads or trial runs: an option of another
    trainer, a missing --command, an unknown placeholder, a bad --metric-regex (InputError naming
    the setting; render it with :data:`TRAINER_FLAGS`)."""
    if trainer == "command" or any(v is not None for v in (options or {}).values()):
        from staytuned.finetune.trainers import get_trainer

        get_trainer(trainer, options)


class OptionGroup:
    """Options that several commands take together, declared once (typer has no option groups).

    A subclass declares them as annotated class attributes, the way a command declares its
    parameters (``dataset_col: str = typer.Option("dataset", "--dataset-col", help=...)``), and
    may add methods that use them. A command takes the whole group as one parameter,
    ``cols: Columns = Columns.param()``; wrapped in :func:`grouped`, its command line has the
    group's options in that parameter's place (same flags, defaults and help) and the parameter
    receives an instance holding their values (an option named ``values`` or ``param`` would hide
    the methods of that name).
    """

    _options: ClassVar[dict[str, tuple[Any, Any]]] = {}  # name -> (type, typer.Option(...))

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        hints = inspect.get_annotations(cls, eval_str=True)
        cls._options = {name: (tp, cls.__dict__[name]) for name, tp in hints.items()}

    def __init__(self, **values: Any) -> None:
        unknown = set(values) - set(self._options)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no options {sorted(unknown)}")
        # An option the command does not take (param(without=...)) holds the option's default.
        for name, (_, option) in self._options.items():
            setattr(self, name, values.get(name, option.default))

    def values(self) -> dict[str, Any]:
        """The options' values by name."""
        return {name: getattr(self, name) for name in self._options}

    @classmethod
    def param(cls, *, without: Collection[str] = ()) -> Any:
        """The default of a command parameter that takes this group (``without``: options it lacks)."""
        unknown = set(without) - set(cls._options)
        if unknown:
            raise ValueError(f"{cls.__name__} has no options {sorted(unknown)}")
        return _GroupParam(cls, tuple(name for name in cls._options if name not in without))


def option_group(spec: Callable[..., object]) -> type[OptionGroup]:
    """The :class:`OptionGroup` whose options are the parameters of ``spec``, declared exactly as a
    command declares its options (``spec``'s body never runs): for a long list of options whose
    values the command only passes on, ``**cols.values()``."""
    params = inspect.signature(spec, eval_str=True).parameters.values()
    namespace: dict[str, Any] = {p.name: p.default for p in params}
    namespace.update(__annotations__={p.name: p.annotation for p in params}, __doc__=spec.__doc__,
                     __module__=spec.__module__)
    return type(spec.__name__, (OptionGroup,), namespace)


class _GroupParam:
    """A command parameter's default that stands for (some of) the options of a group."""

    def __init__(self, group: type[OptionGroup], names: tuple[str, ...]) -> None:
        self.group, self.names = group, names

    def parameters(self, kind: Any) -> list[inspect.Parameter]:
        return [inspect.Parameter(name, kind, default=self.group._options[name][1],
                                  annotation=self.group._options[name][0]) for name in self.names]


_R = TypeVar("_R")


def grouped(command: Callable[..., _R]) -> Callable[..., _R]:
    """``command`` with each parameter whose default is ``Group.param()`` spread into the group's
    options in its signature (what typer reads), gathered back into a ``Group`` when it runs."""
    sig = inspect.signature(command, eval_str=True)
    groups = {p.name: p.default for p in sig.parameters.values() if isinstance(p.default, _GroupParam)}
    params: list[inspect.Parameter] = []
    for p in sig.parameters.values():
        params += groups[p.name].parameters(p.kind) if p.name in groups else [p]
    names = [p.name for p in params]
    if len(names) != len(set(names)):
        raise TypeError(f"{command.__name__}: an option of a group is also a parameter")

    @functools.wraps(command)
    def run(**values: Any) -> _R:
        for name, use in groups.items():
            values[name] = use.group(**{option: values.pop(option) for option in use.names})
        return command(**values)

    run.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    run.__annotations__ = {p.name: p.annotation for p in params} | {"return": sig.return_annotation}
    return run
