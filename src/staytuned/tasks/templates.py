"""Prompt templates: each example becomes an instruction prompt plus a target text.

A template is a Python format string with named fields. Available fields:

- classification: ``{text}``, ``{labels}`` (the allowed labels, comma-separated), ``{task}``
- summarization: ``{document}``, ``{task}``
- qa: ``{context}``, ``{question}``, ``{task}``

The target fields (``label``, ``summary``, ``answers``) are not available, so a template cannot
leak the answer. Literal braces are written ``{{`` and ``}}``. Override per task with
``load_task(..., template="...")`` / ``Task.template`` or per call with ``template=``.

The instruction is sent as the user message of the tokenizer's chat template when the tokenizer
has one (prompt = the rendered conversation with ``add_generation_prompt=True``; the target is the
assistant message). Without a chat template the plain format :data:`PLAIN_FORMAT` is used.
Tokenizers are passed in as objects: this module never imports torch or transformers.
"""

from __future__ import annotations

import string
from typing import Any

from staytuned.errors import InputError
from staytuned.tasks.task import Row, Task

DEFAULT_TEMPLATES: dict[str, str] = {
    "classification": (
        "Classify the text into exactly one of these labels: {labels}.\n\n"
        "Text: {text}\n\n"
        "Answer with the label only."
    ),
    "summarization": (
        "Summarize the following text in one sentence.\n\n"
        "Text: {document}"
    ),
    "qa": (
        "Answer the question with a short span copied from the context.\n\n"
        "Context: {context}\n\n"
        "Question: {question}"
    ),
}

#: Prompt layout for tokenizers without a chat template (the target follows directly).
PLAIN_FORMAT = "### Instruction:\n{instruction}\n\n### Response:\n"

TEMPLATE_FIELDS: dict[str, tuple[str, ...]] = {
    "classification": ("text", "labels", "task"),
    "summarization": ("document", "task"),
    "qa": ("context", "question", "task"),
}

#: The long input field that is shortened when an example does not fit ``max_tokens``.
MAIN_FIELD: dict[str, str] = {"classification": "text", "summarization": "document", "qa": "context"}

# Sentinel used to locate the assistant message in a rendered chat template.
_MARKER = "\u2063STAYTUNED_TARGET\u2063"


