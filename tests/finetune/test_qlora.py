"""method qlora on the tiny models: a 4-bit NF4 base (bitsandbytes) + LoRA, cached apart, and the
clear failure when bitsandbytes cannot be imported."""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

torch = pytest.importorskip("torch")

from staytuned.cli import build_app  # noqa: E402
from staytuned.errors import InputError  # noqa: E402
from staytuned.finetune import ModelCache, run_trial  # noqa: E402
from staytuned.models import count_4bit_layers, load_model, require_bitsandbytes  # noqa: E402

QLORA = {"method": "qlora", "epochs": 1, "max_seq_length": 96, "batch_size": 4, "learning_rate": 5e-3}
TINY_LINEARS = 2 * 7  # 2 layers x (q, k, v, o, gate, up, down); the LM head stays as it is


@pytest.fixture
def no_bitsandbytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """``import bitsandbytes`` raises ImportError, as where it is not installed."""
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)


def _bnb_linears(model) -> list[str]:
    return [type(m).__module__ + "." + type(m).__name__ for m in model.modules() if type(m).__name__ == "Linear4bit"]


def test_qlora_trains_lora_on_a_4bit_base_cached_apart_from_the_full_precision_one() -> None:
    pytest.importorskip("bitsandbytes")
    cache = ModelCache(device="cpu", max_models=2)
    full = cache.get("tiny-llama").model
    assert count_4bit_layers(full) == 0
    # Evaluating the 4-bit base first (an untuned baseline) must not change what training does after.
    untuned = run_trial("tiny-llama", "sst2", QLORA, eval_size=4, model_cache=cache, eval_only=True)
    assert untuned.status == "ok", untuned.error
    assert untuned.quantization == "nf4" and untuned.quantized_layers == TINY_LINEARS
    base = cache.get("tiny-llama", nf4_compute_dtype=untuned.precision).model
    assert base is not full and cache.loads == 2
    assert set(_bnb_linears(base)) == {"bitsandbytes.nn.modules.Linear4bit"}
    assert len(_bnb_linears(base)) == TINY_LINEARS and count_4bit_layers(full) == 0
    before = {k: v.detach().clone() for k, v in base.state_dict().items()}

    first = run_trial("tiny-llama", "sst2", QLORA, train_size=8, eval_size=4, model_cache=cache)
    assert first.status == "ok", first.error
    assert first.quantization == "nf4" and first.quantized_layers == TINY_LINEARS
    assert first.config["method"] == "qlora" and first.config["lora_r"] == 16
    assert first.steps == 2 and first.loss_curve[-1][1] != first.loss_curve[0][1]  # it trained
    after = base.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert not any(p.requires_grad for p in base.parameters())
    # The first trial ended with an evaluation: the second trains the same way from the same base.
    second = run_trial("tiny-llama", "sst2", QLORA, train_size=8, eval_size=4, model_cache=cache)
    assert second.loss_curve == first.loss_curve and second.score == first.score
    assert cache.loads == 2
    lora = run_trial("tiny-llama", "sst2", {**QLORA, "method": "lora"}, train_size=8, eval_size=4,
                     model_cache=cache)
    assert lora.status == "ok" and lora.quantization is None and lora.quantized_layers == 0
    assert cache.loads == 2  # both bases stayed cached
    json.dumps(first.to_dict())


def test_train_cli_runs_qlora() -> None:
    pytest.importorskip("bitsandbytes")
    res = CliRunner().invoke(build_app(), [
        "train", "--model", "tiny-llama", "--task", "sst2", "--method", "qlora", "--train-size", "8",
        "--eval-size", "4", "--epochs", "1", "--max-seq-length", "96", "--batch-size", "4", "--threads", "1",
        "--lora-r", "4", "--json", "-"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["status"] == "ok" and data["quantization"] == "nf4" and data["quantized_layers"] == TINY_LINEARS
    assert data["config"]["method"] == "qlora" and data["config"]["lora_r"] == 4


def test_without_bitsandbytes_a_qlora_trial_fails_with_the_reason(no_bitsandbytes: None) -> None:
    with pytest.raises(InputError) as info:
        require_bitsandbytes()
    assert info.value.field == "method" and info.value.value == "qlora"
    assert "bitsandbytes>=0.46" in str(info.value.expected) and "staytuned[qlora]" in str(info.value.expected)
    result = run_trial("tiny-llama", "sst2", QLORA, train_size=8, eval_size=4)
    assert result.status == "failed" and result.steps == 0
    assert "bitsandbytes" in result.error and "'method'" in result.error and "qlora" in result.error
    assert result.config["method"] == "qlora"
    with pytest.raises(InputError, match="bitsandbytes"):
        load_model("tiny-llama", device="cpu", nf4_compute_dtype="fp32")
    lora = run_trial("tiny-llama", "sst2", {**QLORA, "method": "lora"}, train_size=8, eval_size=4)
    assert lora.status == "ok", lora.error  # only qlora needs it


def test_without_bitsandbytes_train_method_qlora_exits_2(no_bitsandbytes: None) -> None:
    res = CliRunner().invoke(build_app(), ["train", "--model", "tiny-llama", "--task", "sst2", "--method", "qlora",
                                           "--train-size", "8", "--eval-size", "4"])
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())
    assert "--method" in text and "bitsandbytes" in text and "pip install 'staytuned[qlora]'" in text


def test_qlora_on_a_full_precision_model_in_memory_fails_clearly() -> None:
    pytest.importorskip("bitsandbytes")
    model, tokenizer = load_model("tiny-llama", device="cpu")
    result = run_trial((model, tokenizer), "sst2", QLORA, train_size=8, eval_size=4)
    assert result.status == "failed" and "4-bit base" in result.error and "full precision" in result.error
    quantized = load_model("tiny-llama", device="cpu", nf4_compute_dtype="fp32")
    ok = run_trial(quantized, "sst2", QLORA, train_size=8, eval_size=4)
    assert ok.status == "ok", ok.error
    assert ok.quantization == "nf4" and ok.quantized_layers == TINY_LINEARS


def test_qlora_with_the_trl_trainer_trains_the_adapter_on_the_4bit_base() -> None:
    """The trl trainer takes the same 4-bit base from the cache and leaves it as it found it."""
    pytest.importorskip("bitsandbytes")
    pytest.importorskip("trl")
    cache = ModelCache(device="cpu", max_models=2)
    result = run_trial("tiny-llama", "sst2", QLORA, train_size=8, eval_size=4, model_cache=cache, trainer="trl")
    assert result.status == "ok", result.error
    assert result.trainer == "trl" and result.quantization == "nf4" and result.quantized_layers == TINY_LINEARS
    assert result.steps == 2 and result.loss_curve[-1][1] != result.loss_curve[0][1]  # it trained
    base = cache.get("tiny-llama", nf4_compute_dtype=result.precision).model
    before = {k: v.detach().clone() for k, v in base.state_dict().items()}
    again = run_trial("tiny-llama", "sst2", QLORA, train_size=8, eval_size=4, model_cache=cache, trainer="trl")
    assert again.status == "ok", again.error
    assert again.score == result.score and cache.loads == 1
    after = base.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before) and not any(p.requires_grad for p in base.parameters())
