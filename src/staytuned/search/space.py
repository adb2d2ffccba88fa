"""Search spaces: YAML files -> typed parameters -> Optuna distributions and grid points.

A space file looks like::

    name: demo
    kind: train                      # train (TrainConfig names) | decode (DecodingConfig names)
    params:
      learning_rate: {type: float, low: 1.0e-5, high: 1.0e-3, log: true, values: [1.0e-4, 5.0e-4]}
      lr_scheduler: {type: categorical, choices: [linear, cosine]}
      batch_size: {type: int, values: [8, 16]}          # no low/high: a discrete parameter
      lora_r: {type: int, values: [8, 16], when: {method: [lora, qlora]}}
    fixed:
      epochs: 1
      max_seq_length: 128

* ``float``/``int`` with ``low``/``high`` are continuous for the samplers (``log: true`` for a
  log scale); their ``values`` (or ``step`` for ints) are the points the grid enumerates.
  Without ``low``/``high`` a numeric parameter is discrete: every sampler picks among ``values``.
* ``categorical`` picks among ``choices``.
* ``when: {name: value | [values]}`` makes a parameter exist only when the named parameter (an
  earlier one, a fixed value, or a cell axis such as ``method``/``model``) has one of the values.
* ``model`` may itself be a categorical parameter (the base model as a hyperparameter).

Two top-level keys shape the grid (samplers other than grid are unaffected):

* ``zip: [[lora_r, lora_alpha]]``: the listed params step through their ``values`` together
  (r=8 with alpha=16, r=32 with alpha=64) instead of forming a product.
* ``half_fraction: [lr_scheduler, batch_size, epochs, lora_r]``: keep half of the combinations
  of these two-level params, those whose level indices sum to an even number. This is the
  textbook 2^(k-1) fractional design (defining relation I = AB...K, resolution k): every level
  of every param, and for k >= 3 every pair of levels of any two params, appears equally often.
  A param that is inactive in a config (its ``when`` fails) counts as level 0.
* ``points: [{learning_rate: 3.0e-4, lr_scheduler: cosine, ...}, ...]``: the grid is exactly
  these configs (each gives every searched param, inside its range), e.g. the top of a CBS
  ranking re-run on bigger cells. Samplers still search the params' ranges.

This module is light: only yaml and Optuna's distributions, no torch.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from staytuned._util.mapping import load_data
from staytuned.errors import InputError
from staytuned.hparams.schema import (
    CELL_AXES,
    EXECUTION_SETTINGS,
    METHODS,
    HParam,
    execution_error,
    hparams,
)

# The declared names a space may search or fix (staytuned.hparams.schema is the one declaration).
TRAIN_HPS: dict[str, HParam] = hparams("train")
DECODE_HPS: dict[str, HParam] = hparams("decode")
# Cell axes that may also be searched (the base model as a categorical hyperparameter).
AXIS_HPS: dict[str, HParam] = {"model": HParam("model", str, None, "Base model.")}
KINDS = {"train": TRAIN_HPS, "decode": DECODE_HPS}
PARAM_TYPES = ("float", "int", "categorical")


@dataclass(frozen=True)
class Param:
    """One searched hyperparameter."""

    name: str
    type: str  # float | int | categorical
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: int | None = None
    values: tuple[Any, ...] = ()  # grid points (numeric) or choices (categorical)
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    @property
    def continuous(self) -> bool:
        """True when samplers search a range rather than a list of values."""
        return self.type != "categorical" and self.low is not None

    def bounds(self) -> tuple[float, float]:
        """``(low, high)`` of a range param, as floats."""
        if self.low is None or self.high is None:
            raise ValueError(f"param {self.name!r} has no range")
        return float(self.low), float(self.high)

    def distribution(self) -> Any:
        """The Optuna distribution the samplers use."""
        from optuna.distributions import (
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )

        if not self.continuous:
            return CategoricalDistribution(list(self.values))
        low, high = self.bounds()
        if self.type == "int":
            return IntDistribution(int(low), int(high), log=self.log,
                                   step=1 if self.log or self.step is None else self.step)
        return FloatDistribution(float(low), float(high), log=self.log)

    def suggest(self, trial: Any) -> Any:
        """Ask an Optuna trial (public suggest_* API) for this param's value."""
        if not self.continuous:
            return trial.suggest_categorical(self.name, list(self.values))
        low, high = self.bounds()
        if self.type == "int":
            step = 1 if self.log or self.step is None else self.step
            return trial.suggest_int(self.name, int(low), int(high), step=step, log=self.log)
        return trial.suggest_float(self.name, float(low), float(high), log=self.log)

    def grid_values(self) -> list[Any]:
        if self.values:
            return list(self.values)
        # An int range with a step enumerates itself; validation guarantees one of the two.
        low, high = self.bounds()
        return list(range(int(low), int(high) + 1, int(self.step or 1)))

    def active(self, context: Mapping[str, Any]) -> bool:
        """Whether the conditions in ``when`` hold for the values chosen so far."""
        return all(name in context and context[name] in allowed for name, allowed in self.when)

    def contains(self, value: Any) -> bool:
        if not self.continuous:
            return any(_same(value, v) for v in self.values)
        try:
            x = float(value)
        except (TypeError, ValueError):
            return False
        low, high = self.bounds()
        return float(low) * (1 - 1e-9) <= x <= float(high) * (1 + 1e-9)


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space: searched params (in order) and fixed values."""

    name: str
    params: tuple[Param, ...]
    fixed: Mapping[str, Any] = field(default_factory=dict)
    kind: str = "train"
    source: str = "<memory>"
    description: str = ""
    zip: tuple[tuple[str, ...], ...] = ()
    half_fraction: tuple[str, ...] = ()
    points: tuple[Mapping[str, Any], ...] = ()

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def suggest(self, trial: Any, context: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Ask an Optuna trial for one config (define-by-run, so conditionals just work)."""
        ctx: dict[str, Any] = {**(context or {}), **self.fixed}
        config: dict[str, Any] = dict(self.fixed)
        for p in self.params:
            if not p.active(ctx):
                continue
            value = p.suggest(trial)
            ctx[p.name] = config[p.name] = _native(value)
        return config

    def grid(self, context: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every distinct config of the grid (inactive conditional params left out)."""
        base = {**(context or {}), **self.fixed}
        partners = {name: group for group in self.zip for name in group}
        configs: list[dict[str, Any]] = []
        seen: set[str] = set()
        if self.points:
            return self._point_configs(base)

        def expand(i: int, ctx: dict[str, Any], config: dict[str, Any],
                   levels: dict[str, int]) -> Iterator[tuple[dict[str, Any], dict[str, int]]]:
            if i == len(self.params):
                yield dict(config), levels
                return
            p = self.params[i]
            if not p.active(ctx) or (p.name in ctx and p.name in partners):  # inactive, or zipped
                yield from expand(i + 1, ctx, config, levels)
                return
            group = [self.param(n) for n in partners.get(p.name, (p.name,))]
            for level in range(len(p.grid_values())):
                values = {q.name: q.grid_values()[level] for q in group}
                yield from expand(i + 1, {**ctx, **values}, {**config, **values},
                                  {**levels, p.name: level})

        for cfg, levels in expand(0, dict(base), dict(self.fixed), {}):
            if self.half_fraction and sum(levels.get(self._lead(n), 0)
                                          for n in self.half_fraction) % 2:
                continue
            key = json.dumps({k: _canon(v) for k, v in cfg.items()}, sort_keys=True)
            if key not in seen:
                seen.add(key)
                configs.append(cfg)
        return configs

    def _point_configs(self, base: Mapping[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for i, point in enumerate(self.points):
            ctx, config = dict(base), dict(self.fixed)
            for p in self.params:
                if not p.active(ctx):
                    continue
                if p.name not in point:
                    raise InputError("point misses a parameter this cell needs", file=self.source,
                                     field=f"points[{i}].{p.name}",
                                     expected=f"a value ({p.name} is active when "
                                              + ", ".join(f"{k} in {list(v)}" for k, v in p.when) + ")")
                ctx[p.name] = config[p.name] = point[p.name]
            if config not in out:
                out.append(config)
        return out

    def _lead(self, name: str) -> str:
        """The param that carries a zip group's level (its first member in param order)."""
        for group in self.zip:
            if name in group:
                return min(group, key=self.names.index)
        return name

    def params_of(self, config: Mapping[str, Any], context: Mapping[str, Any] | None = None
                  ) -> dict[str, Any] | None:
        """The searched-param part of ``config`` (for ``enqueue_trial``), or None if outside.

        A config from another source (a CBS ranking) fits when every active param has a value
        inside its distribution; extra keys must equal the fixed values or be cell axes.
        """
        ctx: dict[str, Any] = {**(context or {}), **self.fixed}
        out: dict[str, Any] = {}
        for p in self.params:
            if not p.active(ctx):
                continue
            if p.name not in config or not p.contains(config[p.name]):
                return None
            value = config[p.name]
            if not p.continuous:  # use the space's own spelling (1e-4 vs 0.0001, 16 vs 16.0)
                value = next(v for v in p.values if _same(value, v))
            elif p.type == "int":
                value = int(round(float(value)))
            else:
                value = float(value)
            ctx[p.name] = out[p.name] = value
        for k, v in config.items():
            if k in out or k in CELL_AXES:
                continue
            if k in self.fixed and not _same(v, self.fixed[k]):
                return None
        return out

    def size(self, context: Mapping[str, Any] | None = None) -> int:
        return len(self.grid(context))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "source": self.source,
            "params": {p.name: _param_dict(p) for p in self.params}, "fixed": dict(self.fixed),
            **({"zip": [list(g) for g in self.zip]} if self.zip else {}),
            **({"half_fraction": list(self.half_fraction)} if self.half_fraction else {}),
            **({"points": [dict(p) for p in self.points]} if self.points else {}),
        }


