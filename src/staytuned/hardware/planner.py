"""Plan a trial's peak memory before it starts: will it fit, and if not, what would.

The estimate is built from a model's architecture (a Hugging Face ``config.json``: vocabulary,
hidden and MLP sizes, layers, attention and key/value heads, tied embeddings) and the setting of
one trial: method (full / lora / qlora), LoRA rank and targets, optimizer, precision, sequence
length, micro-batch and gradient checkpointing. It has these parts (bytes):

- ``weights``: the stored weights; full fine-tuning with staytuned's native trainer trains a deep
  copy of the cached base model, so the base is held twice (``resident_base``). QLoRA stores the
  decoder's linear layers in 4-bit NF4 (0.5 byte/param plus one fp32 absmax per 64 weights, or
  ~0.016 byte/param with double quantization); embeddings, norms and the LM head stay unquantized.
- ``weight_casts``: under 16-bit autocast, fp32 weights are cast to bf16/fp16 for every matmul
  and those copies are saved for the backward pass (frozen and trained weights alike); LoRA's fp32
  adapter weights too.
- ``gradients`` and ``optimizer_states`` of the trainable parameters, in their dtype (torch's
  AdamW keeps two states per parameter, SGD with momentum one, Adafactor factored row/column
  second moments for matrices).
- ``activations``: the tensors autograd saves for the backward pass, counted per token and layer
  from the Llama/Mistral/Qwen decoder (RMSNorm in fp32, SDPA attention with repeated K/V, SwiGLU
  MLP, LoRA dropout and adapter inputs). The coefficients reproduce the bytes saved by
  transformers 5 / torch 2.13 for fp32, bf16 autocast over fp32 weights and bf16 weights, full
  and LoRA (tests/hardware/test_planner.py counts them with ``saved_tensors_hooks``). With
  gradient checkpointing each layer keeps only its input, and one layer is recomputed at a time.
- ``logits``: positions through the LM head x vocabulary x (16-bit logits + fp32 copy for the
  loss + log-softmax output + its gradient). staytuned's trainer sends only the answer positions
  through the head (``logit_positions``); the default is the whole sequence.
- ``overhead``: on CPU the process's runtime (Python, torch, transformers, tokenizer: RSS with
  SmolLM2's weights resident, less those weights, :data:`CPU_RUNTIME_BYTES`; bitsandbytes for
  QLoRA, whose 4-bit load also keeps the unquantized checkpoint file mapped) and what glibc's
  heap keeps of freed buffers (:data:`CPU_HEAP_RETENTION`, :data:`CPU_ATTENTION_SCRATCH`); on
  any device the optimizer step's temporaries (torch's foreach AdamW on CUDA: one more copy of
  the trainable parameters) and QLoRA's dequantized weight buffers.
- ``backward_reuse`` (zero or negative): gradients and the optimizer step are written into the
  memory the backward pass frees from activations, weight copies and logits, so the peak holds
  the larger of the two phases, not their sum.

A trial fits when the total is at most ``(1 - margin)`` of the device's memory; the margin
(10% by default) covers what is not modelled (CUDA context, allocator fragmentation).

Checked against measured peaks on CPU: ``bench/bench_plan_memory.py`` (results in
``bench/results/plan_memory.json``). GPU figures are the same formulas, not measured here.

Light at import: stdlib only; torch is never imported here.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, overload

from staytuned.errors import InputError

GIB = 2**30
METHODS = ("full", "lora", "qlora")
OPTIMIZERS = ("adamw", "sgd", "adafactor")
PRECISIONS = ("fp32", "bf16", "fp16")
#: LoRA "all-linear" in a Llama-style decoder (the LM head is never a target).
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
DEFAULT_MARGIN = 0.10
#: RSS of a CPU worker with SmolLM2-135M's weights resident, less those weights: Python, torch,
#: transformers, peft, the tokenizer and the task (bench/bench_plan_memory.py: 404-407 MiB).
CPU_RUNTIME_BYTES = 405 * 2**20
#: What ``import bitsandbytes`` adds to a CPU worker's RSS (bench/bench_plan_memory.py).
CPU_BNB_RUNTIME_BYTES = 117 * 2**20
#: On CPU the RSS peak over a trial's first optimizer steps exceeds the live tensors, because
#: glibc keeps freed buffers in its heap: a share of the forward phase (activations, weight
#: copies, logits) plus the flash-attention backward's scratch (about micro-batch x heads x T^2
#: fp32 per layer), which piles up across layers. Both factors are fitted to the measured peaks
#: of SmolLM2 full and LoRA trials at 128 and 512 tokens (bench/bench_plan_memory.py).
CPU_HEAP_RETENTION = 0.19
CPU_ATTENTION_SCRATCH = 1.4
#: QLoRA: NF4 block size (one absmax per block) and the second-level block of double quantization.
NF4_BLOCK = 64
NF4_DOUBLE_BLOCK = 256
#: Largest number of GPUs the sharding verdict looks at.
MAX_SHARDS = 1024
_PRESETS_DIR = Path(__file__).resolve().parent.parent / "presets" / "models"
_REQUIRED = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")


# ---------------------------------------------------------------- architecture


@dataclass(frozen=True)
class ModelArch:
    """The architecture facts the planner needs, from a Llama/Mistral/Qwen-style ``config.json``."""

    name: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    tie_word_embeddings: bool
    max_position_embeddings: int | None = None
    attention_bias: bool = False
    mlp_bias: bool = False
    model_type: str = ""
    source: str = ""

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, name: str = "", source: str = "") -> ModelArch:
        """Read the fields of a HF config dict (a ``text_config`` inside is used when present)."""
        if not isinstance(config, Mapping):
            raise InputError("a model config must be a mapping", file=source or None, value=type(config).__name__)
        if isinstance(config.get("text_config"), Mapping):
            config = {**config["text_config"], "model_type": config.get("model_type", "")}
        missing = [k for k in _REQUIRED if not _positive_int(config.get(k))]
        if missing:
            raise InputError("the model config lacks architecture fields", file=source or None,
                             field=missing[0], value=config.get(missing[0]),
                             expected=f"positive integers for {', '.join(_REQUIRED)}")
        if any(config.get(k) for k in ("num_local_experts", "num_experts", "n_routed_experts")):
            raise InputError("mixture-of-experts models are not planned yet", file=source or None,
                             field="num_local_experts", value=name or source or None,
                             expected="a dense decoder (Llama, Mistral, Qwen)")
        heads = int(config["num_attention_heads"])
        kv = config.get("num_key_value_heads") or heads
        hidden = int(config["hidden_size"])
        model_type = str(config.get("model_type") or "")
        return cls(
            name=name or str(config.get("_name_or_path") or model_type or "model"),
            vocab_size=int(config["vocab_size"]), hidden_size=hidden,
            intermediate_size=int(config["intermediate_size"]),
            num_hidden_layers=int(config["num_hidden_layers"]), num_attention_heads=heads,
            num_key_value_heads=int(kv), head_dim=int(config.get("head_dim") or hidden // heads),
            tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
            max_position_embeddings=config.get("max_position_embeddings"),
            # Qwen2 has q/k/v biases without an attention_bias field.
            attention_bias=bool(config.get("attention_bias", model_type == "qwen2")),
            mlp_bias=bool(config.get("mlp_bias", False)), model_type=model_type, source=source,
        )

    @property
    def q_dim(self) -> int:
        return self.num_attention_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_key_value_heads * self.head_dim

    def linears(self) -> dict[str, tuple[int, int]]:
        """``name -> (in_features, out_features)`` of the linear layers of one decoder layer."""
        h, i = self.hidden_size, self.intermediate_size
        return {"q_proj": (h, self.q_dim), "k_proj": (h, self.kv_dim), "v_proj": (h, self.kv_dim),
                "o_proj": (self.q_dim, h), "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    @property
    def layer_linear_params(self) -> int:
        """Weights of one layer's linear layers (biases excluded)."""
        return sum(a * b for a, b in self.linears().values())

    @property
    def layer_other_params(self) -> int:
        """One layer's norms and biases."""
        bias = (self.q_dim + 2 * self.kv_dim) if self.attention_bias else 0
        if self.mlp_bias:
            bias += 2 * self.intermediate_size + self.hidden_size
        return 2 * self.hidden_size + bias

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    @property
    def n_params(self) -> int:
        """All parameters: embeddings, layers, final norm and (when untied) the LM head."""
        head = 0 if self.tie_word_embeddings else self.embedding_params
        layers = self.num_hidden_layers * (self.layer_linear_params + self.layer_other_params)
        return self.embedding_params + layers + self.hidden_size + head

    @property
    def decoder_linear_params(self) -> int:
        """What QLoRA quantizes: every decoder layer's linear weights (not embeddings or the head)."""
        return self.num_hidden_layers * self.layer_linear_params

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "n_params": self.n_params}


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def known_models() -> dict[str, Path]:
    """Aliases and hub ids of the shipped architecture files -> file."""
    table: dict[str, Path] = {}
    for path in sorted(_PRESETS_DIR.glob("*.json")):
        meta = json.loads(path.read_text(encoding="utf-8")).get("_staytuned", {})
        for alias in [path.stem, *meta.get("aliases", [])]:
            table[alias.lower()] = path
    return table


