"""What every generation backend returns and promises (light module)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from staytuned.hparams.decode import DecodingConfig

FinishReason = Literal["stop", "length"]


@dataclass
class Generation:
    """One completion.

    ``finish_reason`` is "stop" when the model ended (EOS) or a stop sequence matched
    (``stop_sequence`` says which; the text is cut right before it), "length" when
    ``max_new_tokens`` ran out.
    """

    prompt: str
    text: str
    finish_reason: FinishReason
    n_prompt_tokens: int
    n_output_tokens: int
    stop_sequence: str | None = None
    seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Backend(Protocol):
    """A way to run a model: local transformers or an OpenAI-compatible server."""

    name: str  # "hf" or "http"

    @property
    def model_name(self) -> str:
        """The model's name (what a server calls it)."""
        ...

    def generate(self, prompts: Sequence[str], config: DecodingConfig, *, raw: bool = False,
                 on_batch: Callable[[int], None] | None = None) -> list[Generation]:
        """One generation per prompt, in order; raises StaytunedError subclasses on failure.

        ``raw``: the prompts are final text (no chat template); ``on_batch(n)`` after each batch."""
        ...

    def chat_prompt(self, messages: Sequence[dict[str, str]]) -> str:
        """Render chat messages to the prompt text this backend's model expects."""
        ...
