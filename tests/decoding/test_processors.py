"""Each logits processor against logits computed by hand."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from staytuned.decoding.processors import (  # noqa: E402
    FrequencyPresencePenaltyProcessor,
    build_processors,
    next_token_distribution,
)
from staytuned.hparams.decode import DecodingConfig  # noqa: E402

NEG = -math.inf


def _ids(rows):
    return torch.tensor(rows, dtype=torch.long)


def _logits(rows):
    return torch.tensor(rows, dtype=torch.float32)


def _probs_logits(probs):
    return _logits([[math.log(p) for p in probs]])


def test_frequency_and_presence_penalties_count_only_generated_tokens():
    # prompt = [4, 4] (length 2); generated: row 0 = [1, 1, 2], row 1 = [3, 0, 3]
    ids = _ids([[4, 4, 1, 1, 2], [4, 4, 3, 0, 3]])
    scores = _logits([[1.0, 2.0, 3.0, 0.5, 0.0], [1.0, 2.0, 3.0, 0.5, 0.0]])
    out = FrequencyPresencePenaltyProcessor(0.5, 0.25, prompt_length=2)(ids, scores.clone())
    # token 1 twice: 2 - 2*0.5 - 0.25 = 0.75; token 2 once: 3 - 0.5 - 0.25 = 2.25;
    # token 4 only in the prompt: untouched.
    assert out[0].tolist() == pytest.approx([1.0, 0.75, 2.25, 0.5, 0.0])
    # token 3 twice: 0.5 - 1.0 - 0.25 = -0.75; token 0 once: 1 - 0.75 = 0.25
    assert out[1].tolist() == pytest.approx([0.25, 2.0, 3.0, -0.75, 0.0])


def test_negative_penalties_reward_repetition():
    ids = _ids([[9, 1, 1, 1]])
    scores = _logits([[0.0, 1.0, 0.0]])
    out = FrequencyPresencePenaltyProcessor(-1.0, -0.5, prompt_length=1)(ids, scores)
    assert out[0].tolist() == pytest.approx([0.0, 1.0 + 3.0 + 0.5, 0.0])


def test_penalty_is_a_no_op_before_the_first_generated_token():
    ids = _ids([[1, 2, 3]])
    scores = _logits([[0.1, 0.2, 0.3, 0.4]])
    out = FrequencyPresencePenaltyProcessor(2.0, 2.0, prompt_length=3)(ids, scores)
    assert torch.equal(out, scores)


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits():
    cfg = DecodingConfig(temperature=0, repetition_penalty=2.0)
    ids = _ids([[3, 1, 1]])  # prompt and generated both count, once each
    out = build_processors(cfg, prompt_length=1)(ids, _logits([[1.0, 2.0, 3.0, -1.0, 0.0]]))
    assert out[0].tolist() == pytest.approx([1.0, 1.0, 3.0, -2.0, 0.0])


def test_temperature_scales_logits():
    cfg = DecodingConfig(temperature=0.5)
    out = build_processors(cfg, 0)(_ids([[0]]), _logits([[1.0, 2.0, 3.0]]))
    assert out[0].tolist() == pytest.approx([2.0, 4.0, 6.0])


def test_top_k_keeps_the_k_largest():
    cfg = DecodingConfig(top_k=2)
    out = build_processors(cfg, 0)(_ids([[0]]), _logits([[1.0, 2.0, 3.0, 0.5, 0.0]]))
    assert out[0].tolist() == [NEG, 2.0, 3.0, NEG, NEG]


@pytest.mark.parametrize(
    ("top_p", "kept"),
    [(0.4, [0]), (0.7, [0, 1]), (0.9, [0, 1, 2]), (1.0, [0, 1, 2, 3])],
)
def test_top_p_keeps_the_smallest_set_reaching_p(top_p, kept):
    # probabilities 0.5, 0.3, 0.15, 0.05: cumulative 0.5, 0.8, 0.95, 1.0
    cfg = DecodingConfig(top_p=top_p)
    out = build_processors(cfg, 0)(_ids([[0]]), _probs_logits([0.5, 0.3, 0.15, 0.05]))
    assert [i for i, v in enumerate(out[0].tolist()) if v != NEG] == kept


@pytest.mark.parametrize(("min_p", "kept"), [(0.2, [0, 1, 2]), (0.5, [0, 1]), (0.0, [0, 1, 2, 3])])
def test_min_p_keeps_tokens_above_min_p_times_the_top_probability(min_p, kept):
    # top probability 0.5: thresholds 0.1 and 0.25
    cfg = DecodingConfig(min_p=min_p)
    out = build_processors(cfg, 0)(_ids([[0]]), _probs_logits([0.5, 0.3, 0.15, 0.05]))
    assert [i for i, v in enumerate(out[0].tolist()) if v != NEG] == kept


def test_chain_order_is_penalties_then_temperature_then_filters():
    cfg = DecodingConfig(temperature=0.5, top_k=3, top_p=0.9, min_p=0.1, frequency_penalty=1.0,
                         repetition_penalty=1.1)
    names = [type(p).__name__ for p in build_processors(cfg, 0)]
    assert names == ["RepetitionPenaltyLogitsProcessor", "FrequencyPresencePenaltyProcessor",
                     "TemperatureLogitsWarper", "TopKLogitsWarper", "TopPLogitsWarper",
                     "MinPLogitsWarper"]


def test_off_values_build_an_empty_chain_and_greedy_skips_sampling_filters():
    assert len(build_processors(DecodingConfig(), 0)) == 0
    assert len(build_processors(DecodingConfig(temperature=0, top_k=5, top_p=0.5), 0)) == 0


def test_penalty_then_temperature_by_hand():
    # logits [2, 1]; generated token 0 once; freq 1.0 -> [1, 1]; T = 0.5 -> [2, 2]: a 50/50 draw
    cfg = DecodingConfig(temperature=0.5, frequency_penalty=1.0)
    probs = next_token_distribution(cfg, _ids([[1, 0]]), _logits([[2.0, 1.0]]), prompt_length=1)
    assert probs[0].tolist() == pytest.approx([0.5, 0.5])


def test_temperature_zero_is_argmax_after_penalties():
    cfg = DecodingConfig(temperature=0, presence_penalty=2.0)
    # token 2 would win (3.0) but was generated: 3 - 2 = 1 < 2.5 -> token 1
    probs = next_token_distribution(cfg, _ids([[0, 2]]), _logits([[0.0, 2.5, 3.0]]), prompt_length=1)
    assert probs[0].tolist() == [0.0, 1.0, 0.0]
    plain = next_token_distribution(DecodingConfig(temperature=0), _ids([[0]]),
                                    _logits([[0.0, 2.5, 3.0]]), prompt_length=1)
    assert plain[0].tolist() == [0.0, 0.0, 1.0]
