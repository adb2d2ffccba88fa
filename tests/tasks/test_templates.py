"""Templates: instruction prompts, chat templates vs plain fallback, overrides, label targets."""

from __future__ import annotations

import pytest

from staytuned.errors import InputError
from staytuned.tasks import Task, load_task
from staytuned.tasks.templates import (
    DEFAULT_TEMPLATES,
    PLAIN_FORMAT,
    build_chat_example,
    build_prompt,
    completion_suffix,
    format_instruction,
    target_strings,
    target_text,
    validate_template,
)

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _tokenizer(chat_template: str | None):
    """A real (tiny, offline) transformers tokenizer, with or without a chat template."""
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "<|im_start|>": 1, "<|im_end|>": 2, "</s>": 3}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    eos = "<|im_end|>" if chat_template else "</s>"
    t = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token=eos)
    t.chat_template = chat_template
    return t


def _cls_task(**kw) -> Task:
    rows = [{"text": "great film", "label": "positive"}, {"text": "dull", "label": "negative"}]
    return Task(name="toy", type="classification", splits={"train": rows}, labels=["negative", "positive"], **kw)


def test_classification_prompt_lists_labels_and_target_is_label() -> None:
    task = _cls_task()
    row = task.split("train")[0]
    prompt, target = build_chat_example(task, row, None)
    instruction = (
        "Classify the text into exactly one of these labels: negative, positive.\n\n"
        "Text: great film\n\nAnswer with the label only."
    )
    assert prompt == f"### Instruction:\n{instruction}\n\n### Response:\n"
    assert target == "positive"
    assert target_strings(task) == ["negative", "positive"]


def test_summarization_and_qa_targets() -> None:
    summ = load_task("scitldr")
    row = summ.split("validation")[0]
    prompt, target = build_chat_example(summ, row)
    assert target == row["summary"] and row["document"] in prompt and row["summary"] not in prompt
    qa = load_task("squad")
    row = qa.split("validation")[0]
    prompt, target = build_chat_example(qa, row)
    assert target == row["answers"][0] and row["context"] in prompt and row["question"] in prompt
    with pytest.raises(InputError, match="classification"):
        target_strings(qa)


def test_chat_template_is_used_when_the_tokenizer_has_one() -> None:
    tok = _tokenizer(CHATML)
    task = _cls_task()
    row = task.split("train")[1]
    prompt, target = build_chat_example(task, row, tok)
    instruction = format_instruction(task, row)
    assert prompt == f"<|im_start|>user\n{instruction}<|im_end|>\n<|im_start|>assistant\n"
    assert target == "negative"
    # prompt + target + suffix is exactly the rendered two-turn conversation
    full = tok.apply_chat_template(
        [{"role": "user", "content": instruction}, {"role": "assistant", "content": target}], tokenize=False
    )
    assert prompt + target + completion_suffix(tok) == full.rstrip()
    assert completion_suffix(tok) == "<|im_end|>"
    # forcing the plain format
    assert build_prompt(task, row, tok, use_chat_template=False) == PLAIN_FORMAT.format(instruction=instruction)


def test_plain_fallback_without_chat_template_or_with_a_broken_one() -> None:
    task = _cls_task()
    row = task.split("train")[0]
    plain = PLAIN_FORMAT.format(instruction=format_instruction(task, row))
    tok = _tokenizer(None)
    assert build_prompt(task, row, tok) == plain
    assert completion_suffix(tok) == "</s>"
    broken = _tokenizer("{{ raise_exception('system message required') }}")
    assert build_prompt(task, row, broken) == plain
    assert completion_suffix(broken) == "<|im_end|>"  # falls back to the EOS token
    assert completion_suffix(None) == ""


def test_template_override_on_task_and_per_call() -> None:
    task = _cls_task(template="Review: {text}\nOne of [{labels}]?")
    row = task.split("train")[0]
    assert format_instruction(task, row) == "Review: great film\nOne of [negative, positive]?"
    assert format_instruction(task, row, "{task}: {text} {{braces}}") == "toy: great film {braces}"
    loaded = load_task("sst2", template="Sentiment of: {text}")
    assert build_prompt(loaded, loaded.split("test")[0]).startswith("### Instruction:\nSentiment of: ")


