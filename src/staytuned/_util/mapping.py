"""YAML/JSON files that hold a mapping (configs, spaces, recommendations), read one way.

``.json`` files are read as JSON, everything else as YAML. Every failure is an
:class:`~staytuned.errors.InputError` that names the file: missing, a folder, unreadable, not
valid JSON/YAML (one line: the problem and where), or not a mapping.
"""

from __future__ import annotations

import json
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from staytuned.errors import InputError

__all__ = ["load_data", "parse_text", "read_mapping"]

Source = str | Path | Traversable


def parse_text(text: str, *, name: str, json_format: bool = False) -> Any:
    """Parse ``text`` as JSON or YAML; an error names the file ``name`` in one line."""
    if json_format:
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                             file=name) from None
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise InputError(f"not valid YAML: {problem}{where}", file=name) from None


def load_data(source: Source, *, what: str = "file", name: str | None = None,
              expected: str | None = None) -> Any:
    """The parsed content of a JSON or YAML file (any type; None for an empty YAML file).

    ``what`` says what the file is in messages ("config file"); ``name`` how to call it there
    (default: the path); ``expected`` what a valid file would be, for a missing one.
    """
    path = Path(source) if isinstance(source, str) else source
    label = name or str(source)
    if not path.is_file():
        if path.is_dir():
            raise InputError(f"the {what} is a folder", file=label, expected=expected or "a file")
        raise InputError(f"{what} not found", file=label, expected=expected)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read the {what}: {exc.strerror or exc}", file=label) from None
    except UnicodeDecodeError:
        raise InputError(f"cannot read the {what}: not UTF-8 text", file=label) from None
    return parse_text(text, name=label, json_format=path.name.lower().endswith(".json"))


def read_mapping(source: Source, *, what: str = "file", name: str | None = None,
                 expected: str | None = None, unwrap: str | None = None,
                 allow_empty: bool = False) -> dict[str, Any]:
    """The mapping a JSON or YAML file holds, as a new dict.

    ``unwrap="config"`` also accepts the mapping under a top-level ``config:`` key (a file that
    wraps the config, such as a trial record); a dotted path (``"best.config"``) looks deeper.
    ``allow_empty`` reads an empty file as ``{}``. ``expected`` describes a valid mapping for
    the error on anything else.
    """
    data = load_data(source, what=what, name=name)
    if data is None and allow_empty:
        return {}
    if unwrap is not None:
        inner = data
        for key in unwrap.split("."):
            inner = inner.get(key) if isinstance(inner, dict) else None
        if isinstance(inner, dict):
            data = inner
    if not isinstance(data, dict):
        raise InputError(f"the {what} must hold a mapping", file=name or str(source),
                         value=type(data).__name__, expected=expected)
    return dict(data)
