"""Library errors speak API parameter names; a command renders them as its own flag names."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping

from staytuned.errors import InputError


def as_flags(exc: InputError, flags: Mapping[str, str]) -> InputError:
    """``exc`` with its field, and the parameter names its text mentions, as ``flags`` names.

    A field of a file (``exc.file`` set) is that file's field, not a parameter: left alone.
    Only names with an underscore are rewritten in the text: plain words ("workers") would
    also match ordinary prose.
    """
    text = str(exc)
    field = exc.field
    if exc.file is None and field is not None and field in flags:
        text = text.replace(f"field {field!r}", f"field {flags[field]!r}", 1)
        field = flags[field]
    for name, flag in flags.items():
        if "_" in name:
            text = re.sub(rf"(?<![\w-]){re.escape(name)}(?![\w-])", flag, text)
    out = InputError(text)
    out.file, out.row, out.column, out.field = exc.file, exc.row, exc.column, field
    out.value, out.expected = exc.value, exc.expected
    return out


@contextlib.contextmanager
def flag_names(flags: Mapping[str, str]) -> Iterator[None]:
    """Re-raise the InputErrors of the block with ``flags``' names (see :func:`as_flags`)."""
    try:
        yield
    except InputError as exc:
        raise as_flags(exc, flags) from None