@pytest.mark.parametrize(
    "kind,template,match",
    [
        ("classification", "Text: {text} gold: {label}", r"unknown template field \{label\}"),
        ("summarization", "{text}", r"unknown template field \{text\}"),
        ("qa", "{context} {answers}", r"unknown template field \{answers\}"),
        ("qa", "{context} {", "does not parse"),
        ("qa", "{0} {context}", "must be named"),
    ],
)
def test_bad_templates_are_rejected_with_the_field(kind: str, template: str, match: str) -> None:
    with pytest.raises(InputError, match=match):
        validate_template(kind, template)


def test_bad_template_rejected_at_load_and_at_call() -> None:
    with pytest.raises(InputError, match=r"\{summary\}"):
        load_task("scitldr", template="{document} -> {summary}")
    task = _cls_task()
    with pytest.raises(InputError, match=r"\{document\}"):
        format_instruction(task, task.split("train")[0], "{document}")
    task.template = "{text} {label}"  # set after loading: still caught when used
    with pytest.raises(InputError, match=r"\{label\}"):
        build_prompt(task, task.split("train")[0])


def test_default_templates_are_valid_and_cover_all_types() -> None:
    assert set(DEFAULT_TEMPLATES) == {"classification", "summarization", "qa"}
    for kind, template in DEFAULT_TEMPLATES.items():
        validate_template(kind, template)


def test_target_text_per_type() -> None:
    assert target_text(_cls_task(), {"text": "x", "label": "negative"}) == "negative"
    qa = Task(name="q", type="qa", splits={})
    assert target_text(qa, {"context": "c", "question": "q", "answers": ["first", "second"]}) == "first"


def _count(tok, text: str) -> int:
    return len(tok.encode(text, add_special_tokens=False))


def test_max_tokens_shortens_the_text_field_from_its_end() -> None:
    tok = _tokenizer(CHATML)  # whitespace word-level: one token per word or punctuation run
    words = [f"w{i}" for i in range(100)]
    task = _cls_task()
    row = {"text": " ".join(words), "label": "positive"}
    full, target = build_chat_example(task, row, tok)
    assert _count(tok, full) > 100
    prompt, target = build_chat_example(task, row, tok, max_tokens=60)
    assert _count(tok, prompt + target + completion_suffix(tok)) <= 60
    assert "w0 w1 w2" in prompt and "w99" not in prompt and target == "positive"
    assert "exactly one of these labels: negative, positive." in prompt  # instruction untouched
    assert prompt.endswith("<|im_start|>assistant\n")
    # nothing to do when it already fits
    assert build_chat_example(task, row, tok, max_tokens=1000) == (full, target)


def test_max_tokens_keeps_the_qa_answer_in_the_context_window() -> None:
    tok = _tokenizer(CHATML)
    context = " ".join(f"w{i}" for i in range(200)) + " the answer is Zanzibar ."
    task = Task(name="q", type="qa", splits={})
    row = {"context": context, "question": "Where ?", "answers": ["Zanzibar"]}
    prompt, target = build_chat_example(task, row, tok, max_tokens=50)
    assert _count(tok, prompt + target + completion_suffix(tok)) <= 50
    assert "Zanzibar" in prompt and "w0 " not in prompt and "Question: Where ?" in prompt
    # build_prompt (evaluation) never looks at the answer: it keeps the head
    eval_prompt = build_prompt(task, row, tok, max_tokens=50)
    assert _count(tok, eval_prompt) <= 50 and "w0 w1" in eval_prompt and "Zanzibar" not in eval_prompt


def test_max_tokens_unfittable_and_without_tokenizer() -> None:
    tok = _tokenizer(CHATML)
    task = _cls_task()
    row = {"text": "one two three", "label": "negative"}
    prompt, _ = build_chat_example(task, row, tok, max_tokens=5)  # the instruction alone is longer
    assert "Text: \n" in prompt  # the field was emptied; the caller must truncate the rest
    with pytest.raises(InputError, match="needs a tokenizer"):
        build_chat_example(task, row, None, max_tokens=50)
