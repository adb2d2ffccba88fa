"""The memory planner: parameter counts, the activation model against real saved tensors, fitting
and refusing on GPU sizes, choose(), `staytuned plan`, and one real SmolLM2 trial on CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from staytuned.cli import build_app
from staytuned.errors import InputError
from staytuned.hardware import planner
from staytuned.hardware.planner import (
    COMPONENTS,
    GIB,
    Device,
    ModelArch,
    TrialSetting,
    choose,
    estimate,
    layer_activation_bytes,
    parse_size,
    resolve_arch,
    resolve_device,
)

GPU24, GPU80 = Device("cuda", 24 * GIB), Device("cuda", 80 * GIB)


# ---------------------------------------------------------------- architectures


@pytest.mark.parametrize(("ref", "expected"), [("llama-3-8b", 8.03e9), ("meta-llama/Meta-Llama-3-8B", 8.03e9),
                                               ("mistral-7b", 7.24e9), ("mistralai/Mistral-7B-v0.1", 7.24e9),
                                               ("llama-3.2-1b", 1.24e9), ("llama-3-70b", 70.6e9)])
def test_parameter_counts_of_known_models(ref: str, expected: float) -> None:
    assert resolve_arch(ref).n_params == pytest.approx(expected, rel=0.01)


def test_smollm2_architecture_matches_the_model() -> None:
    arch = resolve_arch("smollm2-135m")
    assert (arch.vocab_size, arch.hidden_size, arch.intermediate_size, arch.num_hidden_layers,
            arch.num_attention_heads, arch.num_key_value_heads, arch.tie_word_embeddings) == (
        49152, 576, 1536, 30, 9, 3, True)
    assert arch.n_params == 134_515_008  # SmolLM2-135M's parameter count (tied head counted once)


def test_config_file_folder_and_hf_cache(tmp_path, monkeypatch) -> None:
    cfg = json.loads((planner._PRESETS_DIR / "llama-3-8b.json").read_text())
    cfg.pop("_staytuned")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    assert resolve_arch(str(tmp_path / "m")).n_params == resolve_arch("llama-3-8b").n_params
    assert resolve_arch(str(tmp_path / "m" / "config.json")).hidden_size == 4096
    snap = tmp_path / "hub" / "models--acme--tiny-8b" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(json.dumps(cfg))
    (snap.parent.parent / "refs").mkdir()
    (snap.parent.parent / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert resolve_arch("acme/tiny-8b").name == "acme/tiny-8b"


def test_unknown_model_names_the_model_and_what_is_accepted() -> None:
    with pytest.raises(InputError) as info:
        resolve_arch("no-such-model")
    assert "no-such-model" in str(info.value) and "llama-3-8b" in str(info.value) and "config.json" in str(info.value)
    with pytest.raises(InputError, match="local Hugging Face cache"):
        resolve_arch("acme/not-downloaded")
    with pytest.raises(InputError, match="hidden_size"):
        ModelArch.from_config({"vocab_size": 10})


def test_sizes_and_devices() -> None:
    assert parse_size("24GB") == 24 * GIB == parse_size("24") == parse_size("24GiB")
    assert parse_size("512MB") == 512 * 2**20
    assert resolve_device("80GB") == Device("cuda", 80 * GIB, "80 GiB GPU")
    assert resolve_device("cpu").kind == "cpu" and resolve_device("cpu").memory > 0
    with pytest.raises(InputError):
        parse_size("lots")


# ---------------------------------------------------------------- the activation model


def _saved_bytes_per_layer(method: str, precision: str, bf16_weights: bool) -> float:
    """Bytes autograd saves per token for one decoder layer of a small random Llama: the saved
    tensors of a 2-layer model minus those of a 1-layer one (a left-padded batch of 2 x 32)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    totals = []
    for layers in (1, 2):
        config = transformers.LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=160,
                                          num_hidden_layers=layers, num_attention_heads=4,
                                          num_key_value_heads=2, tie_word_embeddings=False)
        torch.manual_seed(0)
        model = transformers.LlamaForCausalLM(config)
        if bf16_weights:
            model = model.to(torch.bfloat16)
        if method == "lora":
            model = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.05,
                                                               target_modules="all-linear"))
        model.train()
        ids = torch.randint(0, 300, (2, 32))
        mask = torch.ones(2, 32, dtype=torch.long)
        mask[1, :5] = 0
        storages: dict[int, int] = {}

        def pack(t, storages=storages):
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
                torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            model(input_ids=ids, attention_mask=mask, use_cache=False, logits_to_keep=2)
        params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        totals.append(sum(v for k, v in storages.items() if k not in params))
    return (totals[1] - totals[0]) / 64


