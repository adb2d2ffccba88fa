"""DecodingConfig: ranges refused with the field named, normalization per backend."""

from __future__ import annotations

import pytest

from staytuned.errors import InputError
from staytuned.hparams.decode import DecodingConfig


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("temperature", 3, "[0, 2]"),
        ("temperature", -0.1, "[0, 2]"),
        ("top_p", 0, "(0, 1]"),
        ("top_p", 1.5, "(0, 1]"),
        ("max_new_tokens", -5, ">= 1"),
        ("max_new_tokens", 0, ">= 1"),
        ("top_k", -1, ">= 0"),
        ("min_p", 1.2, "[0, 1]"),
        ("frequency_penalty", 2.5, "[-2, 2]"),
        ("presence_penalty", -3, "[-2, 2]"),
        ("repetition_penalty", 0, "> 0"),
        ("seed", -1, "[0, 2**63)"),
    ],
)
def test_out_of_range_values_are_refused_with_field_value_and_range(field, value, expected):
    with pytest.raises(InputError) as info:
        DecodingConfig(**{field: value})
    exc = info.value
    assert exc.field == field
    assert expected in str(exc)
    assert repr(value) in str(exc) or repr(float(value)) in str(exc)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "hot", True, None])
def test_non_numbers_are_refused(bad):
    with pytest.raises(InputError, match="temperature"):
        DecodingConfig(temperature=bad)


def test_non_integer_top_k_refused_but_integral_float_accepted():
    assert DecodingConfig(top_k=40.0).top_k == 40
    with pytest.raises(InputError, match="top_k"):
        DecodingConfig(top_k=2.5)


def test_boundaries_are_inclusive_where_the_spec_says():
    DecodingConfig(temperature=0, top_p=1, min_p=0, frequency_penalty=-2, presence_penalty=2)
    DecodingConfig(temperature=2, min_p=1, top_p=1e-6)


def test_temperature_zero_means_greedy():
    assert DecodingConfig(temperature=0).do_sample is False
    assert DecodingConfig(temperature=0.01).do_sample is True


def test_stop_normalized_to_tuple_without_duplicates_and_empty_refused():
    assert DecodingConfig(stop="\n").stop == ("\n",)
    assert DecodingConfig(stop=["a", "b", "a"]).stop == ("a", "b")
    assert DecodingConfig(stop=None).stop == ()
    with pytest.raises(InputError, match="stop"):
        DecodingConfig(stop=["ok", ""])
    with pytest.raises(InputError, match="stop"):
        DecodingConfig(stop=[3])


def test_from_dict_aliases_do_sample_and_unknown_keys():
    cfg = DecodingConfig.from_dict({"max_tokens": 12, "repeat_penalty": 1.2, "temperature": "0.5"})
    assert (cfg.max_new_tokens, cfg.repetition_penalty, cfg.temperature) == (12, 1.2, 0.5)
    assert DecodingConfig.from_dict({"do_sample": False, "temperature": 0.9}).temperature == 0.0
    with pytest.raises(InputError, match="do_sample"):
        DecodingConfig.from_dict({"do_sample": True, "temperature": 0})
    with pytest.raises(InputError) as info:
        DecodingConfig.from_dict({"temprature": 0.5}, source="cfg.yaml")
    assert info.value.field == "temprature" and "cfg.yaml" in str(info.value)
    with pytest.raises(InputError, match="twice"):
        DecodingConfig.from_dict({"max_tokens": 3, "max_new_tokens": 4})


def test_from_dict_names_the_source_file_on_range_errors():
    with pytest.raises(InputError) as info:
        DecodingConfig.from_dict({"top_p": 0}, source="configs.yaml")
    assert "configs.yaml" in str(info.value) and "top_p" in str(info.value)


def test_config_id_ignores_seed_and_changes_with_hps():
    a = DecodingConfig(temperature=0.7, seed=1)
    assert a.config_id() == DecodingConfig(temperature=0.7, seed=2).config_id()
    assert a.config_id() != DecodingConfig(temperature=0.8).config_id()


def test_describe_lists_only_non_defaults():
    assert DecodingConfig(temperature=0).describe() == "greedy"
    assert DecodingConfig(temperature=0.7, top_p=0.9).describe() == "T=0.7 top_p=0.9"


def test_hf_normalization_sets_do_sample_and_turns_off_sentinels():
    greedy = DecodingConfig(temperature=0, top_k=50, top_p=0.9).for_backend("hf")
    assert greedy["do_sample"] is False
    assert greedy["temperature"] is None and greedy["top_k"] is None and greedy["top_p"] is None
    sample = DecodingConfig(temperature=0.7, top_k=0, top_p=0.9, min_p=0.0).for_backend("hf")
    assert sample["do_sample"] is True and sample["temperature"] == 0.7
    assert sample["top_k"] is None and sample["top_p"] == 0.9 and sample["min_p"] is None


def test_top_k_off_sentinel_differs_between_servers():
    cfg = DecodingConfig(top_k=0, stop=["\n"], seed=3)
    assert cfg.for_backend("vllm")["top_k"] == -1
    assert cfg.for_backend("staytuned")["top_k"] == -1
    llama = cfg.for_backend("llamacpp")
    assert llama["top_k"] == 0 and llama["min_p"] == 0.0  # explicit: llama.cpp defaults to 0.05
    assert "repeat_penalty" in llama and "repetition_penalty" not in llama
    assert DecodingConfig(top_k=40).for_backend("vllm")["top_k"] == 40
    body = cfg.for_backend("openai")
    assert body == {"max_tokens": 64, "temperature": 1.0, "top_p": 1.0, "frequency_penalty": 0.0,
                    "presence_penalty": 0.0, "stop": ["\n"], "seed": 3}
    assert "top_p" not in cfg.for_backend("tgi")  # TGI refuses top_p == 1


def test_servers_without_extras_refuse_them_before_any_request():
    with pytest.raises(InputError, match="top_k"):
        DecodingConfig(top_k=40).for_backend("openai")
    with pytest.raises(InputError, match="min_p"):
        DecodingConfig(min_p=0.1).for_backend("tgi")
    with pytest.raises(InputError, match="at most 4"):
        DecodingConfig(stop=list("abcde")).for_backend("openai")
    with pytest.raises(InputError, match="backend"):
        DecodingConfig().for_backend("nope")
