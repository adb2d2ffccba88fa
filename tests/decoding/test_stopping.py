"""Stop sequences cut the text exactly before the earliest match."""

from __future__ import annotations

import pytest

from staytuned.decoding.stopping import truncate_at_stop


@pytest.mark.parametrize(
    ("text", "stops", "expected"),
    [
        ("Paris.\nLondon", ["\n"], ("Paris.", "\n")),
        ("a STOP b END c", ["END", "STOP"], ("a ", "STOP")),  # earliest wins, not first listed
        ("no stop here", ["zzz"], ("no stop here", None)),
        ("abcabc", ["bc", "b"], ("a", "bc")),  # same start: longer one reported, same cut
        ("###", ["#"], ("", "#")),
        ("text", [], ("text", None)),
    ],
)
def test_truncate_at_stop(text, stops, expected):
    assert truncate_at_stop(text, stops) == expected


def test_stop_criteria_flags_rows_whose_new_text_holds_a_stop():
    torch = pytest.importorskip("torch")
    from staytuned.decoding.stopping import StopSequenceCriteria
    from staytuned.models import tiny_tokenizer

    tok = tiny_tokenizer()
    prompt = tok("END here", add_special_tokens=False)["input_ids"]  # the prompt has END: ignored
    rows = [prompt + tok(s, add_special_tokens=False)["input_ids"] for s in ("abEND", "abcde")]
    crit = StopSequenceCriteria(tok, ["END"], prompt_length=len(prompt))
    assert crit(torch.tensor(rows), None).tolist() == [True, False]
