"""Build a backend from user-facing options, and read decoding configs from files (light module)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from staytuned._util.mapping import load_data, read_mapping
from staytuned._util.parse import parse_assignments
from staytuned.errors import InputError
from staytuned.hparams.decode import DecodingConfig

if TYPE_CHECKING:
    from staytuned.decoding.base import Backend


@dataclass(frozen=True)
class BackendOptions:
    """How to run a model: locally (``hf``) or through an OpenAI-compatible server (``http``)."""

    kind: str = "hf"
    base_url: str | None = None
    api_key: str | None = None
    flavor: str = "vllm"
    timeout: float = 60.0
    retries: int = 2
    concurrency: int = 4
    batch_size: int = 8
    device: str | None = None
    chat: bool | None = None
    adapter_base: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("hf", "http"):
            raise InputError("unknown backend", field="backend", value=self.kind, expected="hf or http")
        if self.kind == "http" and not self.base_url:
            raise InputError("the http backend needs a server URL", field="base_url",
                             expected="e.g. http://HOST:PORT/v1")
        if self.retries < 0:
            raise InputError("must be >= 0", field="retries", value=self.retries, expected="an integer >= 0")


def open_backend(model: str | None, options: BackendOptions) -> Backend:
    """A ready backend for ``model`` (for ``http``, ``model=None`` takes the server's first model)."""
    if options.kind == "http":
        from staytuned.decoding.http_backend import HTTPBackend, RetryPolicy

        return HTTPBackend(options.base_url or "", model=model, api_key=options.api_key,
                           flavor=options.flavor, chat=bool(options.chat), timeout=options.timeout,
                           retry=RetryPolicy(max_retries=options.retries),
                           concurrency=options.concurrency)
    if not model:
        raise InputError("no model given", field="model", expected="a model name or path")
    from staytuned.decoding.hf_backend import HFBackend

    return HFBackend.load(model, device=options.device, batch_size=options.batch_size,
                          chat=options.chat, base=options.adapter_base)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML or JSON mapping of decoding parameters (a `decode tune` result's ``best.config`` works too)."""
    return read_mapping(path, what="decoding config file", unwrap="best.config",
                        expected="e.g. temperature: 0.7")


def unescape(text: str) -> str:
    """Shells make typing a newline awkward: read \\n, \\t and \\\\ in stop sequences."""
    return re.sub(r"\\([nt\\])", lambda m: {"n": "\n", "t": "\t", "\\": "\\"}[m.group(1)], text)


def parse_inline_config(text: str) -> tuple[str | None, dict[str, Any]]:
    """``"name:key=value,key=value"`` or ``"key=value,..."`` -> (name, mapping).

    Values are typed as in :func:`parse_assignments` (numbers, true/false, null, quoted
    strings); ``greedy`` alone means temperature 0.
    """
    name: str | None = None
    body = text.strip()
    head, sep, rest = body.partition(":")
    if sep and "=" not in head:
        name, body = head.strip() or None, rest.strip()
    if body in ("greedy", ""):
        return name or (body or None), ({"temperature": 0.0} if body == "greedy" else {})
    return name, parse_decoding_values(body, field="config",
                                       expected="e.g. 'creative:temperature=0.9,top_p=0.95'")


def parse_decoding_values(items: str | Iterable[str] | None, *, field: str,
                          expected: str | None = None) -> dict[str, Any]:
    """Decoding parameters from NAME=VALUE assignments: ``stop`` may be given several times
    (``stop=\\n,stop=###``), kept as typed with \\n, \\t and \\\\ read as escapes."""
    data = parse_assignments(items, field=field, multi={"stop"}, raw={"stop"}, expected=expected)
    if "stop" in data:
        data["stop"] = [unescape(s) for s in data["stop"]]
    return data


def load_named_configs(spec: str, defaults: dict[str, Any] | None = None
                       ) -> list[tuple[str, DecodingConfig]]:
    """Configs for ``compare``: a YAML/JSON file (mapping name -> params, or a list of params),
    or inline specs separated by ';'. ``defaults`` fill unset fields (e.g. max_new_tokens)."""
    defaults = dict(defaults or {})
    entries: list[tuple[str | None, dict[str, Any], str | None]] = []
    p = Path(spec)
    if p.suffix.lower() in (".yaml", ".yml", ".json") or p.is_file():
        data = load_data(p, what="configs file", name=spec, expected="a YAML or JSON file")
        if isinstance(data, dict):
            entries = [(str(k), v if isinstance(v, dict) else {}, spec) for k, v in data.items()]
            bad = [k for k, v in data.items() if not isinstance(v, dict)]
            if bad:
                raise InputError("each config must be a mapping of parameters", file=spec, field=str(bad[0]))
        elif isinstance(data, list) and all(isinstance(v, dict) for v in data):
            entries = [(None, v, spec) for v in data]
        else:
            raise InputError("expected a mapping name -> parameters or a list of mappings", file=spec)
    else:
        for part in spec.split(";"):
            if part.strip():
                name, data = parse_inline_config(part)
                entries.append((name, data, None))
    if not entries:
        raise InputError("no decoding configs given", field="configs", value=spec,
                         expected="'greedy;t07:temperature=0.7' or a YAML/JSON file")
    out: list[tuple[str, DecodingConfig]] = []
    for name, data, source in entries:
        cfg = DecodingConfig.from_dict({**defaults, **data}, source=source)
        label = name or cfg.describe()
        if any(label == n for n, _ in out):
            raise InputError("two configs share a name", field="configs", value=label)
        out.append((label, cfg))
    return out
