"""Exceptions. Every user-facing error says what was wrong, where, and what was expected."""

from __future__ import annotations


class StaytunedError(Exception):
    """Base class of every error staytuned raises on purpose (the CLI exits 2 on these)."""


class InputError(StaytunedError, ValueError):
    """Bad user input: a file, a column, a row, a flag or a config value.

    ``where`` names the place (file, row, column, field); ``expected`` says what would be valid.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        row: int | None = None,
        column: str | None = None,
        field: str | None = None,
        value: object = None,
        expected: str | None = None,
    ) -> None:
        self.file, self.row, self.column, self.field = file, row, column, field
        self.value, self.expected = value, expected
        parts = []
        if file is not None:
            parts.append(f"{file}")
        if row is not None:
            parts.append(f"row {row}")
        if column is not None:
            parts.append(f"column {column!r}")
        if field is not None:
            parts.append(f"field {field!r}")
        where = ", ".join(parts)
        text = f"{where}: {message}" if where else message
        if value is not None:
            text += f" (got {value!r})"
        if expected:
            text += f"; expected {expected}"
        super().__init__(text)


class StorageError(StaytunedError):
    """A storage URL that cannot be opened or used."""


class DependencyError(StaytunedError, ImportError):
    """An optional dependency is missing; the message names the pip extra to install."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the '{package}' package: pip install 'staytuned[{extra}]'"
        )