def resolve_arch(model: str | Path | Mapping[str, Any] | ModelArch) -> ModelArch:
    """A model reference -> its architecture, without loading weights.

    Accepted: a :class:`ModelArch`; a config dict; a shipped alias or hub id (``llama-3-8b``,
    ``meta-llama/Meta-Llama-3-8B``, ``mistral-7b``, ``llama-3.2-1b``, ``llama-3-70b``...);
    ``smollm2-135m`` (the config of its dequantized cache when present, else the shipped copy);
    a ``config.json`` file or a folder holding one; a ``.gguf`` already dequantized into
    staytuned's cache; a hub id whose ``config.json`` is in the local Hugging Face cache.
    """
    if isinstance(model, ModelArch):
        return model
    if isinstance(model, Mapping):
        return ModelArch.from_config(model)
    ref = str(model).strip()
    if not ref:
        raise InputError("empty model reference", field="model", value=ref, expected=_ACCEPTED)
    if ref.lower() == "smollm2-135m":
        cached = _smollm2_cached_config()
        if cached is not None:
            return _arch_from_file(cached, name="smollm2-135m")
    known = known_models().get(ref.lower())
    if known is not None:
        meta = json.loads(known.read_text(encoding="utf-8")).get("_staytuned", {})
        return _arch_from_file(known, name=meta.get("name") or known.stem)
    path = Path(ref).expanduser()
    if path.is_file() and path.suffix.lower() == ".json":
        return _arch_from_file(path, name=path.parent.name or path.stem)
    if path.is_dir() and (path / "config.json").is_file():
        return _arch_from_file(path / "config.json", name=path.resolve().name)
    if path.is_file() and path.suffix.lower() == ".gguf":
        cfg = _gguf_cached_config(path)
        if cfg is None:
            raise InputError("this .gguf has not been dequantized into staytuned's cache yet, so its "
                             "config is unknown without loading it", field="model", value=ref,
                             expected="run one trial or `staytuned train --eval-only` with it first, "
                             "or pass its config.json")
        return _arch_from_file(cfg, name=path.stem)
    if re.match(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$", ref) and not path.exists():
        cfg = _hf_cached_config(ref)
        if cfg is not None:
            return _arch_from_file(cfg, name=ref)
        raise InputError("no config.json for this hub id in the local Hugging Face cache", field="model",
                         value=ref, expected=_ACCEPTED)
    raise InputError("unknown model for the memory planner", field="model", value=ref, expected=_ACCEPTED)


def _accepted() -> str:
    names = sorted({p.stem for p in _PRESETS_DIR.glob("*.json")})
    return (f"a known model ({', '.join(names)}, or their hub ids), a config.json or a folder holding "
            "one, or a hub id whose config.json is in the local Hugging Face cache")


_ACCEPTED = _accepted()


def _arch_from_file(path: Path, *, name: str) -> ModelArch:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the model config: {exc}", file=str(path)) from None
    return ModelArch.from_config(config, name=name, source=str(path))


def _smollm2_cached_config() -> Path | None:
    from staytuned import models

    try:
        gguf = models.smollm2_gguf_path()
    except InputError:
        return None
    return _gguf_cached_config(gguf)


def _gguf_cached_config(gguf: Path) -> Path | None:
    from staytuned import models

    cfg = models.gguf_cache_dir(gguf) / "config.json"
    return cfg if cfg.is_file() else None


def _hf_cached_config(hub_id: str) -> Path | None:
    """``config.json`` of ``hub_id`` in the Hugging Face hub cache, without importing huggingface_hub."""
    roots = []
    if os.environ.get("HF_HUB_CACHE"):
        roots.append(Path(os.environ["HF_HUB_CACHE"]))
    if os.environ.get("HF_HOME"):
        roots.append(Path(os.environ["HF_HOME"]) / "hub")
    roots.append(Path.home() / ".cache" / "huggingface" / "hub")
    for root in roots:
        repo = root.expanduser() / ("models--" + hub_id.replace("/", "--"))
        ref = repo / "refs" / "main"
        if ref.is_file():
            cfg = repo / "snapshots" / ref.read_text().strip() / "config.json"
            if cfg.is_file():
                return cfg
        found = sorted((repo / "snapshots").glob("*/config.json")) if repo.is_dir() else []
        if found:
            return found[-1]
    return None


# ---------------------------------------------------------------- settings and devices


@dataclass(frozen=True)
class TrialSetting:
    """What of one trial decides its memory: method and LoRA shape (hyperparameters) and how it
    runs (execution settings: precision, micro-batch, checkpointing)."""

    method: str = "lora"
    lora_r: int = 16
    lora_target_modules: str = "all-linear"
    lora_dropout: float = 0.05
    optimizer: str = "adamw"
    precision: str = "bf16"
    max_seq_length: int = 512
    micro_batch: int = 1
    gradient_checkpointing: bool = False
    #: positions per example that go through the LM head (None: the whole sequence; staytuned's
    #: trainer keeps only the answer tokens + 1)
    logit_positions: int | None = None
    #: QLoRA: quantize the absmax constants too (bitsandbytes ``bnb_4bit_use_double_quant``)
    double_quant: bool = False
    #: full fine-tuning keeps the cached base model beside the trained copy (the native trainer
    #: does); None: as the native trainer does
    resident_base: bool | None = None

    def __post_init__(self) -> None:
        checks = [("method", self.method, METHODS), ("optimizer", self.optimizer, OPTIMIZERS),
                  ("precision", self.precision, PRECISIONS)]
        for name, value, allowed in checks:
            if value not in allowed:
                raise InputError(f"unknown {name}", field=name, value=value, expected=", ".join(allowed))
        for name in ("lora_r", "max_seq_length", "micro_batch"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InputError("must be a positive integer", field=name, value=value)
        if self.logit_positions is not None and self.logit_positions < 1:
            raise InputError("must be a positive integer or None", field="logit_positions",
                             value=self.logit_positions)
        if not 0 <= self.lora_dropout < 1:
            raise InputError("must be in [0, 1)", field="lora_dropout", value=self.lora_dropout)

    def targets(self) -> tuple[str, ...]:
        raw = self.lora_target_modules.strip()
        if raw == "all-linear":
            return ALL_LINEAR
        names = tuple(t.strip() for t in raw.split(",") if t.strip())
        unknown = [t for t in names if t not in ALL_LINEAR]
        if unknown or not names:
            raise InputError("unknown LoRA target module", field="lora_target_modules",
                             value=unknown[0] if unknown else raw,
                             expected=f"'all-linear' or a comma list of {', '.join(ALL_LINEAR)}")
        return names

    def describe(self) -> str:
        parts = [self.method]
        if self.method != "full":
            parts.append(f"r={self.lora_r}")
        parts += [self.optimizer, self.precision, f"seq {self.max_seq_length}",
                  f"micro-batch {self.micro_batch}",
                  "checkpointing on" if self.gradient_checkpointing else "no checkpointing"]
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Device:
    """Where a trial runs: ``kind`` "cpu" or "cuda", and its memory in bytes."""

    kind: str
    memory: int
    name: str = ""

    @property
    def label(self) -> str:
        return self.name or f"{self.kind} {self.memory / GIB:.0f} GiB"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "memory_bytes": self.memory, "memory_gib": round(self.memory / GIB, 2),
                "name": self.label}


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(g|gb|gib|m|mb|mib|t|tb|tib)?\s*$", re.IGNORECASE)


def parse_size(text: str | float | int, *, field_name: str = "device") -> int:
    """``"24GB"``, ``"24"``, ``"80GiB"``, ``"512MB"`` -> bytes. GPU sizes as sold ("24GB", "80GB")
    are read as GiB, which is what those GPUs report."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        value, unit = float(text), "g"
    else:
        m = _SIZE.match(str(text))
        if not m:
            raise InputError("not a memory size", field=field_name, value=text,
                             expected="a size like 24GB, 80GiB or 512MB (a bare number is GiB)")
        value, unit = float(m.group(1)), (m.group(2) or "g").lower()[0]
    if value <= 0:
        raise InputError("must be positive", field=field_name, value=text)
    return int(value * {"m": 2**20, "g": GIB, "t": 2**40}[unit])


def resolve_device(device: str | Device | int | float = "cuda") -> Device:
    """``"cpu"`` (this machine's memory), ``"cuda"``/``"cuda:N"`` (that GPU, through torch), or a
    size such as ``"24GB"`` (one GPU of that size)."""
    if isinstance(device, Device):
        return device
    text = str(device).strip().lower()
    if text == "cpu":
        return Device("cpu", machine_memory(), "cpu")
    if text == "cuda" or text.startswith("cuda:"):
        from staytuned.hardware.probe import gpu_info  # imports torch, only here

        index = int(text.split(":", 1)[1]) if ":" in text and text.split(":", 1)[1].isdigit() else 0
        gpus = {g.index: g for g in gpu_info()}
        if index not in gpus:
            raise InputError("no such CUDA device on this machine", field="device", value=device,
                             expected="cpu, or a GPU size like 24GB, 48GB, 80GB, 141GB")
        gpu = gpus[index]
        return Device("cuda", int(gpu.total_memory_mb * 2**20), f"{gpu.name} (cuda:{index})")
    return Device("cuda", parse_size(text), f"{parse_size(text) / GIB:g} GiB GPU")


def machine_memory() -> int:
    """This machine's memory in bytes, or the cgroup limit when lower (0 where unknown)."""
    total = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                total = int(line.split()[1]) * 1024
    except OSError:
        pass
    for limit_file in (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes")):
        try:
            text = limit_file.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < (total or 2**62):
            total = int(text)
    return total


# ---------------------------------------------------------------- the estimate


@dataclass(frozen=True)
class Component:
    """One part of the estimate: bytes and how they were counted."""

    name: str
    bytes: int
    how: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "bytes": self.bytes, "gib": round(self.bytes / GIB, 3), "how": self.how}


COMPONENTS = ("weights", "weight_casts", "gradients", "optimizer_states", "activations", "logits", "overhead",
              "backward_reuse")


class _ComponentBytes:
    """A :class:`MemoryPlan` attribute: the bytes of the component it is named after."""

    def __init__(self, doc: str | None = None) -> None:
        self.__doc__ = doc

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, plan: None, owner: type | None = None) -> _ComponentBytes: ...
    @overload
    def __get__(self, plan: MemoryPlan, owner: type | None = None) -> int: ...
    def __get__(self, plan: MemoryPlan | None, owner: type | None = None) -> int | _ComponentBytes:
        return self if plan is None else plan.bytes_of(self.name)


@dataclass(frozen=True)
class MemoryPlan:
    """A trial's estimated peak memory on one device, whether it fits, and what would.

    ``setting`` is what the estimate is for (after :func:`choose`, the chosen setting);
    ``requested`` what was asked. When it does not fit, ``nearest`` is the nearest setting that
    fits (``nearest_change`` says what changes, ``nearest_total`` its estimate),
    ``minimum_total`` the requested method's estimate at micro-batch 1 with checkpointing, and
    ``shard_gpus`` how many such GPUs a sharded run (FSDP/ZeRO-3) of the requested method needs.
    """

    model: ModelArch
    setting: TrialSetting
    requested: TrialSetting
    device: Device
    margin: float
    components: tuple[Component, ...]
    trainable_params: int
    fits: bool
    verdict: str
    reasons: tuple[str, ...] = ()
    minimum_total: int | None = None
    nearest: TrialSetting | None = None
    nearest_change: str | None = None
    nearest_total: int | None = None
    shard_gpus: int | None = None

    def bytes_of(self, name: str) -> int:
        """Bytes of one component (one of :data:`COMPONENTS`)."""
        for c in self.components:
            if c.name == name:
                return c.bytes
        raise KeyError(name)

    weights = _ComponentBytes()
    weight_casts = _ComponentBytes()
    gradients = _ComponentBytes()
    optimizer_states = _ComponentBytes()
    activations = _ComponentBytes()
    logits = _ComponentBytes()
    overhead = _ComponentBytes()
    backward_reuse = _ComponentBytes("Zero or negative: what gradients reuse of the memory backward frees.")

    @property
    def total(self) -> int:
        return sum(c.bytes for c in self.components)

    @property
    def usable(self) -> int:
        """Device memory less the margin: what a trial may use."""
        return int(self.device.memory * (1 - self.margin))

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.to_dict(),
            "device": self.device.to_dict(),
            "requested": self.requested.to_dict(),
            "setting": self.setting.to_dict(),
            "trainable_params": self.trainable_params,
            "components": [c.to_dict() for c in self.components],
            "total_bytes": self.total, "total_gib": round(self.total / GIB, 3),
            "margin": self.margin, "usable_bytes": self.usable, "usable_gib": round(self.usable / GIB, 3),
            "fits": self.fits, "verdict": self.verdict,
            "minimum_total_gib": round(self.minimum_total / GIB, 3) if self.minimum_total is not None else None,
            "nearest": self.nearest.to_dict() if self.nearest is not None else None,
            "nearest_change": self.nearest_change,
            "nearest_total_gib": round(self.nearest_total / GIB, 3) if self.nearest_total is not None else None,
            "shard_gpus": self.shard_gpus,
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True)
class _Dtypes:
    """Bytes per element: stored weights / residual stream (``store``), matmul compute (``compute``),
    LoRA adapter weights (``adapter``), and the saved dropout mask (``mask``)."""

    store: int
    compute: int
    adapter: int = 4
    mask: int = 1

    @property
    def autocast(self) -> bool:
        return self.compute != self.store