@pytest.mark.parametrize(("method", "precision", "bf16_weights"), [
    ("full", "fp32", False), ("full", "bf16", False), ("lora", "fp32", False), ("lora", "bf16", False),
    ("full", "bf16", True),
])
def test_activation_model_matches_saved_tensors(method: str, precision: str, bf16_weights: bool) -> None:
    arch = ModelArch("tiny", 300, 64, 160, 2, 4, 2, 16, False)
    setting = TrialSetting(method=method, precision=precision, lora_r=4, max_seq_length=32, micro_batch=2)
    # bf16-stored weights are how a CUDA bf16 run stores them; the layer's saved bytes do not
    # depend on the device for full fine-tuning.
    device = Device("cuda", 80 * GIB) if bf16_weights else Device("cpu", 8 * GIB)
    predicted = layer_activation_bytes(arch, setting, device)
    per_layer_casts = 0
    if precision == "bf16" and not bf16_weights:  # autocast copies of the fp32 weights, per token
        per_layer_casts = 2 * arch.layer_linear_params
        if method == "lora":
            per_layer_casts += 2 * planner.lora_params(replace(arch, num_hidden_layers=1), setting)
    assert _saved_bytes_per_layer(method, precision, bf16_weights) == pytest.approx(
        predicted + per_layer_casts / 64, rel=0.01)


def test_checkpointing_lowers_the_activation_estimate() -> None:
    for method in ("full", "lora", "qlora"):
        off = estimate("llama-3-8b", device=GPU80, method=method, micro_batch=4)
        on = estimate("llama-3-8b", device=GPU80, method=method, micro_batch=4, gradient_checkpointing=True)
        assert on.activations < off.activations / 5
        # Full fine-tuning's peak can be the optimizer step (gradients + foreach temporaries),
        # which checkpointing does not shrink.
        assert on.total < off.total if method != "full" else on.total <= off.total


def test_components_add_up_and_scale() -> None:
    plan = estimate("mistral-7b", device=GPU80, method="lora", micro_batch=2)
    assert [c.name for c in plan.components] == list(COMPONENTS)
    assert plan.total == sum(c.bytes for c in plan.components)
    assert plan.backward_reuse <= 0
    double = estimate("mistral-7b", device=GPU80, method="lora", micro_batch=4)
    assert double.activations == 2 * plan.activations and double.weights == plan.weights
    assert estimate("mistral-7b", device=GPU80, method="lora", lora_r=64).gradients == 4 * plan.gradients
    sgd = estimate("mistral-7b", device=GPU80, method="full", optimizer="sgd")
    adamw = estimate("mistral-7b", device=GPU80, method="full", optimizer="adamw")
    assert adamw.optimizer_states == 2 * sgd.optimizer_states


# ---------------------------------------------------------------- fitting and refusing


def test_full_fine_tuning_of_8b_on_24gb_is_refused_with_alternatives() -> None:
    plan = choose("llama-3-8b", device="24GB", method="full", precision="bf16", optimizer="adamw")
    assert not plan.fits
    assert plan.nearest is not None and plan.nearest.method in ("lora", "qlora")
    assert plan.shard_gpus is not None and plan.shard_gpus >= 2
    for needle in ("QLoRA/LoRA", "sharding over", "FSDP/ZeRO-3", f"{plan.total / GIB:.1f} GiB",
                   "nearest setting that fits: LoRA"):
        assert needle in plan.verdict
    assert f"{plan.nearest_total / GIB:.1f} GiB" in plan.verdict


def test_lora_of_8b_fits_on_80gb_and_qlora_on_24gb() -> None:
    lora = choose("llama-3-8b", device="80GB", method="lora", max_seq_length=512, micro_batch=8)
    assert lora.fits and lora.setting.method == "lora"
    qlora = choose("llama-3-8b", device="24GB", method="qlora", max_seq_length=512, micro_batch=8)
    assert qlora.fits and qlora.total <= 0.9 * 24 * GIB
    assert qlora.weights < 8 * GIB  # 4-bit base: about 0.56 byte per quantized weight


def test_choose_picks_a_smaller_micro_batch_before_checkpointing() -> None:
    full = estimate("llama-3-8b", device="24GB", method="lora", micro_batch=8)
    assert not full.fits
    plan = choose("llama-3-8b", device="24GB", method="lora", micro_batch=8)
    assert plan.fits and 1 <= plan.setting.micro_batch < 8 and not plan.setting.gradient_checkpointing
    assert plan.requested.micro_batch == 8
    bigger = replace(plan.setting, micro_batch=plan.setting.micro_batch + 1)
    assert not estimate("llama-3-8b", bigger, "24GB").fits  # the largest that fits
    assert any("fits" in line for line in plan.reasons) and plan.verdict in plan.reasons


def test_choose_turns_checkpointing_on_only_when_needed() -> None:
    plan = choose("llama-3-8b", device="24GB", method="lora", max_seq_length=2048, micro_batch=4)
    assert plan.fits and plan.setting.gradient_checkpointing
    off = choose("llama-3-8b", device="24GB", method="lora", max_seq_length=2048, micro_batch=4,
                 checkpointing=False)
    assert not off.fits and "gradient checkpointing on" in off.verdict


