"""DecodingConfig: generation-time hyperparameters, validated once and normalized per backend.

Light module (stdlib only): the CLI validates flags with it before loading any model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from staytuned.errors import InputError
from staytuned.hparams.schema import DECODE

# Range-checked fields: every declared decoding hyperparameter except the two with their own rules
# (stop is a list of strings; do_sample is derived from temperature, never stored).
_DECLARED = {p.name: p for p in DECODE if p.name not in ("stop", "do_sample")}

# Backends a config can be normalized for. "hf" is local transformers generation; the others are
# OpenAI-compatible HTTP servers whose extra sampling fields and "off" sentinels differ.
BACKENDS = ("hf", "vllm", "llamacpp", "tgi", "openai", "staytuned")

# Other spellings accepted by DecodingConfig.from_dict (OpenAI / llama.cpp / HF names).
_ALIASES = {
    "max_tokens": "max_new_tokens",
    "max_completion_tokens": "max_new_tokens",
    "n_predict": "max_new_tokens",
    "repeat_penalty": "repetition_penalty",
    "stop_sequences": "stop",
    "stop_strings": "stop",
}


@dataclass(frozen=True)
class DecodingConfig:
    """One assignment of decoding hyperparameters.

    ``temperature == 0`` means greedy decoding (``do_sample`` is derived, never stored), ``top_k == 0``
    and ``top_p == 1`` and ``min_p == 0`` mean "off". Frequency and presence penalties follow OpenAI's
    additive formula over the *generated* tokens; ``repetition_penalty`` is the multiplicative
    CTRL/HF penalty over prompt and generated tokens (1 = off).
    """

    max_new_tokens: int = 64
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repetition_penalty: float = 1.0
    stop: tuple[str, ...] = field(default_factory=tuple)
    seed: int | None = None

    def __post_init__(self) -> None:
        # Coerce first (frozen dataclass: object.__setattr__), then check ranges, so that values read
        # from YAML/CLI strings ("0.7") and numpy scalars behave like plain numbers.
        set_ = object.__setattr__
        for name, declared in _DECLARED.items():
            value = getattr(self, name)
            if name == "seed" and value is None:
                continue
            set_(self, name, declared.check(value))
        set_(self, "stop", _normalize_stop(self.stop))

    # -- derived ---------------------------------------------------------------------------------
    @property
    def do_sample(self) -> bool:
        """Sampling when temperature > 0, greedy (argmax) when it is 0."""
        return self.temperature > 0

    @property
    def uses_penalties(self) -> bool:
        return (self.frequency_penalty != 0 or self.presence_penalty != 0
                or self.repetition_penalty != 1)

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | None = None) -> DecodingConfig:
        """Build from a mapping (YAML, JSON, Optuna params, request bodies).

        Accepts the OpenAI/llama.cpp spellings listed in ``_ALIASES`` and ``do_sample``: ``do_sample:
        false`` forces greedy (temperature 0), ``do_sample: true`` with temperature 0 is a conflict.
        Unknown keys are refused so a typo never silently means "default".
        """
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        do_sample = None
        for key, value in data.items():
            name = _ALIASES.get(key, key)
            if name == "do_sample":
                if not isinstance(value, bool):
                    raise InputError("not a boolean", file=source, field="do_sample", value=value,
                                     expected="true or false")
                do_sample = value
                continue
            if name not in known:
                raise InputError("unknown decoding parameter", file=source, field=key,
                                 expected="one of " + ", ".join(sorted(known | {"do_sample"})))
            if name in kwargs:
                raise InputError("given twice (under two spellings)", file=source, field=key)
            kwargs[name] = value
        if do_sample is False:
            kwargs["temperature"] = 0.0
        try:
            config = cls(**kwargs)
        except InputError as exc:
            if source is None:
                raise
            raise InputError(str(exc), file=source) from None
        if do_sample is True and not config.do_sample:
            raise InputError("do_sample=true conflicts with temperature 0 (greedy)", file=source,
                             field="do_sample", expected="temperature > 0 for sampling")
        return config

    def replace(self, **changes: Any) -> DecodingConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["stop"] = list(self.stop)
        return d

    def config_id(self) -> str:
        """Stable id of the hyperparameters (the seed excluded: samples of one config share an id)."""
        d = self.to_dict()
        d.pop("seed")
        text = json.dumps(d, sort_keys=True, separators=(",", ":"))
        return hashlib.sha1(text.encode()).hexdigest()[:10]

    def describe(self) -> str:
        """Short human label, only the non-default fields: 'greedy', 'T=0.7 top_p=0.9'."""
        default = DecodingConfig()
        parts = ["greedy" if not self.do_sample else f"T={self.temperature:.3g}"]
        for name in ("top_k", "top_p", "min_p", "frequency_penalty", "presence_penalty",
                     "repetition_penalty", "max_new_tokens"):
            v = getattr(self, name)
            if v != getattr(default, name):
                parts.append(f"{_SHORT.get(name, name)}={v:.3g}")
        if self.stop:
            parts.append("stop=" + "|".join(repr(s)[1:-1] for s in self.stop))
        return " ".join(parts)

    # -- per-backend normalization ---------------------------------------------------------------
    def for_backend(self, backend: str) -> dict[str, Any]:
        """The parameters as ``backend`` spells them; refuses what that backend cannot honour.

        - ``hf``: ``generate`` keywords; ``do_sample`` explicit, off filters as None (transformers
          treats top_k=0 and min_p=None as off), penalties handled by staytuned's processors.
        - ``vllm`` / ``staytuned``: OpenAI body plus vLLM extras; top_k off is -1.
        - ``llamacpp``: OpenAI body plus llama.cpp extras; top_k off is 0, min_p sent explicitly
          because the server's own default is 0.05, repetition is ``repeat_penalty``.
        - ``tgi``: TGI's OpenAI messages API: no top_k/min_p/repetition_penalty; top_p must be < 1,
          so "off" is sent by leaving it out.
        - ``openai``: only the official fields; at most 4 stop sequences.
        """
        if backend not in BACKENDS:
            raise InputError("unknown backend", field="backend", value=backend,
                             expected="one of " + ", ".join(BACKENDS))
        if backend == "hf":
            return {
                "max_new_tokens": self.max_new_tokens,
                "do_sample": self.do_sample,
                "temperature": self.temperature if self.do_sample else None,
                "top_k": self.top_k if (self.do_sample and self.top_k > 0) else None,
                "top_p": self.top_p if (self.do_sample and self.top_p < 1) else None,
                "min_p": self.min_p if (self.do_sample and self.min_p > 0) else None,
                "repetition_penalty": self.repetition_penalty,
                "frequency_penalty": self.frequency_penalty,
                "presence_penalty": self.presence_penalty,
                "stop_strings": list(self.stop),
                "seed": self.seed,
            }
        body: dict[str, Any] = {
            "max_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "frequency_penalty": self.frequency_penalty,
            "presence_penalty": self.presence_penalty,
        }
        if self.stop:
            body["stop"] = list(self.stop)
        if self.seed is not None:
            body["seed"] = self.seed
        if backend in ("vllm", "staytuned"):
            body.update(top_k=self.top_k if self.top_k > 0 else -1, min_p=self.min_p,
                        repetition_penalty=self.repetition_penalty)
        elif backend == "llamacpp":
            body.update(top_k=self.top_k, min_p=self.min_p, repeat_penalty=self.repetition_penalty)
        else:  # tgi, openai: official fields only
            self._refuse_extras(backend)
            if backend == "tgi" and self.top_p >= 1:
                del body["top_p"]
            if backend == "openai" and len(self.stop) > 4:
                raise InputError("too many stop sequences for the OpenAI API", field="stop",
                                 value=len(self.stop), expected="at most 4")
        return body

    def _refuse_extras(self, backend: str) -> None:
        for name, off in (("top_k", 0), ("min_p", 0.0), ("repetition_penalty", 1.0)):
            if getattr(self, name) != off:
                raise InputError(f"not supported by the {backend} API", field=name,
                                 value=getattr(self, name),
                                 expected=f"{off} (off), or a vllm/llamacpp/staytuned server")


_SHORT = {"frequency_penalty": "freq", "presence_penalty": "pres", "repetition_penalty": "rep",
          "max_new_tokens": "max"}


def _normalize_stop(stop: Any) -> tuple[str, ...]:
    if stop is None:
        return ()
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, Iterable):
        raise InputError("not a list of strings", field="stop", value=stop,
                         expected="a string or a list of strings")
    out: list[str] = []
    for s in stop:
        if not isinstance(s, str) or s == "":
            raise InputError("stop sequences must be non-empty strings", field="stop", value=s,
                             expected="a non-empty string")
        if s not in out:  # duplicates change nothing; keep the first order
            out.append(s)
    return tuple(out)


GREEDY = DecodingConfig(temperature=0.0)
