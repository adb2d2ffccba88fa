from __future__ import annotations

import pytest

from staytuned.errors import InputError
from staytuned.search.space import TRAIN_HPS, config_id, load_space, parse_space, preset_names


def test_presets_sizes():
    assert {"demo", "full", "lora"} <= set(preset_names())
    demo = load_space("preset:demo")
    # 2 learning rates x 2 schedulers x 2 LoRA r (lora only)
    assert demo.size({"method": "lora"}) == 8
    assert demo.size({"method": "full"}) == 4
    assert load_space("preset:lora").size({"method": "lora"}) == 4 * 3 * 3 * 3 * 3 * 2
    assert load_space("preset:full").size({"method": "full"}) == 4 * 3 * 3 * 3


def test_conditionals_and_fixed():
    sp = parse_space({"params": {
        "method": ["lora", "full"],
        "learning_rate": {"type": "float", "low": 1e-5, "high": 1e-3, "log": True, "values": [1e-4]},
        "lora_r": {"type": "int", "values": [8, 16], "when": {"method": "lora"}},
    }, "fixed": {"epochs": 1}})
    grid = sp.grid()
    assert len(grid) == 3  # lora x 2 r + full
    assert {"method": "full", "learning_rate": 1e-4, "epochs": 1.0} in grid
    assert all(("lora_r" in g) == (g["method"] == "lora") for g in grid)


def test_suggest_with_optuna_respects_conditions():
    import optuna

    sp = load_space("preset:demo")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for method in ("lora", "full"):
        cfg = sp.suggest(study.ask(), {"method": method})
        assert ("lora_r" in cfg) == (method == "lora")
        assert 1e-5 <= cfg["learning_rate"] <= 3e-3
        assert cfg["batch_size"] == 8 and cfg["max_seq_length"] == 128


def test_model_is_a_categorical_hp():
    sp = parse_space({"params": {"model": ["tiny-llama", "tiny-mistral"],
                                 "learning_rate": {"type": "float", "values": [1e-4, 1e-3]}}})
    assert len(sp.grid()) == 4
    assert sp.param("model").values == ("tiny-llama", "tiny-mistral")


