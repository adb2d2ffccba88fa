"""The configs x datasets score matrix that every CBS computation and strategy works on."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from staytuned.errors import InputError
from staytuned.results.columns import DIRECTIONS, check_direction, parse_assignment

__all__ = ["ScoreMatrix"]


@dataclass(frozen=True)
class ScoreMatrix:
    """Scores of configs (rows) on datasets (columns): the input of every CBS computation.

    Attributes:
        config_ids: one id per row (natural order breaks ranking ties: ``c2`` before ``c10``).
        datasets: one name per column.
        scores: float array (n_configs, n_datasets) of raw scores, seeds already aggregated;
            NaN where the cell is missing (never run) or failed.
        failed: bool array, True where every run of the cell failed (counts as the worst).
        directions: per dataset, ``"max"`` (higher is better) or ``"min"``.
        hps: per config, its HP dict (``{}`` when only ids are known).
        groups: per dataset, a group label for leave-one-group-out (or None).
        metrics: per dataset, the metric name (or None).
        notes: things the user should know (dropped datasets, missing cells ...).

    Derived (cached): ``missing``, ``signed`` (higher is better everywhere), ``direction``.
    Treat instances as immutable (the caches assume it). What CBS makes of the scores
    (normalized scores, which configs cover which datasets) is in :mod:`staytuned.cbs.ranking`.
    """

    config_ids: tuple[str, ...]
    datasets: tuple[str, ...]
    scores: np.ndarray
    failed: np.ndarray
    directions: tuple[str, ...]
    hps: tuple[dict[str, Any], ...]
    groups: tuple[str | None, ...] | None = None
    metrics: tuple[str | None, ...] | None = None
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n, m = len(self.config_ids), len(self.datasets)
        if self.scores.shape != (n, m) or self.failed.shape != (n, m):
            raise InputError(
                "score matrix shape does not match its ids",
                value=self.scores.shape,
                expected=f"({n}, {m}) for {n} configs x {m} datasets",
            )
        if len(self.directions) != m or any(d not in DIRECTIONS for d in self.directions):
            raise InputError("bad directions", value=self.directions, expected="'max' or 'min' per dataset")
        if len(set(self.config_ids)) != n:
            raise InputError("config ids must be unique", field="config_ids")
        if len(set(self.datasets)) != m:
            raise InputError("dataset names must be unique", field="datasets")

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def from_dense(
        cls,
        scores: ArrayLike,
        *,
        config_ids: Sequence[str] | None = None,
        datasets: Sequence[str] | None = None,
        direction: str | Sequence[str] = "max",
        hps: Sequence[Mapping[str, Any]] | None = None,
        failed: ArrayLike | None = None,
        groups: Sequence[str | None] | None = None,
    ) -> ScoreMatrix:
        """Build from a 2-D array (configs x datasets); NaN = missing unless ``failed`` says so.

        Ids default to ``c1..cN`` and ``d1..dM``; ``direction`` is one value or one per dataset.
        """
        arr = np.array(scores, dtype=float, copy=True)
        if arr.ndim != 2:
            raise InputError("scores must be 2-D (configs x datasets)", value=arr.shape)
        n, m = arr.shape
        ids = tuple(str(c) for c in config_ids) if config_ids is not None else tuple(f"c{i + 1}" for i in range(n))
        ds = tuple(str(d) for d in datasets) if datasets is not None else tuple(f"d{j + 1}" for j in range(m))
        dirs = (direction,) * m if isinstance(direction, str) else tuple(direction)
        for d in dirs:
            check_direction(d)
        fail = np.zeros((n, m), bool) if failed is None else np.array(failed, dtype=bool)
        arr[fail] = np.nan
        return cls(
            config_ids=ids,
            datasets=ds,
            scores=arr,
            failed=fail,
            directions=dirs,
            hps=tuple(dict(h) for h in hps) if hps is not None else tuple({} for _ in range(n)),
            groups=tuple(groups) if groups is not None else None,
        )

    # -- derived views ----------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return self.scores.shape

    @cached_property
    def missing(self) -> np.ndarray:
        """True where the config was never run on the dataset."""
        out: np.ndarray = np.isnan(self.scores) & ~self.failed
        return out

    @cached_property
    def signed(self) -> np.ndarray:
        """Raw scores flipped so higher is better everywhere (NaN for missing and failed)."""
        sign = np.array([1.0 if d == "max" else -1.0 for d in self.directions])
        out: np.ndarray = self.scores * sign[None, :]
        return out

    @property
    def direction(self) -> str:
        """The common direction, or ``"mixed"`` when datasets differ."""
        dirs = set(self.directions)
        return dirs.pop() if len(dirs) == 1 else "mixed"

    def subset(self, configs: ArrayLike | None = None, datasets: ArrayLike | None = None) -> ScoreMatrix:
        """Rows/columns by index arrays, bool masks or names."""
        ci = self._index(configs, self.config_ids)
        di = self._index(datasets, self.datasets)
        return ScoreMatrix(
            config_ids=tuple(self.config_ids[i] for i in ci),
            datasets=tuple(self.datasets[j] for j in di),
            scores=self.scores[np.ix_(ci, di)],
            failed=self.failed[np.ix_(ci, di)],
            directions=tuple(self.directions[j] for j in di),
            hps=tuple(self.hps[i] for i in ci),
            groups=tuple(self.groups[j] for j in di) if self.groups is not None else None,
            metrics=tuple(self.metrics[j] for j in di) if self.metrics is not None else None,
            notes=self.notes,
        )

    @staticmethod
    def _index(sel: ArrayLike | None, names: tuple[str, ...]) -> np.ndarray:
        if sel is None:
            return np.arange(len(names))
        arr = np.asarray(sel)
        if arr.dtype == bool:
            return np.flatnonzero(arr)
        if arr.dtype.kind in "iu":
            return arr.astype(int)
        pos = {n: i for i, n in enumerate(names)}
        missing = [s for s in arr.tolist() if s not in pos]
        if missing:
            raise InputError("unknown names", value=missing[:5], expected=f"some of {list(names)[:10]}")
        return np.array([pos[s] for s in arr.tolist()], dtype=int)

    def config_index(self, ref: str) -> int:
        """Index of a config given by id (``c3``) or HP assignment (``lr=1e-4,epochs=3``)."""
        if ref in self.config_ids:
            return self.config_ids.index(ref)
        want = parse_assignment(ref)
        matches = [i for i, h in enumerate(self.hps) if _hp_match(h, want)]
        if len(matches) != 1:
            shown = ", ".join(self.config_ids[:8])
            raise InputError(
                f"{'no' if not matches else len(matches)} configs match",
                field="default config",
                value=ref,
                expected=f"a config id (e.g. {shown}) or HP assignment matching exactly one config",
            )
        return matches[0]


def _hp_match(hps: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    """True when ``hps`` holds every value of ``want`` (numbers compared with a 1e-9 tolerance)."""
    for key, val in want.items():
        have = hps.get(key, hps.get(f"hp_{key}"))
        if have is None and key.startswith("hp_"):
            have = hps.get(key[3:])
        if have is None:
            return False
        if isinstance(have, int | float) and isinstance(val, int | float):
            if not math.isclose(float(have), float(val), rel_tol=1e-9):
                return False
        elif str(have) != str(val):
            return False
    return True
