"""``zeroshot`` and ``greedy-portfolio``: a static portfolio of past configs enqueued in order.

Built like ``cbs`` (:mod:`.cbs`): the ranked configs are enqueued once under the storage lock,
each claimed atomically by one trial, then RandomSampler takes over. Only the ranking differs:
:func:`staytuned.cbs.portfolios.rank_by` with the strategy's :attr:`ranker` on the offline
table's per-dataset scores (``--cbs-table``). Without a table there are no per-dataset scores
to build a portfolio from: the shipped recommendations are enqueued in their own order, as
``cbs`` does. ``simulate`` replays the same ranking (it reads :attr:`ranker`).
"""

from __future__ import annotations

from typing import Any, ClassVar

from staytuned.search.strategies.base import OfflineSource
from staytuned.search.strategies.cbs import CBS, cbs_queue


class ZeroShot(CBS):
    """Zero-shot portfolio by rank (Wistuba et al. 2015) enqueued in order, then random."""

    name = "zeroshot"
    ranker: ClassVar[str] = "zeroshot"
    distinct = ("the portfolio's configs are enqueued once under the storage lock and each is "
                "claimed atomically by one trial; past the portfolio, as random")

    def initial_queue(self, *, kind: str = "tune") -> list[dict[str, Any]]:
        return cbs_queue(self.portfolio(), self.space, self.context, self.ranked_first)

    def portfolio(self) -> OfflineSource:
        """The offline source ranked by :attr:`ranker` (the table's own order when it has no
        per-dataset scores)."""
        offline = self._offline()
        if offline.matrix is None:
            return offline
        from staytuned.cbs import rank_by

        # Projection into the space can merge configs, so rank them all, not just n_trials.
        ranking = rank_by(offline.matrix, self.ranker)
        return OfflineSource(ranked=tuple(dict(s.hps) for s in ranking.steps), matrix=offline.matrix,
                             provenance=f"{self.ranker} portfolio of {offline.provenance or 'the offline table'}")


class GreedyPortfolio(ZeroShot):
    """Greedy portfolio by normalized score (Auto-sklearn 2.0) enqueued in order, then random."""

    name = "greedy-portfolio"
    ranker: ClassVar[str] = "greedy-portfolio"
