"""Shipped recommendations (with provenance) and recommendations from a results table."""

from __future__ import annotations

import pytest

from staytuned.cbs import (
    known_models,
    rank,
    recommend,
    resolve_model,
    shipped_recommendations,
)
from staytuned.errors import InputError
from staytuned.results import from_records

TRAIN_CONFIG_NAMES = {"method", "learning_rate", "batch_size", "epochs", "lora_r", "lora_alpha", "lr_scheduler"}


PAPER = {"mistral-7b", "llama-3-8b"}


def test_shipped_paper_configs() -> None:
    recs = {(r.model, r.method): r for r in shipped_recommendations() if r.model in PAPER}
    assert len(recs) == 4
    assert recs[("mistral-7b", "full")].config == {"method": "full", "learning_rate": 5e-6, "batch_size": 8,
                                                   "epochs": 5}
    assert recs[("mistral-7b", "lora")].config == {
        "method": "lora", "learning_rate": 5e-5, "batch_size": 32, "epochs": 5, "lora_r": 128, "lora_alpha": 128}
    assert recs[("llama-3-8b", "full")].config == {"method": "full", "learning_rate": 1e-5, "batch_size": 8,
                                                   "epochs": 5}
    assert recs[("llama-3-8b", "lora")].config == {
        "method": "lora", "learning_rate": 5e-5, "batch_size": 8, "epochs": 5, "lora_r": 128, "lora_alpha": 32}
    for r in recs.values():
        assert set(r.config) <= TRAIN_CONFIG_NAMES
        assert r.source["arxiv"] == "2407.18990" and "Stay Tuned" in r.source["title"]
        assert "as cited from the paper" in r.source["section"]


@pytest.mark.parametrize("alias", ["mistral-7b", "mistralai/Mistral-7B-v0.1", "MISTRAL_7B"])
def test_mistral_aliases(alias: str) -> None:
    assert resolve_model(alias) == "mistral-7b"


@pytest.mark.parametrize("alias", ["llama-3-8b", "meta-llama/Meta-Llama-3-8B", "Meta-Llama-3-8B"])
def test_llama_aliases(alias: str) -> None:
    assert resolve_model(alias) == "llama-3-8b"


def test_filters_and_unknown_model() -> None:
    got = recommend(model="meta-llama/Meta-Llama-3-8B", method="lora")
    assert [r.config["lora_alpha"] for r in got.recommendations] == [32]
    assert len([r for r in recommend().recommendations if r.model in PAPER]) == 4
    with pytest.raises(InputError) as exc:
        recommend(model="gpt2")
    assert "mistral-7b" in str(exc.value) and "llama-3-8b" in str(exc.value)
    with pytest.raises(InputError, match="method"):
        recommend(model="mistral-7b", method="prefix-tuning")
    assert set(known_models()) >= PAPER


def test_from_table_is_the_cbs_top_k() -> None:
    rows = []
    grid = {"c1": {"hp_learning_rate": 1e-4}, "c2": {"hp_learning_rate": 1e-5}, "c3": {"hp_learning_rate": 3e-4}}
    scores = {"c1": [0.9, 0.1, 0.5], "c2": [0.1, 0.9, 0.5], "c3": [0.8, 0.8, 0.9]}
    for c, ss in scores.items():
        for d, s in zip(("a", "b", "c"), ss, strict=True):
            rows.append({"dataset": d, "config_id": c, "model": "mistralai/Mistral-7B-v0.1", "method": "lora",
                         "train_size": 100, "score": s, **grid[c]})
        rows.append({"dataset": "a", "config_id": c, "model": "other", "method": "lora", "train_size": 100,
                     "score": 0.5, **grid[c]})
    t = from_records(rows)
    got = recommend(t, model="mistral-7b", method="lora", train_size=100, k=2)
    # c3 covers only c; c1 covers a; c2 covers b; all gain 1 -> mean normalized c3 (0.917) first,
    # then c1 (0.333, tie with c2 -> natural order)
    assert [r.config_id for r in got.recommendations] == ["c3", "c1"]
    assert got.recommendations[0].config == {"learning_rate": 3e-4}
    assert got.recommendations[1].coverage == pytest.approx(2 / 3)


def _sized_presets(tmp_path) -> str:
    import yaml

    recs = [{"model": "tiny-x", "method": "lora", "train_size": size, "rank": r,
             "config": {"method": "lora", "learning_rate": lr, "epochs": 1}}
            for size, lrs in ((100, (1e-4, 3e-4)), (1000, (1e-3,))) for r, lr in enumerate(lrs, 1)]
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({"models": {"tiny-x": {"aliases": ["org/Tiny-X"]}},
                                    "recommendations": recs}))
    return str(path)


def test_shipped_train_size_falls_back_to_the_nearest_measured_size(tmp_path) -> None:
    extra = [_sized_presets(tmp_path)]
    exact = recommend(model="org/Tiny-X", method="lora", train_size=1000, extra=extra)
    assert [r.config["learning_rate"] for r in exact.recommendations] == [1e-3] and not exact.notes
    near = recommend(model="tiny-x", method="lora", train_size=200, extra=extra)
    assert [r.train_size for r in near.recommendations] == [100, 100]
    assert "nearest measured size, 100" in near.notes[0]
    assert recommend(model="tiny-x", train_size=5000, extra=extra).recommendations[0].train_size == 1000
    with pytest.raises(InputError, match="train size must be positive"):
        recommend(model="tiny-x", train_size=0, extra=extra)


