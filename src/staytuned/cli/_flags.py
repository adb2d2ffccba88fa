"""Library errors speak API parameter names; a command renders them as its own flag names."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping

from staytuned.errors import InputError


def render(text: str, flags: Mapping[str, str]) -> str:
    """``text`` with the parameter names it mentions as ``flags`` names (errors, notes).

    A name the library wrote in backticks (`strict`, `ColumnSpec.hps`) is always rewritten; a
    bare name only when it has an underscore: plain words ("workers") also occur in prose.
    """
    for name, flag in flags.items():
        text = text.replace(f"`{name}`", flag)
        if "_" in name:
            text = re.sub(rf"(?<![\w-]){re.escape(name)}(?![\w-])", flag, text)
    return text


def as_flags(exc: InputError, flags: Mapping[str, str]) -> InputError:
    """``exc`` with its field, and the parameter names its text mentions, as ``flags`` names.

    A field of a file (``exc.file`` set) is that file's field, not a parameter: left alone; a
    "file" that is a parameter in ``flags`` (a mapping given in memory, e.g. ``overrides``) is
    renamed. The text is rewritten by :func:`render`.
    """
    text = str(exc)
    file, field = exc.file, exc.field
    if file is not None and file in flags and text.startswith(file):
        text, file = flags[file] + text[len(file):], flags[file]
    elif file is None and field is not None and field in flags:
        text = text.replace(f"field {field!r}", f"field {flags[field]!r}", 1)
        field = flags[field]
    text = render(text, flags)
    out = InputError(text)
    out.file, out.row, out.column, out.field = file, exc.row, exc.column, field
    out.value, out.expected = exc.value, exc.expected
    return out


@contextlib.contextmanager
def flag_names(flags: Mapping[str, str]) -> Iterator[None]:
    """Re-raise the InputErrors of the block with ``flags``' names (see :func:`as_flags`)."""
    try:
        yield
    except InputError as exc:
        raise as_flags(exc, flags) from None
