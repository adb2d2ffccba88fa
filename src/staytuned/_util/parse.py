"""NAME=VALUE assignments, as typed on a command line (``--set``, ``--hp``, inline configs).

The rules, in one place:

* items come one per repeated flag, or several in one string separated by commas (commas inside
  quotes do not separate); ``split=False`` keeps commas in values (``lora_target_modules=q,v``);
* a name may not be empty; a later assignment of a name replaces an earlier one, unless the name
  is in ``multi`` (its values are collected into a list, e.g. several ``stop`` sequences);
* values are typed by :func:`parse_value`; names in ``raw`` keep their text exactly as given;
* a bad item raises :class:`~staytuned.errors.InputError` naming the item and the field.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

from staytuned.errors import InputError

__all__ = ["parse_assignments", "parse_number", "parse_value", "split_items"]

_WORDS: dict[str, Any] = {"true": True, "false": False, "null": None, "none": None}


def parse_number(text: str) -> int | float | str:
    """``"3"`` -> 3, ``"1e-4"`` -> 0.0001, anything else the stripped text (``"cosine"``)."""
    s = text.strip()
    try:
        return int(s)
    except ValueError:
        pass
    try:
        return float(s)
    except ValueError:
        return s


def parse_value(text: str) -> Any:
    """The value of an assignment: a quoted string (``'a,b'`` or ``"3"``) stays text without its
    quotes; true/false are booleans, null/none is None (any case); then int, float, else text."""
    s = text.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'":
        return s[1:-1]
    if s.lower() in _WORDS:
        return _WORDS[s.lower()]
    return parse_number(s)


def split_items(text: str) -> list[str]:
    """Split ``text`` at commas, except inside a value that starts with a quote
    (``modules="q,v"``); a quote inside a value (``stop=it's``) is an ordinary character.
    Empty pieces are dropped."""
    parts: list[str] = []
    current: list[str] = []
    quote = ""
    fresh = True  # nothing but blanks since the start, a comma or an '='
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch == ",":
            parts.append("".join(current))
            current, fresh = [], True
            continue
        elif ch in "\"'" and fresh:
            quote, fresh = ch, False
        elif not ch.isspace():
            fresh = ch == "="
        current.append(ch)
    parts.append("".join(current))
    return [p for p in parts if p.strip()]


def parse_assignments(
    items: str | Iterable[str] | None,
    *,
    field: str | None = None,
    split: bool = True,
    aliases: Mapping[str, str] | None = None,
    multi: Collection[str] = (),
    raw: Collection[str] = (),
    expected: str | None = None,
) -> dict[str, Any]:
    """``"lr=1e-4,epochs=3"`` or ``["lr=1e-4", "epochs=3"]`` -> ``{"lr": 0.0001, "epochs": 3}``.

    ``field`` names the parameter (or flag) the items came from in errors; ``aliases`` maps
    short names to full ones (``{"lr": "learning_rate"}``); ``expected`` is an example for errors.
    """
    if items is None:
        return {}
    pieces: list[str] = []
    for item in [items] if isinstance(items, str) else items:
        pieces.extend(split_items(item) if split else [item])
    out: dict[str, Any] = {}
    for piece in pieces:
        name, eq, value = piece.partition("=")
        name = name.strip()
        if not eq or not name:
            raise InputError("expected NAME=VALUE", field=field, value=piece, expected=expected)
        name = (aliases or {}).get(name, name)
        parsed = value if name in raw else parse_value(value)
        if name in multi:
            out.setdefault(name, []).append(parsed)
        else:
            out[name] = parsed
    return out
