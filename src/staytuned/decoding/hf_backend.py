"""Local generation with transformers: batched, seeded, with staytuned's processor chain.

The generation config handed to ``model.generate`` is neutral (T=1, top-k/top-p off, no
repetition penalty) so that every filter comes from :func:`build_processors` in one known order,
whatever defaults a model's ``generation_config.json`` ships.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from staytuned.decoding.base import FinishReason, Generation
from staytuned.decoding.stopping import StopSequenceCriteria, truncate_at_stop
from staytuned.errors import InputError
from staytuned.hparams.decode import DecodingConfig


@dataclass(frozen=True)
class GenerationStats:
    """Totals of the last ``generate`` call (for benchmarks and progress)."""

    n_prompts: int
    n_output_tokens: int
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        return self.n_output_tokens / self.seconds if self.seconds > 0 else float("nan")


def is_adapter_folder(ref: str) -> bool:
    """A saved PEFT adapter (adapter_config.json without a full config.json)."""
    p = Path(ref).expanduser()
    return p.is_dir() and (p / "adapter_config.json").is_file() and not (p / "config.json").is_file()


def load_for_generation(ref: str, *, device: str | None = None, dtype: Any = None,
                        base: str | None = None) -> tuple[Any, Any]:
    """``staytuned.models.load_model`` plus PEFT adapter folders (merged into their base).

    The base of an adapter is ``base`` when given, else the model reference that
    ``run_trial(save_dir=...)`` wrote to staytuned-trial.json (e.g. ``smollm2-135m``), else
    ``base_model_name_or_path`` from adapter_config.json (a folder or a hub id). A tokenizer
    saved beside the adapter wins over the base's (training may have added a pad token).
    """
    from staytuned.models import load_model

    if not is_adapter_folder(ref):
        return load_model(ref, dtype=dtype, device=device)
    folder = Path(ref).expanduser()
    try:
        adapter_cfg = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"unreadable adapter_config.json: {exc}", file=str(folder)) from None
    base_ref = base or _trial_model(folder) or adapter_cfg.get("base_model_name_or_path")
    if not base_ref:
        raise InputError("adapter folder does not name its base model", file=str(folder),
                         field="base_model_name_or_path", expected="a model alias, folder or hub id")
    model, tokenizer = load_model(str(base_ref), dtype=dtype, device=device)
    try:
        from peft import PeftModel
    except ImportError:
        from staytuned.errors import DependencyError

        raise DependencyError("peft", "train", "Loading a LoRA adapter") from None
    if (folder / "tokenizer_config.json").is_file():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
    peft_model = PeftModel.from_pretrained(model, str(folder))
    # Merging removes the adapter indirection: generation runs at the base model's speed.
    model = peft_model.merge_and_unload()
    model.eval()
    return model, tokenizer


def _trial_model(folder: Path) -> str | None:
    meta = folder / "staytuned-trial.json"
    if not meta.is_file():
        return None
    try:
        model = json.loads(meta.read_text(encoding="utf-8")).get("model")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None
    return model if isinstance(model, str) and model else None


class HFBackend:
    """Batched local generation.

    ``chat``: None renders prompts through the tokenizer's chat template when it has one (as a
    single user message), True requires it, False sends the text as is.
    Sampling is seeded per call: ``config.seed`` seeds a private RNG state (global torch RNG is
    restored afterwards), so the same prompts, batch size and seed give the same outputs.
    """

    name = "hf"

    def __init__(self, model: Any, tokenizer: Any, *, model_name: str = "model",
                 batch_size: int = 8, chat: bool | None = None) -> None:
        if batch_size < 1:
            raise InputError("must be at least 1", field="batch_size", value=batch_size,
                             expected="an integer >= 1")
        self.model, self.tokenizer = model, tokenizer
        self.model_name = model_name
        self.batch_size = int(batch_size)
        has_template = bool(getattr(tokenizer, "chat_template", None))
        if chat and not has_template:
            raise InputError("the model's tokenizer has no chat template", field="chat",
                             value=model_name, expected="`chat=False` for plain prompts")
        self.chat = has_template if chat is None else bool(chat)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.last_stats: GenerationStats | None = None

    @classmethod
    def load(cls, ref: str, *, device: str | None = None, dtype: Any = None, batch_size: int = 8,
             chat: bool | None = None, base: str | None = None) -> HFBackend:
        model, tokenizer = load_for_generation(ref, device=device, dtype=dtype, base=base)
        name = Path(ref).name if Path(ref).expanduser().exists() else ref
        return cls(model, tokenizer, model_name=name, batch_size=batch_size, chat=chat)

    # -- prompts ---------------------------------------------------------------------------------
    def chat_prompt(self, messages: Sequence[dict[str, str]]) -> str:
        """Render a conversation with the chat template, ready for the assistant's answer."""
        if not getattr(self.tokenizer, "chat_template", None):
            # Without a template: a plain transcript, the usual fallback of servers.
            lines = [f"{m['role']}: {m['content']}" for m in messages]
            return "\n".join(lines) + "\nassistant:"
        return self.tokenizer.apply_chat_template(list(messages), tokenize=False,
                                                  add_generation_prompt=True)

    def render(self, prompt: str) -> str:
        """What the model actually sees for a user prompt (chat template or the text itself)."""
        return self.chat_prompt([{"role": "user", "content": prompt}]) if self.chat else prompt

    # -- generation ------------------------------------------------------------------------------
    def generate(self, prompts: Sequence[str], config: DecodingConfig, *, raw: bool = False,
                 on_batch: Callable[[int], None] | None = None, streamer: Any = None,
                 stop_when: Any = None) -> list[Generation]:
        """One generation per prompt, in order.

        ``raw=True`` skips the chat template (prompts already rendered, e.g. by the task templates
        or the server's chat endpoint). ``on_batch(n)`` is called after each batch of n prompts.
        ``streamer`` (a transformers streamer) receives the tokens as they are generated and
        ``stop_when`` (a StoppingCriteria) can end generation early: the server streams with them.
        """
        import torch

        if not prompts:
            return []
        texts = [p if raw else self.render(p) for p in prompts]
        encoded = [self._encode(t, templated=self.chat and not raw) for t in texts]
        # Longest first: similar lengths share a batch (less padding), and an out-of-memory error
        # shows up on the first batch rather than the last.
        order = sorted(range(len(texts)), key=lambda i: -len(encoded[i]))
        results: list[Generation | None] = [None] * len(texts)
        started = time.perf_counter()
        n_tokens = 0
        with torch.random.fork_rng(devices=self._rng_devices()):
            if config.seed is not None:
                torch.manual_seed(config.seed)
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                batch = self._generate_batch([encoded[i] for i in idx], config, streamer=streamer,
                                             stop_when=stop_when)
                for i, (text, reason, stop, n_out) in zip(idx, batch, strict=True):
                    results[i] = Generation(prompt=prompts[i], text=text, finish_reason=reason,
                                            n_prompt_tokens=len(encoded[i]), n_output_tokens=n_out,
                                            stop_sequence=stop, seed=config.seed)
                    n_tokens += n_out
                if on_batch is not None:
                    on_batch(len(idx))
        self.last_stats = GenerationStats(len(texts), n_tokens, time.perf_counter() - started)
        return [r for r in results if r is not None]

    def _encode(self, text: str, *, templated: bool) -> list[int]:
        # A chat template already writes BOS and friends; adding them again would double them.
        bos = getattr(self.tokenizer, "bos_token", None)
        add_special = not templated and not (bos and text.startswith(bos))
        return list(self.tokenizer(text, add_special_tokens=add_special)["input_ids"])

    def _rng_devices(self) -> list[Any]:
        device = getattr(self.model, "device", None)
        return [device] if device is not None and getattr(device, "type", "cpu") == "cuda" else []

    def _generate_batch(self, ids: list[list[int]], config: DecodingConfig, *, streamer: Any = None,
                        stop_when: Any = None) -> list[tuple[str, FinishReason, str | None, int]]:
        import torch
        from transformers import GenerationConfig, StoppingCriteriaList

        from staytuned.decoding.processors import build_processors

        tok = self.tokenizer
        width = max(len(x) for x in ids)
        pad = tok.pad_token_id
        # Left padding: every row's next token sits in the last column.
        input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids], dtype=torch.long)
        attention = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids],
                                 dtype=torch.long)
        device = getattr(self.model, "device", torch.device("cpu"))
        input_ids, attention = input_ids.to(device), attention.to(device)
        eos = self.eos_ids()
        gen_config = GenerationConfig(
            max_new_tokens=config.max_new_tokens, do_sample=config.do_sample,
            repetition_penalty=1.0, pad_token_id=pad, eos_token_id=eos or None,
        )
        if config.do_sample:
            # Neutralize the model's shipped defaults (top_k=50 is common): filters come from
            # our chain only. For greedy they are irrelevant and transformers warns about them.
            gen_config.temperature, gen_config.top_k, gen_config.top_p = 1.0, 0, 1.0
            if getattr(self.model.generation_config, "min_p", None) is not None:
                gen_config.min_p = 0.0
        stopping = StoppingCriteriaList()
        if config.stop:
            stopping.append(StopSequenceCriteria(tok, config.stop, prompt_length=width))
        if stop_when is not None:
            stopping.append(stop_when)
        with torch.no_grad():
            out = self.model.generate(
                input_ids=input_ids, attention_mask=attention, generation_config=gen_config,
                logits_processor=build_processors(config, prompt_length=width),
                stopping_criteria=stopping, **({"streamer": streamer} if streamer is not None else {}),
            )
        rows: list[tuple[str, FinishReason, str | None, int]] = []
        for row in out[:, width:].tolist():
            n = len(row)
            ended = False
            for j, t in enumerate(row):
                if t in eos:
                    n, ended = j, True
                    break
            gen_ids = row[:n]
            text = tok.decode(gen_ids, skip_special_tokens=True)
            cut, stop = truncate_at_stop(text, config.stop)
            if stop is not None:
                n_out = len(tok(cut, add_special_tokens=False)["input_ids"])
                rows.append((cut, "stop", stop, n_out))
            else:
                reason: FinishReason = "stop" if ended or n < config.max_new_tokens else "length"
                rows.append((text, reason, None, n))
        return rows

    def eos_ids(self) -> list[int]:
        """EOS ids of the model and tokenizer (chat models often end turns with another token)."""
        ids: list[int] = []
        for source in (self.model.generation_config.eos_token_id, self.tokenizer.eos_token_id):
            if source is None:
                continue
            for t in source if isinstance(source, list) else [source]:
                if t not in ids:
                    ids.append(int(t))
        return ids
