"""Local generation on the tiny model: greedy = argmax by hand, penalties in batches, seeds, stops."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from staytuned.errors import InputError  # noqa: E402
from staytuned.hparams.decode import DecodingConfig  # noqa: E402

PROMPTS = ["The cat sat on", "Hello", "A much longer prompt to force left padding in the batch"]


def _manual_greedy(backend, prompt, max_new, freq=0.0, pres=0.0):
    """Greedy decoding written out: full forward each step, OpenAI penalties by hand."""
    tok, model = backend.tokenizer, backend.model
    ids = tok(prompt)["input_ids"]
    generated: list[int] = []
    eos = set(backend.eos_ids())
    with torch.no_grad():
        for _ in range(max_new):
            logits = model(torch.tensor([ids + generated])).logits[0, -1].tolist()
            for t in set(generated):
                logits[t] -= generated.count(t) * freq + pres
            nxt = max(range(len(logits)), key=logits.__getitem__)
            if nxt in eos:
                break
            generated.append(nxt)
    return tok.decode(generated, skip_special_tokens=True), len(generated)


def test_temperature_zero_equals_argmax_decoding(tiny_backend):
    gens = tiny_backend.generate(PROMPTS, DecodingConfig(temperature=0, max_new_tokens=12))
    for prompt, gen in zip(PROMPTS, gens, strict=True):
        text, n = _manual_greedy(tiny_backend, prompt, 12)
        assert gen.text == text and gen.n_output_tokens == n
        assert gen.prompt == prompt
        assert gen.finish_reason == ("length" if n == 12 else "stop")


def test_frequency_and_presence_penalties_in_a_padded_batch_match_hand_formula(tiny_backend):
    cfg = DecodingConfig(temperature=0, max_new_tokens=16, frequency_penalty=1.5, presence_penalty=0.5)
    gens = tiny_backend.generate(PROMPTS, cfg)
    plain = tiny_backend.generate(PROMPTS, cfg.replace(frequency_penalty=0, presence_penalty=0))
    for prompt, gen in zip(PROMPTS, gens, strict=True):
        assert gen.text == _manual_greedy(tiny_backend, prompt, 16, freq=1.5, pres=0.5)[0]
    assert [g.text for g in gens] != [g.text for g in plain]  # the penalty changed something


def test_batch_size_does_not_change_greedy_outputs(tiny_backend):
    from staytuned.decoding.hf_backend import HFBackend

    one = HFBackend(tiny_backend.model, tiny_backend.tokenizer, batch_size=1, chat=False)
    cfg = DecodingConfig(temperature=0, max_new_tokens=10)
    assert [g.text for g in one.generate(PROMPTS, cfg)] == [g.text for g in tiny_backend.generate(PROMPTS, cfg)]


def test_seeded_sampling_reproduces_and_leaves_global_rng_alone(tiny_backend):
    cfg = DecodingConfig(temperature=1.0, top_k=50, max_new_tokens=12, seed=123)
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    first = [g.text for g in tiny_backend.generate(PROMPTS, cfg)]
    after = torch.rand(1)
    assert torch.equal(before, after)  # our seeding ran on a forked RNG
    again = [g.text for g in tiny_backend.generate(PROMPTS, cfg)]
    other = [g.text for g in tiny_backend.generate(PROMPTS, cfg.replace(seed=124))]
    assert first == again
    assert first != other
    assert all(g.seed == 123 for g in tiny_backend.generate(PROMPTS[:1], cfg))


def test_stop_sequence_cuts_exactly_before_the_match(tiny_backend):
    base = DecodingConfig(temperature=0, max_new_tokens=24)
    full = tiny_backend.generate(PROMPTS[:1], base)[0].text
    stop = full[6:8]  # a piece from the middle of what greedy decoding writes
    pos = full.find(stop)
    gen = tiny_backend.generate(PROMPTS[:1], base.replace(stop=[stop, "never-appears"]))[0]
    assert gen.text == full[:pos]
    assert gen.finish_reason == "stop" and gen.stop_sequence == stop
    assert gen.n_output_tokens == len(tiny_backend.tokenizer(full[:pos], add_special_tokens=False)["input_ids"])


def test_chat_rendering_and_errors(tiny_backend):
    from staytuned.decoding.hf_backend import HFBackend

    chat = HFBackend(tiny_backend.model, tiny_backend.tokenizer, chat=True)
    assert chat.render("hi") == "<|user|>hi</s><|assistant|>"
    gen = chat.generate(["hi"], DecodingConfig(temperature=0, max_new_tokens=3))[0]
    # <|user|> h i </s> <|assistant|>: special tokens are single tokens, no BOS added twice
    assert gen.prompt == "hi" and gen.n_prompt_tokens == 5
    with pytest.raises(InputError, match="batch_size"):
        HFBackend(tiny_backend.model, tiny_backend.tokenizer, batch_size=0)
    assert tiny_backend.generate([], DecodingConfig()) == []
