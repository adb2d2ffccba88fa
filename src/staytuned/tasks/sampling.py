"""Deterministic row selection: stratified subsampling (train size) and carving a split off.

Both work on any sequence of row mappings and depend on nothing but a seed, so a train size or a
carved validation split is the same on every machine.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, TypeVar

from staytuned.errors import InputError

R = TypeVar("R", bound=Mapping[str, Any])


def _check_size(n: int | None) -> None:
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise InputError("sample size must be a positive integer or None (all)", field="size", value=n)


def _proportional_quotas(counts: Mapping[str, int], n: int) -> dict[str, int]:
    """Split ``n`` over groups proportionally to ``counts`` (largest remainder, ties by name).

    Every group gets at least one row when ``n`` allows it, so rare labels are not lost in small
    samples.
    """
    total = sum(counts.values())
    exact = {k: n * c / total for k, c in counts.items()}
    quota = {k: int(v) for k, v in exact.items()}
    rest = n - sum(quota.values())
    for k in sorted(counts, key=lambda k: (-(exact[k] - quota[k]), k))[:rest]:
        quota[k] += 1
    if n >= len(counts):
        for k in sorted(counts):
            if quota[k] == 0:
                # Take the row from the group with the most rows to spare.
                donor = max(sorted(quota), key=lambda d: quota[d] - 1)
                quota[donor] -= 1
                quota[k] = 1
    return quota


def subsample(rows: Sequence[R], n: int | None, seed: int = 0, stratify_by: str | None = "label") -> list[R]:
    """Deterministic sample of ``n`` rows (None or n >= len(rows): all rows, unchanged).

    With ``stratify_by`` (a key present in every row) the sample keeps the label proportions
    (largest-remainder allocation, at least one row per label when n >= number of labels).
    Each group's rows are shuffled once with ``random.Random(seed)`` and the first rows taken, so
    for a fixed seed smaller samples are nested in larger ones up to rounding of the quotas.
    Rows come back in source order.
    """
    _check_size(n)
    if n is None or n >= len(rows):
        return list(rows)
    rng = random.Random(seed)
    if stratify_by and rows and all(stratify_by in r for r in rows):
        groups: dict[str, list[int]] = defaultdict(list)
        for i, r in enumerate(rows):
            groups[str(r[stratify_by])].append(i)
        quota = _proportional_quotas({k: len(v) for k, v in groups.items()}, n)
        chosen: list[int] = []
        for k in sorted(groups):
            idx = list(groups[k])
            rng.shuffle(idx)
            chosen.extend(idx[: quota[k]])
    else:
        idx = list(range(len(rows)))
        rng.shuffle(idx)
        chosen = idx[:n]
    return [rows[i] for i in sorted(chosen)]


def split_off(
    rows: Sequence[R],
    fraction: float,
    seed: int = 0,
    *,
    stratify_by: str | None = None,
    group_by: str | None = None,
) -> tuple[list[R], list[R]]:
    """Split ``rows`` into (kept, carved) with about ``fraction`` of the rows carved.

    - ``stratify_by``: per label (labels in sorted order, one shared ``random.Random(seed)``),
      ``round(fraction * n_label)`` rows are carved, as in ``../shared/datasets``.
    - ``group_by``: whole groups (e.g. all questions on one QA context) go to one side, so no
      context appears in both; groups are shuffled with ``random.Random(seed)`` and taken until
      ``fraction`` of the rows is reached.
    At least one row is carved (and one kept) when there are two rows or more. Both parts keep
    source order.
    """
    if not 0.0 <= fraction < 1.0:
        raise InputError("fraction must be in [0, 1)", field="fraction", value=fraction)
    n = len(rows)
    if n < 2 or fraction == 0.0:
        return list(rows), []
    rng = random.Random(seed)
    carved: set[int] = set()
    if group_by is not None:
        groups: dict[Hashable, list[int]] = {}
        for i, r in enumerate(rows):
            groups.setdefault(r[group_by], []).append(i)
        order = list(groups)
        rng.shuffle(order)
        target = max(1, round(fraction * n))
        for g in order:
            if len(carved) >= target:
                break
            if len(groups) > 1 and len(carved) + len(groups[g]) >= n:
                continue  # never carve everything
            carved.update(groups[g])
    elif stratify_by is not None:
        by_label: dict[str, list[int]] = defaultdict(list)
        for i, r in enumerate(rows):
            by_label[str(r[stratify_by])].append(i)
        for label in sorted(by_label):
            idx = list(by_label[label])
            rng.shuffle(idx)
            carved.update(idx[: round(fraction * len(idx))])
    else:
        idx = list(range(n))
        rng.shuffle(idx)
        carved.update(idx[: round(fraction * n)])
    if not carved:
        carved.add(rng.randrange(n))
    if len(carved) == n:
        carved.discard(max(carved))
    kept = [r for i, r in enumerate(rows) if i not in carved]
    return kept, [r for i, r in enumerate(rows) if i in carved]
