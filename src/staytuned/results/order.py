"""Natural order of config ids and dataset names: ``c2`` before ``c10``.

Every ranking breaks its last tie by this order, and tables list configs and datasets in it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

__all__ = ["natural_key", "natural_rank"]


def natural_key(text: str) -> tuple[tuple[int, int, str], ...]:
    """Sort key in natural order: ``c2`` before ``c10``."""
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part)
        for part in re.split(r"(\d+)", str(text))
        if part != ""
    )


def natural_rank(config_ids: Sequence[str]) -> np.ndarray:
    """Position of each id in natural sort order (``c2`` before ``c10``)."""
    nat = np.empty(len(config_ids), dtype=np.int64)
    nat[sorted(range(len(config_ids)), key=lambda i: natural_key(config_ids[i]))] = np.arange(len(config_ids))
    return nat