def _dtypes(setting: TrialSetting, device: Device) -> _Dtypes:
    # As staytuned runs: fp32 master weights under autocast, except a CUDA bf16 run, which loads
    # the weights in bf16 (hardware.precision's load_dtype); fp16 keeps fp32 weights because the
    # gradient scaler cannot unscale fp16 gradients. peft keeps adapters in fp32.
    compute = 4 if setting.precision == "fp32" else 2
    store = 2 if (device.kind == "cuda" and setting.precision == "bf16") else 4
    # CPU dropout multiplies by a noise tensor of the input's dtype (peft casts the input to the
    # adapter's fp32 first); CUDA's fused dropout saves a bool mask.
    return _Dtypes(store=store, compute=compute, adapter=4, mask=4 if device.kind == "cpu" else 1)


def lora_params(arch: ModelArch, setting: TrialSetting) -> int:
    """Trainable LoRA parameters: r x (in + out) per targeted linear layer."""
    shapes = arch.linears()
    return arch.num_hidden_layers * sum(setting.lora_r * (shapes[t][0] + shapes[t][1]) for t in setting.targets())


def layer_activation_bytes(arch: ModelArch, setting: TrialSetting, device: Device) -> float:
    """Bytes autograd saves per token in one decoder layer (see the module docstring)."""
    d = _dtypes(setting, device)
    h, i, q, c, s = arch.hidden_size, arch.intermediate_size, arch.q_dim, d.compute, d.store
    t = setting.max_seq_length
    full = setting.method == "full"
    # RMSNorm runs in fp32: saves its fp32 input and 1/rms; with a trained weight also the
    # normalised input (in the stream's dtype).
    norms = 2 * (4 * h + 4 + (s * h if full else 0))
    # SDPA: q, repeated k, v and the output (B, heads, T, head_dim), the log-sum-exp (fp32), and
    # the additive padding mask in compute dtype (B, 1, T, T) -> T values per token.
    attention = 4 * c * q + 4 * arch.num_attention_heads + c * t
    # SwiGLU: gate output, its SiLU, up output; the product only when down_proj's weight trains.
    mlp = 3 * c * i + (c * i if full else 0)
    total = norms + attention + mlp
    if full:
        # Trained linears save their inputs: under autocast one cast copy per consumer (q, k, v;
        # gate, up), else the shared norm output once per block.
        total += 5 * c * h if d.autocast else 2 * s * h
        return total
    shapes = arch.linears()
    lora_c = c if setting.precision != "fp32" else d.adapter
    for target in setting.targets():
        fan_in = shapes[target][0]
        mask = d.mask if setting.lora_dropout > 0 else 0
        total += fan_in * (mask + lora_c) + lora_c * setting.lora_r
    return total