def test_shipped_table_is_found_beside_its_preset(tmp_path) -> None:
    import yaml

    from staytuned.cbs import shipped_table

    preset = tmp_path / "tiny.yaml"
    preset.write_text(yaml.safe_dump({"source": {"table_file": "tiny.csv"},
                                      "models": {"tiny-x": {"aliases": ["org/Tiny-X"]}},
                                      "recommendations": [{"model": "tiny-x", "method": "lora",
                                                           "train_size": 100, "rank": 1,
                                                           "config": {"learning_rate": 1e-4}}]}))
    assert shipped_table("org/Tiny-X", extra=[preset]) is None  # declared but not there
    (tmp_path / "tiny.csv").write_text("dataset,config_id,score\na,c1,0.5\n")
    assert shipped_table("org/Tiny-X", extra=[preset]) == tmp_path / "tiny.csv"
    assert shipped_table("mistral-7b", extra=[preset]) is None
    assert shipped_table(None) is None


def test_smollm2_study_recommendations_ship_with_their_table() -> None:
    """What `staytuned recommend --model smollm2-135m` shows on a fresh machine: our own study."""
    from staytuned.cbs import shipped_table
    from staytuned.results import load_results

    got = recommend(model="HuggingFaceTB/SmolLM2-135M-Instruct")
    recs = got.recommendations
    assert recs and {r.model for r in recs} == {"smollm2-135m"}
    for r in recs:
        assert r.source["id"] == "staytuned-smollm2-study" and len(r.source["datasets"]) >= 3
        assert "precision" not in r.config and r.config["max_seq_length"] == 512
    table = load_results(shipped_table("smollm2-135m"))
    for (method, size) in {(r.method, r.train_size) for r in recs}:
        slice_ = table.slice(method=method, train_size=size)
        mx = slice_.score_matrix()
        assert not (mx.missing).any()  # only complete slices ship
        top = [r for r in recs if (r.method, r.train_size) == (method, size)]
        assert [r.source["config_id"] for r in sorted(top, key=lambda r: r.rank)] == \
            rank(mx).config_ids[: len(top)]  # the shipped ranking is the table's CBS ranking


def test_public_names_stay_objects_after_their_modules_are_imported():
    # A submodule named like a public function (staytuned/recommend.py) made
    # `from staytuned import recommend` return the module once anything had imported it.
    import importlib
    import types

    import staytuned

    for name, module in staytuned._LAZY.items():
        importlib.import_module(module)
        assert not isinstance(getattr(staytuned, name), types.ModuleType), name
    from staytuned import recommend

    assert callable(recommend)


def test_no_submodule_is_named_like_a_name_its_package_exports():
    # `import staytuned.cbs.rank as m` and dotted patch targets such as
    # "staytuned.cbs.recommend._preset_files" would resolve to the function, not the module.
    import importlib
    import pkgutil
    import types

    for package in ("staytuned.cbs", "staytuned.results"):
        pkg = importlib.import_module(package)
        for info in pkgutil.iter_modules(pkg.__path__):
            assert isinstance(importlib.import_module(f"{package}.{info.name}"), types.ModuleType)
            assert info.name not in pkg.__all__, f"{package}.{info.name}"
        for name in pkg.__all__:
            assert not isinstance(getattr(pkg, name), types.ModuleType), f"{package}.{name}"


def test_qlora_without_a_study_of_its_own_shows_the_lora_recommendations_and_says_so() -> None:
    for model in ("mistral-7b", "smollm2-135m"):
        lora, qlora = recommend(model=model, method="lora"), recommend(model=model, method="qlora")
        assert qlora.recommendations == lora.recommendations  # measured with LoRA: shown as such
        assert all(r.method == "lora" for r in qlora.recommendations)
        assert qlora.stand_in_for == "qlora" and lora.stand_in_for is None
        assert any("no qlora recommendations" in n and "measured with LoRA" in n for n in qlora.notes)
        d = qlora.to_dict()
        assert d["requested_method"] == "qlora" and d["shown_method"] == "lora"
        assert "requested_method" not in lora.to_dict()
    # A results table: the same, unless it has qlora rows of its own.
    rows = [{"dataset": d, "config_id": c, "model": "m", "method": "lora", "train_size": 100, "score": s,
             "hp_learning_rate": lr}
            for c, lr, ss in (("c1", 1e-4, (0.9, 0.2)), ("c2", 1e-3, (0.3, 0.8)))
            for d, s in zip("ab", ss, strict=True)]
    got = recommend(from_records(rows), method="qlora", k=2)
    assert got.stand_in_for == "qlora" and [r.method for r in got.recommendations] == ["lora", "lora"]
    assert any("no qlora recommendations in" in n for n in got.notes)
    own = recommend(from_records([*rows, {**rows[0], "method": "qlora"}]), method="qlora", k=1)
    assert own.stand_in_for is None and own.recommendations[0].method == "qlora"
