"""Logits processors for local generation.

transformers ships temperature, top-k, top-p, min-p and the multiplicative repetition penalty, but
not OpenAI's additive frequency/presence penalties; those are here. ``build_processors`` assembles
the whole chain in one fixed order (penalties -> temperature -> top-k -> top-p -> min-p, the order
vLLM uses) so that local results match what a server would do with the same config.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from transformers import LogitsProcessor, LogitsProcessorList
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

if TYPE_CHECKING:
    from staytuned.hparams.decode import DecodingConfig


class FrequencyPresencePenaltyProcessor(LogitsProcessor):
    """OpenAI's additive penalties over the tokens generated so far (the prompt is not counted).

    ``logit[j] -= count[j] * frequency_penalty + (count[j] > 0) * presence_penalty``, where
    ``count[j]`` is how often token ``j`` occurs in the row's generated tokens. Negative values
    reward repetition, as in the API.
    """

    def __init__(self, frequency_penalty: float, presence_penalty: float, prompt_length: int) -> None:
        self.frequency_penalty = float(frequency_penalty)
        self.presence_penalty = float(presence_penalty)
        # With left padding every row of a batch has the same prompt length, so one int suffices.
        self.prompt_length = int(prompt_length)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        generated = input_ids[:, self.prompt_length:]
        if generated.shape[1] == 0:
            return scores
        counts = torch.zeros(scores.shape, dtype=scores.dtype, device=scores.device)
        counts.scatter_add_(1, generated, torch.ones_like(generated, dtype=scores.dtype))
        penalty = counts * self.frequency_penalty + (counts > 0).to(scores.dtype) * self.presence_penalty
        return scores - penalty


def build_processors(config: DecodingConfig, prompt_length: int) -> LogitsProcessorList:
    """The processor chain for ``config``; empty for plain greedy or plain sampling at T=1.

    Sampling filters (temperature, top-k/p, min-p) are added only when sampling: for greedy they
    cannot change the argmax, so skipping them is exact and saves a sort per step.
    """
    chain: list[LogitsProcessor] = []
    if config.repetition_penalty != 1.0:
        chain.append(RepetitionPenaltyLogitsProcessor(penalty=config.repetition_penalty))
    if config.frequency_penalty != 0.0 or config.presence_penalty != 0.0:
        chain.append(FrequencyPresencePenaltyProcessor(
            config.frequency_penalty, config.presence_penalty, prompt_length))
    if config.do_sample:
        if config.temperature != 1.0:
            chain.append(TemperatureLogitsWarper(float(config.temperature)))
        if config.top_k > 0:
            chain.append(TopKLogitsWarper(top_k=int(config.top_k)))
        if config.top_p < 1.0:
            chain.append(TopPLogitsWarper(top_p=float(config.top_p)))
        if config.min_p > 0.0:
            chain.append(MinPLogitsWarper(min_p=float(config.min_p)))
    return LogitsProcessorList(chain)


def next_token_distribution(config: DecodingConfig, input_ids: torch.LongTensor,
                            logits: torch.FloatTensor, prompt_length: int) -> torch.Tensor:
    """Probabilities the sampler draws from (one-hot argmax when greedy); handy for tests and
    for explaining a config."""
    processed = build_processors(config, prompt_length)(input_ids, logits)
    if not config.do_sample:
        return torch.nn.functional.one_hot(processed.argmax(-1), logits.shape[-1]).to(logits.dtype)
    return torch.softmax(processed, dim=-1)