def _activations(arch: ModelArch, setting: TrialSetting, device: Device) -> tuple[int, str]:
    d = _dtypes(setting, device)
    tokens = setting.max_seq_length * setting.micro_batch
    per_layer = layer_activation_bytes(arch, setting, device)
    final_norm = 4 * arch.hidden_size + 4 + (d.store * arch.hidden_size if setting.method == "full" else 0)
    if setting.gradient_checkpointing:
        kept = arch.num_hidden_layers * d.store * arch.hidden_size  # each layer's input
        n = tokens * (kept + per_layer + final_norm)
        how = (f"checkpointing: {arch.num_hidden_layers} layer inputs x {d.store} B x {arch.hidden_size} + one "
               f"recomputed layer ({per_layer / 1024:.1f} KiB/token) for {tokens} tokens")
    else:
        n = tokens * (arch.num_hidden_layers * per_layer + final_norm)
        how = (f"{per_layer / 1024:.1f} KiB/token/layer x {arch.num_hidden_layers} layers x {tokens} tokens "
               f"({setting.micro_batch} x {setting.max_seq_length})")
    return int(n), how


def _breakdown(arch: ModelArch, setting: TrialSetting, device: Device) -> tuple[tuple[Component, ...], int]:
    d = _dtypes(setting, device)
    n = arch.n_params
    head_params = arch.embedding_params  # the LM head matrix, tied or not
    resident = setting.resident_base if setting.resident_base is not None else setting.method == "full"
    dtype_name = {2: "bf16" if setting.precision != "fp16" else "fp16", 4: "fp32"}
    store_name = "fp32" if d.store == 4 else dtype_name[2]

    # -- weights
    if setting.method == "qlora":
        absmax = 1 / NF4_BLOCK + 4 / (NF4_BLOCK * NF4_DOUBLE_BLOCK) if setting.double_quant else 4 / NF4_BLOCK
        quant = arch.decoder_linear_params
        weights = int(quant * (0.5 + absmax)) + (n - quant) * d.store
        how = (f"{_count(quant)} linear weights in NF4 ({0.5 + absmax:.4f} B each) + "
               f"{_count(n - quant)} others in {store_name}")
    else:
        weights = n * d.store
        how = f"{_count(n)} params x {d.store} B ({store_name})"
    if resident and setting.method == "full":
        weights += n * d.store
        how += " x 2 (the trained copy + the cached base model the native trainer keeps)"
    trainable = n if setting.method == "full" else lora_params(arch, setting)
    if setting.method != "full":
        weights += trainable * d.adapter
        how += f" + {_count(trainable)} LoRA params x {d.adapter} B"
    components = [Component("weights", weights, how)]

    # -- autocast copies of weights, saved for the backward pass
    casts, cast_parts = 0, []
    if d.autocast:
        layers = 1 if setting.gradient_checkpointing else arch.num_hidden_layers
        if setting.method != "qlora":  # the 4-bit base is dequantized on the fly, never saved
            casts += d.compute * layers * arch.layer_linear_params
            cast_parts.append("one layer's linears (checkpointing)" if setting.gradient_checkpointing
                              else "every layer's linears")
        casts += d.compute * head_params
        cast_parts.append("the LM head")
    if setting.method != "full" and setting.precision != "fp32":
        casts += d.compute * trainable
        cast_parts.append("the fp32 adapters")
    cast_how = (f"{d.compute} B autocast copies saved for backward: {', '.join(cast_parts)}" if cast_parts
                else "none: weights are stored in the compute dtype")
    components.append(Component("weight_casts", casts, cast_how))

    # -- gradients and optimizer states, in the trainable parameters' dtype
    p_bytes = d.store if setting.method == "full" else d.adapter
    components.append(Component("gradients", trainable * p_bytes,
                                f"{_count(trainable)} trainable params x {p_bytes} B"))
    if setting.optimizer == "adamw":
        states, s_how = 2 * trainable * p_bytes, f"AdamW: 2 states x {p_bytes} B per trainable param"
    elif setting.optimizer == "sgd":
        states, s_how = trainable * p_bytes, f"SGD momentum: 1 state x {p_bytes} B per trainable param"
    else:
        states, s_how = _adafactor_states(arch, setting) * p_bytes, "Adafactor: row + column second moments"
    components.append(Component("optimizer_states", states, s_how))

    # -- activations and logits
    acts, a_how = _activations(arch, setting, device)
    components.append(Component("activations", acts, a_how))
    positions = setting.logit_positions or setting.max_seq_length
    positions = min(positions, setting.max_seq_length)
    per_logit = d.compute + (4 if d.compute != 4 else 0) + 8
    logits = positions * setting.micro_batch * arch.vocab_size * per_logit
    components.append(Component("logits", logits, f"{setting.micro_batch} x {positions} positions x "
                                f"{arch.vocab_size} vocab x {per_logit} B (logits, fp32 copy, log-softmax, grad)"))

    # -- overhead: the runtime, the optimizer step's scratch, QLoRA's dequantized weights, and on
    # CPU what glibc's heap keeps of freed forward-pass buffers
    runtime = mapped = 0
    if device.kind == "cpu":
        runtime = CPU_RUNTIME_BYTES + (CPU_BNB_RUNTIME_BYTES if setting.method == "qlora" else 0)
        if setting.method == "qlora":
            # transformers' 4-bit load keeps the unquantized checkpoint file mapped (the
            # embedding is a view into it), and quantizing read every page: RSS holds the file.
            mapped = n * d.store
    if device.kind == "cuda":
        # torch's foreach AdamW/SGD builds one temporary over all parameters at once.
        step = trainable * p_bytes if setting.optimizer != "adafactor" else 0
        step_how = "foreach optimizer step temporaries"
    else:
        # CPU optimizers step one tensor at a time: two temporaries of the largest tensor.
        largest = head_params if setting.method == "full" else max(
            setting.lora_r * (a + b) for a, b in arch.linears().values())
        step, step_how = 2 * largest * p_bytes, "per-tensor optimizer step temporaries"
    dequant = 0
    if setting.method == "qlora":
        largest_linear = max(a * b for a, b in arch.linears().values())
        dequant = 2 * largest_linear * d.compute
    forward_phase = acts + casts + logits
    retention = 0
    if device.kind == "cpu":
        scratch = (arch.num_hidden_layers * setting.micro_batch * arch.num_attention_heads
                   * setting.max_seq_length ** 2 * 4)
        retention = int(CPU_HEAP_RETENTION * forward_phase + CPU_ATTENTION_SCRATCH * scratch)
    parts = [f"runtime {_gib(runtime)} (measured)"] if runtime else []
    if mapped:
        parts.append(f"unquantized checkpoint file kept mapped by the 4-bit load {_gib(mapped)}")
    if retention:
        parts.append(f"heap retention {_gib(retention)} ({CPU_HEAP_RETENTION:g} x activations, weight copies "
                     f"and logits + {CPU_ATTENTION_SCRATCH:g} x attention-backward scratch: freed buffers glibc "
                     "keeps, fitted to measured peaks)")
    parts.append(f"{step_how} {_gib(step)}")
    if dequant:
        parts.append(f"NF4 dequantization buffers {_gib(dequant)}")
    if device.kind == "cuda":
        parts.append("CUDA context and fragmentation: in the margin")
    components.append(Component("overhead", runtime + mapped + retention + step + dequant, "; ".join(parts)))
    # Gradients and the optimizer step use memory the backward pass frees from activations,
    # weight copies and logits: the peak holds the larger of the two phases, not their sum.
    reuse = min(forward_phase, trainable * p_bytes + step)
    components.append(Component("backward_reuse", -reuse,
                                f"gradients + step temporaries {_gib(trainable * p_bytes + step)} reuse the "
                                f"{_gib(forward_phase)} that backward frees; the peak holds the larger"))
    return tuple(components), trainable