def config_id(config: Mapping[str, Any]) -> str:
    """Stable id of a config: the same HPs give the same id in every cell and process.

    Cell axes and execution settings are left out: a config stored by an older version with
    ``precision`` inside it keeps the id of the same config without it.
    """
    items = {k: _canon(v) for k, v in sorted(config.items())
             if k not in CELL_AXES and k not in EXECUTION_SETTINGS and v is not None}
    text = json.dumps(items, sort_keys=True, separators=(",", ":"))
    return "c" + hashlib.sha1(text.encode()).hexdigest()[:10]


def preset_names() -> list[str]:
    folder = resources.files("staytuned") / "presets" / "spaces"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_space(ref: str | Path | Mapping[str, Any]) -> SearchSpace:
    """Load ``preset:<name>``, a YAML file path, or an already parsed mapping."""
    if isinstance(ref, Mapping):
        return parse_space(ref, source="<memory>")
    text_ref = str(ref)
    if text_ref.startswith("preset:"):
        name = text_ref.split(":", 1)[1]
        res = resources.files("staytuned") / "presets" / "spaces" / f"{name}.yaml"
        if not res.is_file():
            raise InputError("unknown space preset", field="space", value=text_ref,
                             expected="one of " + ", ".join(f"preset:{n}" for n in preset_names()))
        return parse_space(load_data(res, name=text_ref), source=text_ref)
    data = load_data(text_ref, what="space file",
                     expected="a YAML file or preset:<name> (" + ", ".join(preset_names()) + ")")
    return parse_space(data, source=text_ref)