def template_fields(template: str) -> list[str]:
    """Named fields of a format string (InputError if it does not parse)."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise InputError(
            f"template does not parse: {exc}", field="template", value=template,
            expected="a format string with named fields like {text}; literal braces as {{ }}",
        ) from None
    names = []
    for _, fname, _, _ in parsed:
        if fname is None:
            continue
        base = fname.split(".")[0].split("[")[0]
        if not base or base.isdigit():
            raise InputError(
                "template fields must be named", field="template", value=template,
                expected="named fields like {text}",
            )
        names.append(base)
    return names


def validate_template(task_type: str, template: str) -> None:
    """InputError naming the field when ``template`` uses a field the task type lacks."""
    allowed = TEMPLATE_FIELDS.get(task_type)
    if allowed is None:
        raise InputError("unknown task type", field="type", value=task_type, expected=", ".join(TEMPLATE_FIELDS))
    for name in template_fields(template):
        if name not in allowed:
            raise InputError(
                f"unknown template field {{{name}}} for a {task_type} task",
                field="template",
                value=name,
                expected="fields " + ", ".join("{" + f + "}" for f in allowed),
            )


def format_instruction(task: Task, row: Row, template: str | None = None) -> str:
    """The instruction (user message) for ``row``."""
    tmpl = template or task.template or DEFAULT_TEMPLATES[task.type]
    if tmpl is not DEFAULT_TEMPLATES[task.type]:
        validate_template(task.type, tmpl)  # also catches a template set after loading
    values: dict[str, Any] = {"task": task.name}
    for key in TEMPLATE_FIELDS[task.type]:
        if key in row:
            values[key] = row[key]
    if task.type == "classification":
        values["labels"] = ", ".join(task.labels)
    return tmpl.format(**values)


def target_text(task: Task, row: Row) -> str:
    """The text the model learns to produce: the label name, the summary or the first answer."""
    if task.type == "classification":
        return str(row["label"])
    if task.type == "summarization":
        return str(row["summary"])
    return str(row["answers"][0])


def target_strings(task: Task) -> list[str]:
    """The candidate targets for label log-likelihood scoring (classification only), in
    ``task.labels`` order; score each as the target after the prompt and pick the most likely.
    Scoring ``label + completion_suffix(tokenizer)`` keeps a label that is a prefix of another
    (``hate`` / ``hateful``) from winning by being short."""
    if task.type != "classification":
        raise InputError(
            "label scoring needs a classification task", field="type", value=task.type,
            expected="classification",
        )
    return list(task.labels)


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None)) and hasattr(tokenizer, "apply_chat_template")


def render_prompt(instruction: str, tokenizer: Any = None, *, use_chat_template: bool | None = None) -> str:
    """Wrap an instruction as a generation prompt: chat template if available, else plain.

    ``use_chat_template``: None = use it when the tokenizer has one; False = always plain.
    A chat template that fails to render (some require a particular message order) falls back
    to the plain format, so a trial never fails on prompt rendering.
    """
    if use_chat_template is not False and tokenizer is not None and has_chat_template(tokenizer):
        try:
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": instruction}], tokenize=False, add_generation_prompt=True
            )
            if isinstance(text, str):
                return text
        except Exception:  # jinja errors from arbitrary third-party templates
            pass
    return PLAIN_FORMAT.format(instruction=instruction)


def build_prompt(
    task: Task, row: Row, tokenizer: Any = None, *, template: str | None = None,
    use_chat_template: bool | None = None, max_tokens: int | None = None,
) -> str:
    """The prompt text for ``row`` (what generation or label scoring continues).

    With ``max_tokens`` (needs ``tokenizer``) the main input field (text / document / context)
    is cut at its end until the prompt fits in ``max_tokens`` tokens; pass
    ``max_seq_length - max_new_tokens`` for generation. The gold answer is never looked at.
    """
    def render(r: Row) -> str:
        return render_prompt(format_instruction(task, r, template), tokenizer, use_chat_template=use_chat_template)

    if max_tokens is None:
        return render(row)
    return _fit(task, row, render, tokenizer, max_tokens, anchor=None)


def build_chat_example(
    task: Task, row: Row, tokenizer: Any = None, *, template: str | None = None,
    use_chat_template: bool | None = None, max_tokens: int | None = None,
) -> tuple[str, str]:
    """``(prompt_text, target_text)`` for training and evaluation.

    Loss belongs on the target tokens only. The target is the bare answer; to teach the model to
    stop, append :func:`completion_suffix` (the chat template's end of an assistant turn, or
    the EOS token) when training.

    With ``max_tokens`` (needs ``tokenizer``), prompt + target + suffix are made to fit by
    shortening the main input field (text / document / context), never the instruction or the
    target: from its end, except for QA where a window of the context around the first gold
    answer is kept so the answer stays answerable. If the example cannot fit even with an empty
    field (e.g. a very long label list), the shortest version is returned and the caller must
    truncate.
    """
    target = target_text(task, row)
    if max_tokens is None:
        return build_prompt(task, row, tokenizer, template=template, use_chat_template=use_chat_template), target

    def render(r: Row) -> str:
        return render_prompt(format_instruction(task, r, template), tokenizer, use_chat_template=use_chat_template)

    suffix = completion_suffix(tokenizer, use_chat_template=use_chat_template)
    budget = max_tokens - _n_tokens(tokenizer, target + suffix)
    anchor = target if task.type == "qa" else None
    return _fit(task, row, render, tokenizer, budget, anchor=anchor), target


def _n_tokens(tokenizer: Any, text: str) -> int:
    if tokenizer is None or not hasattr(tokenizer, "encode"):
        raise InputError("max_tokens needs a tokenizer", field="tokenizer", expected="a tokenizer with encode()")
    return len(tokenizer.encode(text, add_special_tokens=False))


def _window(text: str, n_chars: int, anchor: str | None) -> str:
    """About ``n_chars`` characters of ``text`` cut at spaces: the head, or a window around
    ``anchor`` when it occurs in the text."""
    if n_chars <= 0:
        return ""
    if n_chars >= len(text):
        return text
    pos = text.find(anchor) if anchor else -1
    n_anchor = len(anchor) if anchor else 0
    start = 0
    if pos >= 0:  # centre the window on the answer, clamped to the text
        start = max(0, min(pos + n_anchor // 2 - n_chars // 2, len(text) - n_chars))
    end = start + n_chars
    # Snap inwards to word boundaries so no half words are shown, unless that would cut the
    # anchor or leave nothing.
    if start > 0:
        sp = text.find(" ", start, end)
        if sp >= 0 and (pos < 0 or sp < pos):
            start = sp + 1
    if end < len(text):
        sp = text.rfind(" ", start, end)
        if sp > start and (pos < 0 or sp >= pos + n_anchor):
            end = sp
    return text[start:end].strip()


def _fit(task: Task, row: Row, render: Any, tokenizer: Any, budget: int, *, anchor: str | None) -> str:
    prompt = render(row)
    n = _n_tokens(tokenizer, prompt)
    if n <= budget:
        return prompt
    key = MAIN_FIELD[task.type]
    field_text = str(row[key])
    field_tokens = max(1, _n_tokens(tokenizer, field_text))
    chars_per_token = len(field_text) / field_tokens
    keep_tokens = field_tokens - (n - budget)
    # Characters are a proxy for tokens; shrink until the rendered prompt fits (a few rounds).
    for _ in range(8):
        shorter = dict(row)
        shorter[key] = _window(field_text, int(keep_tokens * chars_per_token), anchor)
        prompt = render(shorter)
        n = _n_tokens(tokenizer, prompt)
        if n <= budget or keep_tokens <= 0:
            return prompt
        keep_tokens -= max(1, n - budget)
    return prompt


def completion_suffix(tokenizer: Any, *, use_chat_template: bool | None = None) -> str:
    """Text that ends an assistant answer, e.g. ``"<|im_end|>"`` for ChatML templates.

    Found by rendering a conversation with a marker answer and taking what the template writes
    after it (trailing whitespace dropped); falls back to the tokenizer's EOS token, or "".
    """
    eos = getattr(tokenizer, "eos_token", None) or ""
    if use_chat_template is not False and tokenizer is not None and has_chat_template(tokenizer):
        try:
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": "x"}, {"role": "assistant", "content": _MARKER}],
                tokenize=False,
            )
        except Exception:
            text = None
        if isinstance(text, str) and _MARKER in text:
            tail = text.split(_MARKER, 1)[1].rstrip()
            if tail:
                return tail
    return eos