def _adafactor_states(arch: ModelArch, setting: TrialSetting) -> int:
    """Factored second moments: rows + columns per matrix, full size for vectors."""
    if setting.method != "full":
        shapes = arch.linears()
        return arch.num_hidden_layers * sum(
            (setting.lora_r + shapes[t][0]) + (shapes[t][1] + setting.lora_r) for t in setting.targets())
    per_layer = sum(a + b for a, b in arch.linears().values()) + arch.layer_other_params
    head = 0 if arch.tie_word_embeddings else arch.vocab_size + arch.hidden_size
    return arch.vocab_size + arch.hidden_size + arch.num_hidden_layers * per_layer + arch.hidden_size + head


def _fits(components: tuple[Component, ...], device: Device, margin: float) -> bool:
    return sum(c.bytes for c in components) <= device.memory * (1 - margin)


def _count(n: int) -> str:
    """8030261248 -> "8.03B", 4884480 -> "4.88M"."""
    return f"{n / 1e9:.3g}B" if n >= 1e9 else f"{n / 1e6:.3g}M"


def _gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB"


# ---------------------------------------------------------------- searching settings that fit


def _try(arch: ModelArch, setting: TrialSetting, device: Device, margin: float) -> tuple[bool, int]:
    comps, _ = _breakdown(arch, setting, device)
    return _fits(comps, device, margin), sum(c.bytes for c in comps)


