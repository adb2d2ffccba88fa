"""ScoreMatrix: construction, validation, views and config lookup by id or HP assignment."""

from __future__ import annotations

import math

import numpy as np
import pytest

from staytuned.errors import InputError
from staytuned.results import ScoreMatrix

NAN = math.nan


def test_from_dense_defaults_and_failed_cells() -> None:
    m = ScoreMatrix.from_dense([[0.5, 2.0], [0.7, NAN]], direction=["max", "min"], failed=[[1, 0], [0, 0]])
    assert m.config_ids == ("c1", "c2") and m.datasets == ("d1", "d2") and m.shape == (2, 2)
    assert math.isnan(m.scores[0, 0])  # a failed cell has no score
    assert m.failed.tolist() == [[True, False], [False, False]]
    assert m.missing.tolist() == [[False, False], [False, True]]
    assert m.direction == "mixed"
    # higher is better everywhere: the "min" dataset is flipped
    assert m.signed[0, 1] == -2.0 and m.signed[1, 0] == 0.7


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"scores": [1.0, 2.0]}, "2-D"),
     ({"scores": [[1.0], [2.0]], "config_ids": ["a", "a"]}, "unique"),
     ({"scores": [[1.0, 2.0]], "datasets": ["x", "x"]}, "unique"),
     ({"scores": [[1.0]], "direction": "up"}, "direction")],
)
def test_bad_matrices(kwargs: dict, match: str) -> None:
    scores = kwargs.pop("scores")
    with pytest.raises(InputError, match=match):
        ScoreMatrix.from_dense(scores, **kwargs)


def test_subset_by_names_masks_and_indices() -> None:
    m = ScoreMatrix.from_dense(np.arange(6.0).reshape(3, 2), groups=["g1", "g2"])
    by_name = m.subset(configs=["c3", "c1"], datasets=["d2"])
    assert by_name.config_ids == ("c3", "c1") and by_name.scores[:, 0].tolist() == [5.0, 1.0]
    assert by_name.groups == ("g2",)
    assert m.subset(configs=np.array([False, True, False])).config_ids == ("c2",)
    assert m.subset(datasets=np.array([1])).datasets == ("d2",)
    with pytest.raises(InputError, match="unknown names"):
        m.subset(configs=["c9"])


def test_config_index_by_id_or_hp_assignment() -> None:
    hps = [{"learning_rate": 1e-4, "epochs": 3}, {"learning_rate": 1e-5, "epochs": 3}]
    m = ScoreMatrix.from_dense([[0.1], [0.2]], hps=hps)
    assert m.config_index("c2") == 1
    assert m.config_index("lr=1e-4,epochs=3") == 0  # aliases and numbers parsed
    with pytest.raises(InputError, match="2 configs match"):
        m.config_index("epochs=3")
    with pytest.raises(InputError, match="no configs match"):
        m.config_index("lr=0.5")
