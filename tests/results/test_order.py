"""Natural order of ids: the last tie-break of every ranking and the order tables list ids in."""

from __future__ import annotations

import numpy as np

from staytuned.results import natural_key, natural_rank


def test_natural_key_orders_numbers_by_value() -> None:
    assert sorted(["c10", "c2", "c1", "b", "c2a"], key=natural_key) == ["b", "c1", "c2", "c2a", "c10"]


def test_natural_rank_is_the_position_in_natural_order() -> None:
    ranks = natural_rank(["c10", "c2", "c1"])
    assert ranks.dtype == np.int64
    assert ranks.tolist() == [2, 1, 0]
    assert natural_rank([]).tolist() == []