def _fit_execution(arch: ModelArch, setting: TrialSetting, device: Device, margin: float,
                   lines: list[str] | None = None, checkpointing: bool | None = None) -> TrialSetting | None:
    """The requested method with the largest micro-batch up to the requested one, no
    checkpointing preferred (``checkpointing`` True/False: only that); None when nothing fits."""
    for ckpt in (False, True) if checkpointing is None else (checkpointing,):
        for mb in range(setting.micro_batch, 0, -1):
            candidate = replace(setting, micro_batch=mb, gradient_checkpointing=ckpt)
            ok, total = _try(arch, candidate, device, margin)
            if lines is not None and (mb == setting.micro_batch or ok or mb == 1):
                verdict = "fits" if ok else "does not fit"
                lines.append(f"{candidate.method}, micro-batch {mb}, checkpointing {'on' if ckpt else 'off'}: "
                             f"{_gib(total)} {verdict} in {_gib(device.memory * (1 - margin))}")
            if ok:
                return candidate
    return None


_METHOD_NAMES = {"full": "full fine-tuning", "lora": "LoRA", "qlora": "QLoRA"}


def _change(old: TrialSetting, new: TrialSetting) -> str:
    parts = []
    if new.method != old.method:
        parts.append(f"{_METHOD_NAMES[new.method]} instead of {_METHOD_NAMES[old.method]}")
    if new.micro_batch != old.micro_batch:
        parts.append(f"micro-batch {new.micro_batch}")
    if new.gradient_checkpointing != old.gradient_checkpointing:
        parts.append("gradient checkpointing on" if new.gradient_checkpointing else "gradient checkpointing off")
    return ", ".join(parts) or "no change"


