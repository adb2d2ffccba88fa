"""Stop sequences: stop generating as soon as one appears, then cut the text exactly before it.

``truncate_at_stop`` is pure string code (OpenAI semantics: the stop sequence itself is not
returned). ``StopSequenceCriteria`` lets batched local generation finish a row early; the final
cut is always made on the fully decoded text, so token boundaries never shift the cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def truncate_at_stop(text: str, stops: Sequence[str]) -> tuple[str, str | None]:
    """Return ``(text before the earliest stop sequence, that stop)`` or ``(text, None)``.

    When two stops start at the same place the longer one is reported (the cut is the same).
    """
    best: tuple[int, int] | None = None  # (position, -length)
    found: str | None = None
    for stop in stops:
        pos = text.find(stop)
        if pos >= 0 and (best is None or (pos, -len(stop)) < best):
            best, found = (pos, -len(stop)), stop
    if best is None:
        return text, None
    return text[: best[0]], found


class StopSequenceCriteria:
    """Per-row "done" flags for ``model.generate`` once a stop string shows up in the new text.

    Only a tail window of tokens is decoded each step: a stop completed at this step lies within
    its last ``len(stop)`` characters, and every token decodes to at least one character except
    special/partial-byte ones, for which the margin of extra tokens is kept. (Duck-typed like
    transformers' StoppingCriteria so that this module stays importable without transformers.)
    """

    def __init__(self, tokenizer: Any, stops: Sequence[str], prompt_length: int, margin: int = 8) -> None:
        self.tokenizer = tokenizer
        self.stops = list(stops)
        self.prompt_length = int(prompt_length)
        self.window = max((len(s) for s in self.stops), default=0) + margin

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        generated = input_ids[:, self.prompt_length:]
        tails = generated[:, -self.window:].tolist()
        texts = self.tokenizer.batch_decode(tails, skip_special_tokens=True)
        done = [any(s in t for s in self.stops) for t in texts]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)
