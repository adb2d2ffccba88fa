"""Lazy package attributes: public names resolve to their module on first access.

Why: packages re-export names from modules that import torch or transformers; resolving them
on access keeps ``import staytuned`` and the CBS path of the CLI light.

A package lists each such name once, in its ``if TYPE_CHECKING:`` block: the imports type
checkers read are the table :func:`lazy_imports` resolves names with at run time.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from collections.abc import Callable, Mapping
from typing import Any


def lazy_imports(
    namespace: Mapping[str, Any],
) -> tuple[dict[str, str], Callable[[str], Any], Callable[[], list[str]]]:
    """``(names, __getattr__, __dir__)`` of the package whose ``globals()`` is ``namespace``.

    ``names`` maps each name that a ``from MODULE import NAME`` of the package's
    ``if TYPE_CHECKING:`` block imports to its MODULE; ``__getattr__`` imports it from there on
    first access.
    """
    package = namespace["__name__"]
    source = namespace["__spec__"].loader.get_source(package)
    if source is None:
        raise ImportError(f"{package}: no source to read its lazy names from", name=package)
    names = type_checking_imports(source, package)

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    def __dir__() -> list[str]:
        return sorted([*namespace, *names])

    return names, __getattr__, __dir__


def type_checking_imports(source: str, package: str) -> dict[str, str]:
    """name -> module of the ``from MODULE import NAME`` statements in the ``if TYPE_CHECKING:``
    blocks at the top level of ``source`` (relative modules resolved against ``package``)."""
    names: dict[str, str] = {}
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.If) and _is_type_checking(node.test)):
            continue
        for stmt in node.body:
            if not isinstance(stmt, ast.ImportFrom):
                continue
            module = importlib.util.resolve_name("." * stmt.level + (stmt.module or ""), package)
            for alias in stmt.names:
                if alias.asname not in (None, alias.name):
                    raise ValueError(f"{package}: lazy name {alias.name} imported as {alias.asname}")
                names[alias.name] = module
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