def _nearest(arch: ModelArch, setting: TrialSetting, device: Device, margin: float) -> TrialSetting | None:
    """The nearest fitting setting: execution settings first, then LoRA, then QLoRA."""
    found = _fit_execution(arch, setting, device, margin)
    if found is not None:
        return found
    order = {"full": ("lora", "qlora"), "lora": ("qlora",), "qlora": ()}[setting.method]
    for method in order:
        found = _fit_execution(arch, replace(setting, method=method, resident_base=None), device, margin)
        if found is not None:
            return found
    return None


def shard_gpus(arch: ModelArch, setting: TrialSetting, device: Device, margin: float) -> int | None:
    """How many GPUs of this size a fully sharded run (FSDP / ZeRO-3: weights, gradients, optimizer
    states and their step temporaries split over N; activations per GPU at micro-batch 1 with
    checkpointing) needs; None when even :data:`MAX_SHARDS` do not suffice."""
    base = replace(setting, micro_batch=1, gradient_checkpointing=True, resident_base=False)
    comps = {c.name: c.bytes for c in _breakdown(arch, base, device)[0]}
    sharded = comps["weights"] + comps["gradients"] + comps["optimizer_states"] + comps["overhead"]
    # Each GPU also gathers one full layer's weights (and prefetches the next).
    gathered = 2 * (arch.layer_linear_params + arch.layer_other_params) * _dtypes(base, device).store
    local = comps["weight_casts"] + comps["activations"] + comps["logits"] + gathered
    usable = device.memory * (1 - margin)
    if local >= usable:
        return None
    n = math.ceil(sharded / (usable - local))
    return max(2, n) if n <= MAX_SHARDS else None


# ---------------------------------------------------------------- public entry points


def _setting(setting: TrialSetting | None, overrides: Mapping[str, Any]) -> TrialSetting:
    base = setting if setting is not None else TrialSetting()
    unknown = [k for k in overrides if k not in TrialSetting.__dataclass_fields__]
    if unknown:
        raise InputError("unknown planner setting", field=unknown[0],
                         expected=", ".join(TrialSetting.__dataclass_fields__))
    return replace(base, **overrides) if overrides else base


