"""NAME=VALUE assignments: one set of rules for every command-line assignment."""

from __future__ import annotations

import pytest

from staytuned._util.parse import parse_assignments, parse_number, parse_value, split_items
from staytuned.errors import InputError


@pytest.mark.parametrize(("text", "value"), [
    ("3", 3), ("-2", -2), ("1e-4", 1e-4), ("0.5", 0.5), (" cosine ", "cosine"),
    ("true", True), ("False", False), ("null", None), ("None", None),
    ("'3'", "3"), ('"a,b"', "a,b"), ('"true"', "true"), ("", ""),
])
def test_values_are_typed(text, value):
    got = parse_value(text)
    assert got == value and type(got) is type(value)


def test_numbers_only_for_cells():
    assert parse_number("true") == "true"
    assert parse_number(" 8 ") == 8
    assert parse_number("2.0") == 2.0


def test_commas_and_repeated_items():
    assert parse_assignments("lr=1e-4, epochs=3") == {"lr": 1e-4, "epochs": 3}
    assert parse_assignments(["lr=1e-4", "epochs=3,seed=1"]) == {"lr": 1e-4, "epochs": 3, "seed": 1}
    assert parse_assignments(None) == {} and parse_assignments("") == {}
    assert parse_assignments(["a=1", "a=2"]) == {"a": 2}  # the last one wins


def test_quotes_keep_commas_and_split_false_keeps_them_raw():
    assert parse_assignments('modules="q_proj,v_proj",r=8') == {"modules": "q_proj,v_proj", "r": 8}
    assert parse_assignments(["modules=q_proj,v_proj"], split=False) == {"modules": "q_proj,v_proj"}
    assert split_items("stop=it's,top_p=0.9") == ["stop=it's", "top_p=0.9"]


def test_aliases_multi_and_raw():
    assert parse_assignments("lr=0.1", aliases={"lr": "learning_rate"}) == {"learning_rate": 0.1}
    got = parse_assignments("stop= ###,stop=3,temperature=0", multi={"stop"}, raw={"stop"})
    assert got == {"stop": [" ###", "3"], "temperature": 0}


@pytest.mark.parametrize("bad", ["lr", "=3", "lr=1,oops"])
def test_a_bad_item_is_named(bad):
    with pytest.raises(InputError, match="expected NAME=VALUE") as exc:
        parse_assignments(bad, field="set", expected="e.g. lr=1e-4")
    assert exc.value.field == "set"
    assert exc.value.value in (bad, "oops")
    assert "e.g. lr=1e-4" in str(exc.value)
