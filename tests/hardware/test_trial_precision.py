"""The precision decision reaches training: run_trial on tiny-llama follows the (faked) probe."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

# These imports follow the importorskip calls on purpose (E402).
from staytuned.finetune.trial import ModelCache, run_trial  # noqa: E402
from staytuned.hardware import probe as probe_mod  # noqa: E402
from staytuned.hardware.precision import PrecisionChoice, SlowPrecisionWarning  # noqa: E402
from staytuned.hardware.probe import MatmulSpeed  # noqa: E402

SMALL = {"epochs": 1, "max_seq_length": 96, "batch_size": 4}
SLOW_BF16 = MatmulSpeed(fp32_gflops=33.0, bf16_gflops=1.2)
FAST_BF16 = MatmulSpeed(fp32_gflops=99.0, bf16_gflops=202.0)


@pytest.fixture(scope="module")
def cache():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models gain nothing from threads on a shared CPU
    c = ModelCache(device="cpu", max_models=1)
    yield c
    c.clear()
    torch.set_num_threads(threads)


def _fake_probe(monkeypatch: pytest.MonkeyPatch, speed: MatmulSpeed) -> None:
    monkeypatch.setattr(probe_mod, "cpu_matmul_speed", lambda *a, **k: speed)


def _linear_output_dtypes(cache: ModelCache) -> tuple[dict[str, set], object]:
    """Record the output dtype of one base linear layer in training and in evaluation passes."""
    base = cache.get("tiny-llama").model
    linear = base.model.layers[0].mlp.down_proj
    seen: dict[str, set] = {"train": set(), "eval": set()}

    def hook(module, args, output):
        seen["train" if module.training else "eval"].add(output.dtype)

    return seen, linear.register_forward_hook(hook)


def test_auto_with_slow_bf16_trains_in_fp32(cache: ModelCache, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_probe(monkeypatch, SLOW_BF16)
    seen, handle = _linear_output_dtypes(cache)
    try:
        result = run_trial("tiny-llama", "sst2", {**SMALL, "method": "full"}, train_size=8, eval_size=4,
                           model_cache=cache, precision="auto")
    finally:
        handle.remove()
    assert result.status == "ok", result.error
    assert result.precision == "fp32" and result.to_dict()["precision"] == "fp32"
    assert seen == {"train": {torch.float32}, "eval": {torch.float32}}


def test_auto_with_fast_bf16_trains_under_bf16_autocast(cache: ModelCache,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_probe(monkeypatch, FAST_BF16)
    seen, handle = _linear_output_dtypes(cache)
    try:
        result = run_trial("tiny-llama", "sst2", {**SMALL, "method": "lora"}, train_size=8, eval_size=4,
                           model_cache=cache)
    finally:
        handle.remove()
    assert result.status == "ok", result.error
    assert result.precision == "bf16"
    assert seen == {"train": {torch.bfloat16}, "eval": {torch.bfloat16}}
    # Autocast computes in bf16; the stored weights stay fp32.
    assert next(cache.get("tiny-llama").model.parameters()).dtype == torch.float32


def test_explicit_bf16_where_slow_warns_and_still_runs(cache: ModelCache,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_probe(monkeypatch, SLOW_BF16)
    with pytest.warns(SlowPrecisionWarning, match=r"28x slower than fp32 on this CPU \(1.2 vs 33 GFLOP/s\)"):
        result = run_trial("tiny-llama", "sst2", SMALL, train_size=8, eval_size=4, model_cache=cache,
                           precision="bf16")
    assert result.status == "ok" and result.precision == "bf16"


def test_a_bad_precision_is_bad_input(cache: ModelCache) -> None:
    from staytuned.errors import InputError

    with pytest.raises(InputError, match="precision"):
        run_trial("tiny-llama", "sst2", SMALL, train_size=8, eval_size=4, model_cache=cache, precision="fp8")


def test_fp16_scales_the_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    # The T4/V100 branch, run on the CPU: fp16 autocast with a GradScaler over fp32 weights.
    from staytuned.finetune import loop
    from staytuned.hparams.train import TrainConfig
    from staytuned.models import load_model

    scaled: list[float] = []
    real = torch.amp.GradScaler

    class Spy(real):
        def scale(self, outputs):
            scaled.append(float(self.get_scale()))
            return super().scale(outputs)

    monkeypatch.setattr(torch.amp, "GradScaler", Spy)
    model, tok = load_model("tiny-llama", device="cpu")
    for p in model.parameters():
        p.requires_grad_(True)
    examples = loop.encode_pairs([(f"say {i}", "yes" if i % 2 else "no") for i in range(8)], tok, 64)
    fp16 = PrecisionChoice(requested="fp16", device="cpu", dtype="fp16", autocast=True, grad_scaler=True,
                           reason="test")
    before = [p.detach().clone() for p in model.parameters()]
    stats = loop.train(model, examples, TrainConfig(method="full", batch_size=4, epochs=1),
                          pad_id=tok.pad_token_id, device="cpu", precision=fp16)
    assert stats.steps == 2 and all(math.isfinite(v) for _, v in stats.loss_curve)
    assert len(scaled) == 2 and scaled[0] == 65536.0  # one scaled backward per micro-batch
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
    assert all(p.dtype == torch.float32 for p in model.parameters())