def parse_space(data: Any, *, source: str = "<memory>") -> SearchSpace:
    """Validate a parsed YAML mapping into a :class:`SearchSpace`."""
    if not isinstance(data, Mapping):
        raise InputError("a space must be a mapping with 'params'", file=source,
                         value=type(data).__name__)
    unknown_top = set(data) - {"name", "kind", "params", "fixed", "description", "zip",
                               "half_fraction", "points"}
    if unknown_top:
        raise InputError("unknown top-level key", file=source, field=sorted(unknown_top)[0],
                         expected="name, kind, description, params, fixed, zip, half_fraction, "
                                  "points")
    kind = str(data.get("kind", "train"))
    if kind not in KINDS:
        raise InputError("unknown space kind", file=source, field="kind", value=kind,
                         expected=" or ".join(KINDS))
    hps = {**KINDS[kind], **AXIS_HPS}
    raw_params = data.get("params") or {}
    if not isinstance(raw_params, Mapping):
        raise InputError("'params' must be a mapping name -> spec", file=source, field="params")
    fixed_raw = data.get("fixed") or {}
    if not isinstance(fixed_raw, Mapping):
        raise InputError("'fixed' must be a mapping name -> value", file=source, field="fixed")
    fixed: dict[str, Any] = {}
    for name, value in fixed_raw.items():
        _check_name(name, hps, source, kind)
        fixed[name] = _check_value(name, value, hps, source)
    params: list[Param] = []
    known: set[str] = set(fixed) | {"method", "model", "task", "train_size"}
    for name, spec in raw_params.items():
        _check_name(name, hps, source, kind)
        if name in fixed:
            raise InputError("parameter is both searched and fixed", file=source, field=name)
        if not isinstance(spec, Mapping):  # shorthand: a list is categorical, a scalar is fixed
            if isinstance(spec, list):
                spec = {"type": "categorical", "choices": spec}
            else:
                fixed[name] = _check_value(name, spec, hps, source)
                known.add(name)
                continue
        params.append(_parse_param(name, spec, hps, source, known))
        known.add(name)
    if not params and not fixed:
        raise InputError("the space has no parameters", file=source, field="params")
    by_name = {p.name: p for p in params}
    _check_conditions(params, fixed, source)
    zip_groups = _parse_zip(data.get("zip"), by_name, source)
    half = _parse_half_fraction(data.get("half_fraction"), by_name, zip_groups, source)
    points = _parse_points(data.get("points"), params, fixed, hps, source)
    if points and (zip_groups or half):
        raise InputError("'points' lists the grid itself: drop 'zip' and 'half_fraction'",
                         file=source, field="points")
    return SearchSpace(name=str(data.get("name", Path(source).stem)), params=tuple(params),
                       fixed=fixed, kind=kind, source=source,
                       description=str(data.get("description", "")), zip=zip_groups,
                       half_fraction=half, points=points)