def estimate(model: str | Path | Mapping[str, Any] | ModelArch, setting: TrialSetting | None = None,
             device: str | Device | int | float = "cuda", *, margin: float = DEFAULT_MARGIN,
             **overrides: Any) -> MemoryPlan:
    """The estimate for exactly this setting; when it does not fit, the nearest setting that does.

    ``overrides`` are :class:`TrialSetting` fields (``method="full", micro_batch=4``).
    """
    return _plan(resolve_arch(model), _setting(setting, overrides), resolve_device(device), margin, choose=False)


def choose(model: str | Path | Mapping[str, Any] | ModelArch, setting: TrialSetting | None = None,
           device: str | Device | int | float = "cuda", *, margin: float = DEFAULT_MARGIN,
           checkpointing: bool | None = None, **overrides: Any) -> MemoryPlan:
    """Pick micro-batch (up to the requested one) and gradient checkpointing so the trial fits with
    ``margin`` to spare, preferring no checkpointing, then the largest micro-batch
    (``checkpointing`` True/False fixes it; None: auto). The method is a hyperparameter and never
    changed: when nothing fits, the plan says so (``fits`` False) and names the nearest fitting
    setting (LoRA, QLoRA) and the sharding a full run needs."""
    return _plan(resolve_arch(model), _setting(setting, overrides), resolve_device(device), margin, choose=True,
                 checkpointing=checkpointing)


def _plan(arch: ModelArch, requested: TrialSetting, device: Device, margin: float, *, choose: bool,
          checkpointing: bool | None = None) -> MemoryPlan:
    if not 0 <= margin < 1:
        raise InputError("must be in [0, 1)", field="margin", value=margin)
    if device.memory <= 0:
        raise InputError("the device's memory is unknown", field="device", value=device.label,
                         expected="a size like 24GB")
    requested.targets()  # validate the targets before any arithmetic
    if choose and checkpointing is not None:
        requested = replace(requested, gradient_checkpointing=checkpointing)
    lines: list[str] = []
    comps, trainable = _breakdown(arch, requested, device)
    total = sum(c.bytes for c in comps)
    usable = device.memory * (1 - margin)
    lines.append(f"{arch.name}: {_count(arch.n_params)} params ({arch.num_hidden_layers} layers, hidden "
                 f"{arch.hidden_size}, MLP {arch.intermediate_size}, vocab {arch.vocab_size}, "
                 f"{arch.num_attention_heads}/{arch.num_key_value_heads} heads/kv heads)")
    lines.append(f"device {device.label}: {_gib(device.memory)}, usable {_gib(usable)} ({margin:.0%} margin)")
    lines.append(f"requested: {requested.describe()}: {_gib(total)}")
    setting = requested
    if choose:
        chosen = _fit_execution(arch, requested, device, margin, lines, checkpointing)
        if chosen is not None:
            setting = chosen
            comps, trainable = _breakdown(arch, setting, device)
            total = sum(c.bytes for c in comps)
    fits = total <= usable
    nearest = change = None
    nearest_total = shards = minimum = None
    if not fits:
        minimum = _try(arch, replace(requested, micro_batch=1, gradient_checkpointing=True), device, margin)[1]
        nearest = _nearest(arch, requested, device, margin)
        if nearest is not None:
            change = _change(requested, nearest)
            nearest_total = _try(arch, nearest, device, margin)[1]
        if (nearest is None or nearest.method != requested.method) and device.kind == "cuda":
            shards = shard_gpus(arch, requested, device, margin)
    for c in comps:
        lines.append(f"{c.name}: {_gib(c.bytes)} ({c.how})")
    verdict = _verdict(requested, setting, device, total, usable, fits, minimum, nearest, change,
                       nearest_total, shards)
    lines.append(verdict)
    return MemoryPlan(model=arch, setting=setting, requested=requested, device=device, margin=margin,
                      components=comps, trainable_params=trainable, fits=fits, verdict=verdict,
                      reasons=tuple(lines), minimum_total=minimum, nearest=nearest, nearest_change=change,
                      nearest_total=nearest_total, shard_gpus=shards)


def _verdict(requested: TrialSetting, setting: TrialSetting, device: Device, total: int, usable: float,
             fits: bool, minimum: int | None, nearest: TrialSetting | None, change: str | None,
             nearest_total: int | None, shards: int | None) -> str:
    if fits:
        how = "" if setting == requested else f" with {_change(requested, setting)}"
        return f"fits{how}: {_gib(total)} of {_gib(usable)} usable on {device.label}"
    name = _METHOD_NAMES[requested.method]
    text = (f"does not fit: {name} needs {_gib(total)} as requested ({requested.describe()}) and at least "
            f"{_gib(minimum or total)} (micro-batch 1, checkpointing on); {device.label} has {_gib(usable)} usable")
    if nearest is not None and nearest.method == requested.method:
        return text + f"; nearest setting that fits: {change} ({_gib(nearest_total or 0)})"
    if requested.method == "full":
        shard = (f"sharding over {shards} such GPUs (FSDP/ZeRO-3 through a trainer backend)" if shards
                 else "sharding over several devices (FSDP/ZeRO-3 through a trainer backend)")
        text += f"; nothing on one device fits full fine-tuning: it needs {shard} or QLoRA/LoRA"
    else:
        text += f"; nothing on one device fits {name}"
        if shards:
            text += f" (sharded over {shards} such GPUs it would)"
    if nearest is not None:
        text += (f"; nearest setting that fits: {change} ({_gib(nearest_total or 0)}; the method is a "
                 "hyperparameter, so this is another config)")
    else:
        text += "; not even QLoRA with micro-batch 1 and checkpointing fits"
    return text
