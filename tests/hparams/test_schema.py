"""The one declaration: configs, spaces, exports, the CLI and the docs all agree with it.

Each test below fails when a hyperparameter's name, type, default or constraint differs between
the schema and one of its users.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from pathlib import Path
from typing import Any

import pytest

from staytuned.errors import InputError
from staytuned.export.mapping import DEFAULTS, resolve_config
from staytuned.hparams import DecodingConfig, ExecutionSettings, TrainConfig
from staytuned.hparams.schema import (
    DECODE,
    EXECUTION,
    EXECUTION_SETTINGS,
    TRAIN,
    HParam,
    markdown_table,
    train_defaults,
)
from staytuned.search.space import config_id, parse_space

ROOT = Path(__file__).resolve().parents[2]
_SCHEDULE_PARAMS = {"time_decay_k", "step_size_epochs", "step_gamma", "exp_gamma"}


def _type_name(annotation: Any) -> str:
    return str(annotation).split(" | ")[0]


def test_train_config_fields_are_the_declared_names_types_and_defaults() -> None:
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    assert list(fields) == [p.name for p in TRAIN]
    for p in TRAIN:
        assert _type_name(fields[p.name].type) == p.type.__name__, p.name
        assert fields[p.name].default == p.default, p.name


def test_decoding_config_fields_are_the_declared_names_and_defaults() -> None:
    fields = {f.name: f for f in dataclasses.fields(DecodingConfig)}
    declared = {p.name: p for p in DECODE if p.name != "do_sample"}  # derived from temperature
    assert set(fields) == set(declared)
    for name, p in declared.items():
        default = fields[name].default
        if default is dataclasses.MISSING:
            default = fields[name].default_factory()  # type: ignore[misc]
        assert default == p.default or (name == "stop" and default == () and p.default is None), name


def test_execution_settings_are_declared_once_and_never_hyperparameters() -> None:
    assert {f.name for f in dataclasses.fields(ExecutionSettings)} == EXECUTION_SETTINGS
    assert EXECUTION_SETTINGS.isdisjoint(p.name for p in TRAIN)
    assert EXECUTION_SETTINGS.isdisjoint(p.name for p in DECODE)
    assert config_id({"learning_rate": 1e-4, "precision": "bf16", "threads": 2}) == config_id(
        {"learning_rate": 1e-4})
    for name in EXECUTION_SETTINGS:
        with pytest.raises(InputError, match="execution setting"):
            TrainConfig.from_dict({name: 1})
        with pytest.raises(InputError, match="execution setting") as info:
            parse_space({"params": {"learning_rate": [1e-4]}, "fixed": {name: 1}}, source="s.yaml")
        assert info.value.field == name


def test_export_defaults_are_the_declared_defaults() -> None:
    declared = train_defaults()
    assert declared.pop("learning_rate") is None  # per method: 1e-4 lora, 1e-5 full
    assert declared == DEFAULTS


# --------------------------------------------------------------------------- constraints


def _probes(p: HParam) -> list[tuple[Any, bool]]:
    """(value, valid?) pairs at and around the declared constraints of ``p``."""
    if p.choices is not None:
        return [(c, True) for c in p.choices] + [("no-such-choice", False)]
    if p.type is str:
        return [("all-linear", True), (3, False)]
    out: list[tuple[Any, bool]] = [(True, False), ("not-a-number", False)]
    if p.low is not None:
        out.append((p.low, not p.low_open))
        out.append((p.low - 1, False))
    if p.high is not None and p.high < 1e9:
        out.append((p.high, not p.high_open))
        out.append((p.high + 1, False))
    inside = (p.low if p.low is not None else 0) + 1
    if p.high is not None and inside >= p.high:
        inside = ((p.low or 0) + p.high) / 2
    out.append((inside if p.type is float else int(inside), True))
    if p.type is int:
        out += [(float(int(inside)), True), (int(inside) + 0.5, False)]
    if p.type is float:
        out.append((math.nan, False))
    return out


def _accepts(fn: Any, *args: Any) -> bool:
    try:
        fn(*args)
    except InputError:
        return False
    return True


def _space_fixed(name: str, value: Any) -> None:
    parse_space({"params": {"seed": [0, 1]} if name != "seed" else {"epochs": [1.0, 2.0]},
                 "fixed": {"method": "lora", name: value} if name != "method" else {name: value}},
                source="s.yaml")


def _space_choice(name: str, value: Any) -> None:
    parse_space({"params": {name: {"type": "categorical", "choices": [value]}}}, source="s.yaml")


_CASES = [(p, value, valid) for p in TRAIN for value, valid in _probes(p)]


@pytest.mark.parametrize(("p", "value", "valid"), _CASES,
                         ids=[f"{p.name}={v!r}" for p, v, _ in _CASES])
def test_configs_spaces_and_exports_accept_exactly_the_declared_values(
        p: HParam, value: Any, valid: bool) -> None:
    overrides = {p.name: value} if p.name == "method" else {"method": "lora", p.name: value}
    assert _accepts(p.check, value) == valid
    assert _accepts(TrainConfig.from_dict, overrides) == valid, "TrainConfig"
    assert _accepts(resolve_config, overrides) == valid, "export"
    assert _accepts(_space_fixed, p.name, value) == valid, "space fixed value"
    assert _accepts(_space_choice, p.name, value) == valid, "space choice"


_DECODE_CASES = [(p, value, valid) for p in DECODE if p.name not in ("stop", "do_sample")
                 for value, valid in _probes(p) if value is not None]


@pytest.mark.parametrize(("p", "value", "valid"), _DECODE_CASES,
                         ids=[f"{p.name}={v!r}" for p, v, _ in _DECODE_CASES])
def test_decoding_configs_and_spaces_accept_exactly_the_declared_values(
        p: HParam, value: Any, valid: bool) -> None:
    assert _accepts(p.check, value) == valid
    assert _accepts(lambda: DecodingConfig.from_dict({p.name: value})) == valid, "DecodingConfig"
    assert _accepts(lambda: parse_space({"kind": "decode", "params": {
        p.name: {"type": "categorical", "choices": [value]}}})) == valid, "space choice"


def test_lora_alpha_is_an_integer_everywhere() -> None:
    """It used to be a float in TrainConfig and an int in spaces and exports."""
    assert TrainConfig.from_dict({"lora_alpha": 16.0}).lora_alpha == 16
    assert resolve_config({"lora_alpha": 16.0})["lora_alpha"] == 16
    for fn in (lambda: TrainConfig.from_dict({"lora_alpha": 16.5}),
               lambda: resolve_config({"lora_alpha": 16.5}),
               lambda: _space_fixed("lora_alpha", 16.5)):
        with pytest.raises(InputError, match="lora_alpha"):
            fn()


def test_the_cli_options_are_the_declared_names_types_and_help() -> None:
    import typer.main

    from staytuned.cli import build_app

    train = typer.main.get_command(build_app()).commands["train"]  # type: ignore[attr-defined]
    options = {opt: param for param in train.params for opt in getattr(param, "opts", [])}
    annotations = typing.get_type_hints(train.callback)
    for p in TRAIN:
        if p.name in _SCHEDULE_PARAMS:
            continue  # set with --hp NAME=VALUE, like any other name
        flag = "--lr" if p.name == "learning_rate" else "--" + p.name.replace("_", "-")
        assert flag in options, flag
        option = options[flag]
        assert option.help == p.help, flag
        assert annotations[option.name] == p.type | None, flag
    exec_flags = {"--" + p.name.replace("_", "-") for p in EXECUTION if p.name != "micro_batch_size"}
    assert exec_flags <= set(options)


@pytest.mark.parametrize("scope", ["train", "execution"])
def test_docs_tables_are_generated_from_the_schema(scope: str) -> None:
    table = markdown_table(scope)  # type: ignore[arg-type]
    assert table in (ROOT / "docs" / "CONTRACTS.md").read_text(encoding="utf-8")
    assert table in (ROOT / "README.md").read_text(encoding="utf-8")


def test_shipped_recommendations_carry_no_execution_setting() -> None:
    import json

    from typer.testing import CliRunner

    from staytuned.cbs import recommend
    from staytuned.cli import build_app

    for model, method in [("smollm2-135m", "lora"), ("smollm2-135m", "full"), ("llama-3-8b", "lora"),
                          ("mistral-7b", "full")]:
        for rec in recommend(model=model, method=method).recommendations:
            assert EXECUTION_SETTINGS.isdisjoint(rec.config), (model, method, rec.config)
    res = CliRunner().invoke(build_app(), ["recommend", "--model", "smollm2-135m", "--method", "lora",
                                           "--json", "-"])
    assert res.exit_code == 0, res.output
    text = res.stdout[res.stdout.index("{"):] if not res.stdout.lstrip().startswith("{") else res.stdout
    payload = json.loads(text)
    names = {k for r in payload["recommendations"] for k in r["config"]}
    assert names and EXECUTION_SETTINGS.isdisjoint(names)
    header = (ROOT / "src/staytuned/presets/recommendations/smollm2_135m.csv").read_text().splitlines()[0]
    assert not any(f"hp_{name}" in header.split(",") for name in EXECUTION_SETTINGS)