@pytest.mark.parametrize("data, field, expect", [
    ({"params": {"learnin_rate": [1e-4]}}, "learnin_rate", "did you mean 'learning_rate'"),
    ({"params": {"lora_r": {"type": "int", "values": [8.5]}}}, "lora_r", "expected int"),
    ({"params": {"learning_rate": {"type": "float", "low": 0, "high": 1, "log": True,
                                   "values": [0.1]}}}, "learning_rate.low", "log-scale"),
    ({"params": {"lr_scheduler": {"type": "categorical", "choices": ["linear", "warp"]}}},
     "lr_scheduler", "one of linear"),
    ({"params": {"lora_r": {"type": "int", "values": [8], "when": {"optimizer": "sgd"}}}},
     "lora_r.when", "not defined before"),
    ({"params": {"lr_scheduler": {"type": "float", "low": 0, "high": 1, "values": [0.5]}}},
     "lr_scheduler.type", "categorical"),
    ({"params": {"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-4, "values": [5e-4]}}},
     "learning_rate", "'low' must be below"),
    ({"params": {"epochs": {"type": "float", "low": 1, "high": 3}}}, "epochs.values", "values"),
])
def test_invalid_spaces_name_field_and_expectation(data, field, expect):
    with pytest.raises(InputError) as exc:
        parse_space(data, source="my.yaml")
    assert exc.value.field == field
    assert exc.value.file == "my.yaml"
    assert expect in str(exc.value)


@pytest.mark.parametrize(("ref", "message"), [
    ("{tmp}/s.yaml", "not valid YAML"),
    ("preset:nope", "unknown space preset"),
    ("{tmp}/missing.yaml", "not found"),
])
def test_yaml_file_errors(tmp_path, ref, message):
    (tmp_path / "s.yaml").write_text("params: [oops\n")
    with pytest.raises(InputError, match=message):
        load_space(ref.format(tmp=tmp_path))


def test_hp_names_match_trainconfig():
    from dataclasses import fields

    from staytuned.hparams.train import TrainConfig

    assert set(TRAIN_HPS) == {f.name for f in fields(TrainConfig)}


def test_config_id_stable_and_ignores_cell_axes():
    a = config_id({"learning_rate": 1e-4, "epochs": 3, "model": "x", "method": "lora"})
    b = config_id({"epochs": 3.0, "learning_rate": 0.0001, "model": "y"})
    assert a == b and a.startswith("c")
    assert a != config_id({"learning_rate": 2e-4, "epochs": 3})


def test_params_of_maps_external_configs():
    sp = load_space("preset:demo")
    ctx = {"method": "lora"}
    assert sp.params_of({"learning_rate": 0.001, "lr_scheduler": "linear", "lora_r": 16.0}, ctx) == {
        "learning_rate": 1e-3, "lr_scheduler": "linear", "lora_r": 16}
    assert sp.params_of({"learning_rate": 0.5, "lr_scheduler": "linear", "lora_r": 16}, ctx) is None
    assert sp.params_of({"learning_rate": 1e-3, "lr_scheduler": "linear", "lora_r": 16,
                         "batch_size": 32}, ctx) is None  # contradicts a fixed value


def _two_level(names: list[str]) -> dict:
    params = {n: {"type": "categorical", "choices": v} for n, v in {
        "lr_scheduler": ["linear", "cosine"], "optimizer": ["adamw", "sgd"]}.items() if n in names}
    params.update({n: {"type": "int", "values": v} for n, v in {
        "batch_size": [8, 16], "lora_r": [8, 32], "lora_alpha": [16, 64]}.items() if n in names})
    if "epochs" in names:
        params["epochs"] = {"type": "float", "values": [1, 3]}
    return params


def test_zip_steps_params_together():
    sp = parse_space({"params": {"learning_rate": {"type": "float", "values": [1e-4, 1e-3]},
                                 **_two_level(["lora_r", "lora_alpha"])},
                      "zip": [["lora_r", "lora_alpha"]]})
    pairs = sorted((c["learning_rate"], c["lora_r"], c["lora_alpha"]) for c in sp.grid())
    assert pairs == [(1e-4, 8, 16), (1e-4, 32, 64), (1e-3, 8, 16), (1e-3, 32, 64)]
    data = {k: v for k, v in sp.to_dict().items() if k != "source"}
    assert parse_space(data).grid() == sp.grid()  # round-trips


def test_half_fraction_is_balanced():
    from collections import Counter
    from itertools import combinations

    names = ["lr_scheduler", "batch_size", "epochs", "optimizer"]
    sp = parse_space({"params": {"learning_rate": {"type": "float", "values": [1e-4, 3e-4, 1e-3]},
                                 **_two_level(names)}, "half_fraction": names})
    grid = sp.grid()
    assert len(grid) == 3 * 2 ** 4 // 2
    for a in names:  # every level equally often
        assert set(Counter(c[a] for c in grid).values()) == {12}
    for a, b in combinations(names, 2):  # every pair of levels equally often
        assert set(Counter((c[a], c[b]) for c in grid).values()) == {6}
    # the kept half is the even-parity one, and no config is kept twice
    assert len({config_id(c) for c in grid}) == len(grid)
    assert {"lr_scheduler": "linear", "batch_size": 8, "epochs": 1.0, "optimizer": "adamw",
            "learning_rate": 1e-4} in grid


def test_half_fraction_with_a_zip_group_counts_it_once():
    names = ["lr_scheduler", "batch_size", "epochs", "lora_r", "lora_alpha"]
    sp = parse_space({"params": _two_level(names), "zip": [["lora_r", "lora_alpha"]],
                      "half_fraction": ["lr_scheduler", "batch_size", "epochs", "lora_alpha"]})
    grid = sp.grid()
    assert len(grid) == 8
    assert {(c["lora_r"], c["lora_alpha"]) for c in grid} == {(8, 16), (32, 64)}


def test_study_lora_space_has_24_balanced_configs():
    from pathlib import Path

    path = Path(__file__).parents[2] / "studies" / "smollm2" / "spaces" / "lora.yaml"
    grid = load_space(str(path)).grid({"method": "lora"})
    assert len(grid) == 24
    assert {(c["lora_r"], c["lora_alpha"]) for c in grid} == {(8, 16), (32, 64)}


@pytest.mark.parametrize("extra, field, expect", [
    ({"zip": [["lora_r"]]}, "zip", "at least two"),
    ({"zip": [["lora_r", "nope"]]}, "zip", "not searched"),
    ({"zip": "lora_r"}, "zip", "list of lists"),
    ({"zip": [["lora_r", "learning_rate"]]}, "zip", "same number of grid values"),
    ({"half_fraction": ["lora_r", "learning_rate"]}, "learning_rate.values", "exactly two"),
    ({"half_fraction": ["lora_r"]}, "half_fraction", "at least two"),
    ({"zip": [["lora_r", "lora_alpha"]], "half_fraction": ["lora_r", "lora_alpha"]},
     "half_fraction", "twice"),
])
def test_invalid_zip_and_fraction(extra, field, expect):
    data = {"params": {"learning_rate": {"type": "float", "values": [1e-4, 3e-4, 1e-3]},
                       **_two_level(["lora_r", "lora_alpha"])}, **extra}
    with pytest.raises(InputError) as exc:
        parse_space(data, source="my.yaml")
    assert exc.value.field == field and expect in str(exc.value)


def test_points_are_the_grid_and_keep_config_ids():
    lora = load_space(str(__import__("pathlib").Path(__file__).parents[2]
                          / "studies" / "smollm2" / "spaces" / "lora.yaml"))
    chosen = lora.grid({"method": "lora"})[3:5]
    data = {k: v for k, v in lora.to_dict().items() if k not in ("source", "zip", "half_fraction")}
    data["points"] = [{k: v for k, v in c.items() if k not in lora.fixed} for c in chosen]
    sp = parse_space(data)
    assert sp.grid({"method": "lora"}) == chosen
    assert [config_id(c) for c in sp.grid()] == [config_id(c) for c in chosen]


def test_points_drop_params_inactive_in_the_cell():
    sp = parse_space({"params": {
        "learning_rate": {"type": "float", "low": 1e-6, "high": 1e-2, "log": True, "values": [1e-4]},
        "lora_r": {"type": "int", "values": [8, 16], "when": {"method": "lora"}}},
        "points": [{"learning_rate": 5e-4, "lora_r": 16}, {"learning_rate": 2e-5, "lora_r": 8}]})
    assert sp.grid({"method": "lora"}) == [{"learning_rate": 5e-4, "lora_r": 16},
                                           {"learning_rate": 2e-5, "lora_r": 8}]
    assert sp.grid({"method": "full"}) == [{"learning_rate": 5e-4}, {"learning_rate": 2e-5}]
    partial = parse_space({**{k: v for k, v in sp.to_dict().items() if k != "source"},
                           "points": [{"learning_rate": 5e-4}]}, source="p.yaml")
    assert partial.grid({"method": "full"}) == [{"learning_rate": 5e-4}]
    with pytest.raises(InputError) as exc:
        partial.grid({"method": "lora"})
    assert exc.value.field == "points[0].lora_r" and exc.value.file == "p.yaml"


@pytest.mark.parametrize("points, field, expect", [
    ([{"learning_rate": 1.0}], "points[0].learning_rate", "outside"),
    ([{"learning_rate": 1e-4, "lr_scheduler": "linear", "lora_r": 12}], "points[0].lora_r",
     "outside"),
    ([{"learning_rate": 1e-4, "epochs": 2}], "points[0].epochs", "not searched"),
    ([{"lr_scheduler": "linear"}], "points[0].learning_rate", "misses"),
    ("oops", "points", "non-empty list"),
])
def test_invalid_points(points, field, expect):
    data = {"params": {
        "learning_rate": {"type": "float", "low": 1e-6, "high": 1e-2, "log": True, "values": [1e-4]},
        "lr_scheduler": {"type": "categorical", "choices": ["linear"]},
        "lora_r": {"type": "int", "values": [8, 16], "when": {"method": "lora"}}}, "points": points}
    with pytest.raises(InputError) as exc:
        parse_space(data, source="my.yaml")
    assert exc.value.field == field and expect in str(exc.value)


def test_qlora_gets_the_lora_params_of_the_presets_and_in_grids():
    for name in ("demo", "lora"):
        sp = load_space(f"preset:{name}")
        assert sp.size({"method": "qlora"}) == sp.size({"method": "lora"}) > sp.size({"method": "full"})
    sp = parse_space({"params": {
        "method": ["lora", "qlora", "full"],
        "lora_r": {"type": "int", "values": [8, 16], "when": {"method": ["lora", "qlora"]}},
    }})
    grid = sp.grid()
    assert len(grid) == 5 and all(("lora_r" in g) == (g["method"] != "full") for g in grid)
    assert parse_space({"params": {"lora_r": {"type": "int", "values": [8], "when": {"method": "qlora"}}},
                        "fixed": {"method": "qlora"}}).grid() == [{"method": "qlora", "lora_r": 8}]
    with pytest.raises(InputError, match="lora or qlora or full"):
        parse_space({"params": {"lora_r": {"type": "int", "values": [8], "when": {"method": "qlroa"}}}})