def _parse_points(raw: Any, params: list[Param], fixed: Mapping[str, Any],
                  hps: Mapping[str, HParam], source: str) -> tuple[dict[str, Any], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw or not all(isinstance(p, Mapping) for p in raw):
        raise InputError("'points' must be a non-empty list of configs (name -> value)",
                         file=source, field="points", value=raw)
    names = {p.name for p in params}
    out = []
    for i, point in enumerate(raw):
        where = f"points[{i}]"
        extra = set(point) - names
        if extra:
            raise InputError("point sets a parameter that is not searched", file=source,
                             field=f"{where}.{sorted(extra)[0]}",
                             expected="one of " + ", ".join(sorted(names)))
        clean: dict[str, Any] = {}
        for p in params:  # a param conditional on a cell axis may be absent (e.g. lora_r)
            if p.name not in point:
                axis_only = p.when and all(c in CELL_AXES for c, _ in p.when)
                if axis_only or not p.active({**fixed, **clean}):
                    continue
                raise InputError("point misses a searched parameter", file=source,
                                 field=f"{where}.{p.name}")
            value = _check_value(p.name, point[p.name], hps, source)
            if p.type == "int":
                value = int(value)
            if not p.contains(value):
                raise InputError("point value outside the parameter's range", file=source,
                                 field=f"{where}.{p.name}", value=value,
                                 expected=", ".join(map(str, p.values)) if not p.continuous
                                 else f"in [{p.low}, {p.high}]")
            clean[p.name] = value
        out.append(clean)
    return tuple(out)


def _parse_zip(raw: Any, params: Mapping[str, Param], source: str) -> tuple[tuple[str, ...], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(g, list) for g in raw):
        raise InputError("'zip' must be a list of lists of parameter names", file=source,
                         field="zip", value=raw, expected="e.g. [[lora_r, lora_alpha]]")
    groups: list[tuple[str, ...]] = []
    used: set[str] = set()
    for g in raw:
        if len(g) < 2:
            raise InputError("a zip group needs at least two parameters", file=source,
                             field="zip", value=g)
        for name in g:
            if name not in params:
                raise InputError("zip names a parameter that is not searched", file=source,
                                 field="zip", value=name, expected="one of " + ", ".join(params))
            if name in used:
                raise InputError("parameter in two zip groups", file=source, field="zip",
                                 value=name)
            used.add(name)
        sizes = {len(params[n].grid_values()) for n in g}
        if len(sizes) > 1:
            raise InputError("zipped parameters need the same number of grid values",
                             file=source, field="zip", value=g,
                             expected=f"equal lengths, got {sorted(sizes)}")
        if len({params[n].when for n in g}) > 1:
            raise InputError("zipped parameters need the same 'when' condition", file=source,
                             field="zip", value=g)
        groups.append(tuple(g))
    return tuple(groups)


def _parse_half_fraction(raw: Any, params: Mapping[str, Param],
                         zip_groups: tuple[tuple[str, ...], ...], source: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) < 2:
        raise InputError("'half_fraction' must list at least two two-level parameters",
                         file=source, field="half_fraction", value=raw)
    leads: set[frozenset[str]] = set()
    for name in raw:
        if name not in params:
            raise InputError("half_fraction names a parameter that is not searched", file=source,
                             field="half_fraction", value=name,
                             expected="one of " + ", ".join(params))
        n_values = len(params[name].grid_values())
        if n_values != 2:
            raise InputError("half_fraction parameters need exactly two grid values",
                             file=source, field=f"{name}.values", value=n_values, expected="2")
        group = frozenset(next((g for g in zip_groups if name in g), (name,)))
        if group in leads:
            raise InputError("half_fraction lists one zip group twice", file=source,
                             field="half_fraction", value=name)
        leads.add(group)
    return tuple(raw)


def _parse_param(name: str, spec: Mapping[str, Any], hps: Mapping[str, HParam],
                 source: str, known: set[str]) -> Param:
    allowed_keys = {"type", "low", "high", "log", "step", "values", "choices", "when"}
    extra = set(spec) - allowed_keys
    if extra:
        raise InputError(f"unknown key {sorted(extra)[0]!r} in parameter", file=source, field=name,
                         expected=", ".join(sorted(allowed_keys)))
    ptype = spec.get("type", "categorical" if "choices" in spec else None)
    if ptype not in PARAM_TYPES:
        raise InputError("unknown parameter type", file=source, field=f"{name}.type", value=ptype,
                         expected=" | ".join(PARAM_TYPES))
    py_type = hps[name].type
    when = _parse_when(name, spec.get("when"), source, known)
    if ptype == "categorical":
        choices = spec.get("choices", spec.get("values"))
        if not isinstance(choices, list) or not choices:
            raise InputError("categorical parameter needs a non-empty 'choices' list", file=source,
                             field=f"{name}.choices", value=choices)
        values = tuple(_check_value(name, c, hps, source) for c in choices)
        return Param(name, "categorical", values=values, when=when)
    if py_type is str or py_type is bool:
        raise InputError(f"{name} takes {py_type.__name__} values: use type categorical",
                         file=source, field=f"{name}.type", value=ptype, expected="categorical")
    low, high, log = spec.get("low"), spec.get("high"), bool(spec.get("log", False))
    raw_values = spec.get("values")
    if raw_values is not None and (not isinstance(raw_values, list) or not raw_values):
        raise InputError("'values' must be a non-empty list", file=source, field=f"{name}.values",
                         value=raw_values)
    def conv(v: float) -> float | int:
        if ptype != "int":
            return float(v)
        if float(v) != int(float(v)):
            raise InputError("wrong value type", file=source, field=name, value=v, expected="int")
        return int(v)

    values = tuple(conv(_number(name, v, source)) for v in raw_values or [])
    if (low is None) != (high is None):
        raise InputError("give both 'low' and 'high' (or neither, with 'values')", file=source,
                         field=name)
    if low is None and not values:
        raise InputError(f"{ptype} parameter needs 'low' and 'high' or a 'values' list",
                         file=source, field=name)
    step = spec.get("step")
    if low is not None:
        low, high = conv(_number(name, low, source)), conv(_number(name, high, source))
        if not low < high:
            raise InputError("'low' must be below 'high'", file=source, field=name,
                             value=[low, high])
        if log and low <= 0:
            raise InputError("a log-scale parameter needs low > 0", file=source,
                             field=f"{name}.low", value=low)
        # Every value a sampler may draw must be one a trial accepts.
        hps[name].check(low, file=source, field=f"{name}.low")
        hps[name].check(high, file=source, field=f"{name}.high")
        for v in values:
            if not low <= v <= high:
                raise InputError("grid value outside [low, high]", file=source,
                                 field=f"{name}.values", value=v, expected=f"in [{low}, {high}]")
        if not values and ptype == "float":
            raise InputError("a float range needs 'values' for the grid", file=source,
                             field=f"{name}.values", expected="e.g. values: [1.0e-4, 3.0e-4]")
        if step is not None and (ptype != "int" or int(step) < 1):
            raise InputError("'step' is for int ranges and must be >= 1", file=source,
                             field=f"{name}.step", value=step)
    for v in values:
        _check_value(name, v, hps, source)
    return Param(name, ptype, low=low, high=high, log=log,
                 step=None if step is None else int(step), values=values, when=when)


def _parse_when(name: str, when: Any, source: str, known: set[str]
                ) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    if when is None:
        return ()
    if not isinstance(when, Mapping) or not when:
        raise InputError("'when' must map a parameter name to a value or list of values",
                         file=source, field=f"{name}.when", value=when)
    out = []
    for cond, allowed in when.items():
        if cond not in known:
            raise InputError("condition on a parameter that is not defined before it",
                             file=source, field=f"{name}.when", value=cond,
                             expected="an earlier parameter, a fixed value, method or model")
        vals = tuple(allowed) if isinstance(allowed, list) else (allowed,)
        out.append((str(cond), vals))
    return tuple(out)


def _check_conditions(params: list[Param], fixed: Mapping[str, Any], source: str) -> None:
    """Every value a ``when`` names must be one its parameter can take: a typo (``lora_r`` when
    ``method: lroa``, a choice the referenced parameter lacks, a value beside a fixed one) would
    otherwise silently switch the parameter off in every trial."""
    by_name = {p.name: p for p in params}
    for p in params:
        for cond, allowed in p.when:
            if cond in fixed:
                possible: str | None = None if any(_same(v, fixed[cond]) for v in allowed) \
                    else f"{fixed[cond]!r} (its fixed value)"
                bad = [] if possible is None else list(allowed)
            elif cond in by_name:
                ref = by_name[cond]
                bad = [v for v in allowed if not _takes(ref, v)]
                possible = (", ".join(map(repr, ref.values)) if not ref.continuous
                            else f"a number in [{ref.low}, {ref.high}]" + (
                                f" in steps of {ref.step}" if ref.step else ""))
            elif cond == "method":
                bad = [v for v in allowed if v not in METHODS]
                possible = " or ".join(METHODS)
            else:  # model, task, train_size: cell axes any value of which may come
                continue
            if bad:
                raise InputError(f"'when' names a value {cond} never takes", file=source,
                                 field=f"{p.name}.when.{cond}", value=bad[0],
                                 expected=possible)


def _takes(p: Param, v: Any) -> bool:
    """Whether a sampler (or the grid) can give ``p`` the value ``v``."""
    if not p.contains(v):
        return False
    if p.continuous and p.type == "int":
        f = float(v)
        return f.is_integer() and (p.log or not p.step or (f - p.bounds()[0]) % p.step == 0)
    return True


def _check_name(name: Any, hps: Mapping[str, Any], source: str, kind: str) -> None:
    if name in EXECUTION_SETTINGS:
        raise execution_error(str(name), file=source)
    if name not in hps:
        close = difflib.get_close_matches(str(name), list(hps), n=1, cutoff=0.7)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise InputError(f"unknown hyperparameter{hint}", file=source, field=str(name),
                         expected=f"a {kind} hyperparameter: " + ", ".join(hps))


def _check_value(name: str, value: Any, hps: Mapping[str, HParam], source: str,
                 field: str | None = None) -> Any:
    """A fixed value, choice or grid point, checked against the declaration (type, constraints)."""
    return hps[name].check(value, file=source, field=field or name)


def _number(name: str, value: Any, source: str) -> float:
    if isinstance(value, str):  # YAML reads 1e-4 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError("not a number", file=source, field=name, value=value, expected="a number")
    return value


def _param_dict(p: Param) -> dict[str, Any]:
    d: dict[str, Any] = {"type": p.type}
    if p.low is not None:
        d.update(low=p.low, high=p.high, log=p.log)
    if p.step is not None:
        d["step"] = p.step
    if p.values:
        d["choices" if p.type == "categorical" else "values"] = list(p.values)
    if p.when:
        d["when"] = {k: list(v) for k, v in p.when}
    return d


def _canon(v: Any) -> Any:
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, int | float):
        f = float(v)
        return int(f) if f.is_integer() and abs(f) < 1e15 else float(f"{f:.6g}")
    return str(v)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or isinstance(a, str) or isinstance(b, str):
        return bool(a == b)
    try:
        fa, fb = float(a), float(b)
    except (TypeError, ValueError):
        return bool(a == b)
    return math.isclose(fa, fb, rel_tol=1e-6, abs_tol=1e-12)


def _native(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def product_size(space: SearchSpace) -> int:
    """Size of the grid without conditionals applied (an upper bound, for messages)."""
    return math.prod(len(p.grid_values()) for p in space.params) if space.params else 1


__all__ = [
    "DECODE_HPS",
    "TRAIN_HPS",
    "Param",
    "SearchSpace",
    "config_id",
    "load_space",
    "parse_space",
    "preset_names",
]