def test_a_refused_plan_names_its_estimate_and_the_nearest_fit() -> None:
    plan = estimate("llama-3-8b", device="48GB", method="lora", micro_batch=8)
    assert not plan.fits
    assert f"{plan.total / GIB:.1f} GiB" in plan.verdict
    assert plan.nearest is not None and plan.nearest_change == f"micro-batch {plan.nearest.micro_batch}"
    assert f"nearest setting that fits: {plan.nearest_change}" in plan.verdict
    data = plan.to_dict()
    assert data["fits"] is False and data["nearest"]["micro_batch"] == plan.nearest.micro_batch


def test_70b_full_needs_many_gpus() -> None:
    plan = choose("llama-3-70b", device="80GB", method="full")
    assert not plan.fits and plan.shard_gpus is not None and plan.shard_gpus >= 8


def test_bad_settings_are_input_errors() -> None:
    with pytest.raises(InputError, match="method"):
        TrialSetting(method="dora")
    with pytest.raises(InputError, match="lora_target_modules"):
        estimate("llama-3-8b", device=GPU24, lora_target_modules="q_proj,w_xyz")
    with pytest.raises(InputError, match="micro_batch"):
        estimate("llama-3-8b", device=GPU24, micro_batch=0)


# ---------------------------------------------------------------- CLI


def test_cli_plan_json_has_the_components() -> None:
    res = CliRunner().invoke(build_app(), ["plan", "--model", "llama-3-8b", "--method", "full",
                                           "--device", "24GB", "--json", "-"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert [c["name"] for c in data["components"]] == list(COMPONENTS)
    assert data["fits"] is False and "QLoRA/LoRA" in data["verdict"]
    assert data["model"]["n_params"] == resolve_arch("llama-3-8b").n_params
    assert any(line.startswith("weights:") for line in data["reasons"])


def test_cli_plan_several_gpu_sizes() -> None:
    res = CliRunner().invoke(build_app(), ["plan", "--model", "llama-3-8b", "--method", "qlora",
                                           "--gpu-memory", "24,48,80,141"], env={"COLUMNS": "160"})
    assert res.exit_code == 0, res.output
    for size in ("24 GiB", "48 GiB", "80 GiB", "141 GiB"):
        assert size in res.stdout
    res = CliRunner().invoke(build_app(), ["plan", "--model", "llama-3-8b", "--gpu-memory", "24,80",
                                           "--json", "-"])
    assert [p["device"]["memory_gib"] for p in json.loads(res.stdout)["plans"]] == [24, 80]


def test_cli_plan_bad_model_exits_2() -> None:
    res = CliRunner().invoke(build_app(), ["plan", "--model", "nope-7b"])
    assert res.exit_code == 2 and "nope-7b" in res.output


def test_planner_module_is_light() -> None:
    code = ("import sys; from staytuned.hardware.planner import choose; "
            "choose('llama-3-8b', device='24GB', method='qlora'); choose('smollm2-135m', device='cpu'); "
            "print([m for m in ('torch', 'transformers', 'peft') if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


# ---------------------------------------------------------------- against a real trial


@pytest.mark.slow
def test_smollm2_lora_estimate_matches_a_real_trial() -> None:
    """A real LoRA trial of SmolLM2 at 128 tokens: its measured peak RSS is within +-25% of the plan."""
    pytest.importorskip("torch")
    pytest.importorskip("peft")
    from staytuned.models import smollm2_gguf_path

    try:
        smollm2_gguf_path()
    except InputError as exc:
        pytest.skip(str(exc))
    # Dequantize the GGUF into the cache first, in another process: its freed buffers would
    # otherwise sit in the measured process's heap when the trial starts.
    subprocess.run([sys.executable, "-c", "from staytuned.models import _gguf_cache, smollm2_gguf_path; "
                    "_gguf_cache(smollm2_gguf_path())"], check=True, capture_output=True)
    code = r"""
import json, torch
torch.set_num_threads(1)
from staytuned.finetune.trial import run_trial
r = run_trial("smollm2-135m", "scitldr", {"method": "lora", "epochs": 1, "batch_size": 8, "max_seq_length": 128},
              train_size=16, eval_size=1, micro_batch_size=8, device="cpu")
print(json.dumps({"status": r.status, "error": r.error, "peak": r.peak_memory_mb, "precision": r.precision,
                  "micro": r.micro_batch_size}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["status"] == "ok", result["error"]
    # SciTLDR rows are longer than 128 tokens, so each micro-batch is 8 x 128; targets are cut to
    # at most 64 tokens (the trainer sends those + 1 positions through the LM head).
    plan = estimate("smollm2-135m", device=Device("cpu", 24 * GIB), method="lora", max_seq_length=128,
                    micro_batch=result["micro"], precision=result["precision"], logit_positions=65)
    assert 0.75 <= plan.total / 2**20 / result["peak"] <= 1.25, (plan.total / 2**20, result["peak"])
