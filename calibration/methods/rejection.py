"""Ending a candidate's validation as soon as it cannot pass any more.

A metric whose per-sample score has a known best value (`Metric.best`: 1.0 for top-k and agreement; a
custom metric may declare it) bounds what the samples not yet run can do: at most, every one of them
scores the best. If the candidate fails the spec's acceptance rule even then, it fails it with the
real scores too, because the acceptance bound (the drop, or its bootstrap upper bound on fixed
draws) only grows as any sample's score falls. So the search takes the same decisions as with full
validations, and a failing candidate costs the few samples that condemn it.

Which samples first: those where FP32 itself is below the best (the candidate could gain there, so
while they are unseen the best case is generous), then those earlier candidates lost (most often
first), then those the all-INT8 model damaged most (where a failing candidate fails), then the rest in
dataset order. A candidate near the budget's edge fails by a sample or two that all-INT8 never lost:
the few fragile samples the search has met so far are where it fails, and they come first.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .. import stats
from ..evaluation import Evaluation
from ..metrics import Metric

# (candidate's evaluation) -> (passes, the drop bound judged): the search's acceptance rule
Judge = Callable[[Evaluation], tuple[bool, float]]


class Rejection:
    """For one search: the order to validate in, and a `hopeless(scores, seen)` test per candidate."""

    def __init__(self, metric: Metric, baseline: Evaluation, first: Evaluation, judge: Judge):
        self.metric, self.judge = metric, judge
        self.best = getattr(metric, "best", None)
        scores = baseline.scores
        usable = (self.best is not None and isinstance(scores, np.ndarray) and scores.ndim == 1
                  and isinstance(first.scores, np.ndarray) and first.scores.shape == scores.shape)
        self._order: list[int] | None = None
        self.fp32 = scores
        if usable:
            short = np.flatnonzero(scores != self.best)
            damage = stats.per_sample_drops(scores, first.scores, metric.higher_is_better)
            damaged = [int(i) for i in np.argsort(-damage, kind="stable") if damage[i] > 0 and scores[i] == self.best]
            rest = sorted(set(range(len(scores))) - set(short.tolist()) - set(damaged))
            self._order = [*short.tolist(), *damaged, *rest]
            self._short = len(short)
            self.lost = np.zeros(len(scores), dtype=np.int64)  # how many candidates lost each sample so far
        self.condemned: tuple[float, float] = (float("nan"), float("nan"))  # the last hopeless candidate's
        # best-case accuracy and drop bound: it is at most that good

    @property
    def order(self) -> list[int] | None:
        """The positions to validate in, for the next candidate."""
        if self._order is None or not self.lost.any():
            return self._order
        head, tail = self._order[:self._short], self._order[self._short:]
        return head + sorted(tail, key=lambda i: -self.lost[i])  # stable: within a count, the first order

    def hopeless(self, scores: np.ndarray, seen: np.ndarray, slot: int) -> bool:
        """Whether the candidate fails even if every unseen sample scores the best. Judged only when
        the sample just scored is below the best (nothing else makes the best case worse)."""
        if scores[slot] == self.best:
            return False
        worse = scores[slot] < self.fp32[slot] if self.metric.higher_is_better else scores[slot] > self.fp32[slot]
        if self._order is not None and worse:
            self.lost[slot] += 1
        best_case = np.where(seen, scores, self.best)
        accuracy = self.metric.aggregate(best_case)
        ok, bound = self.judge(Evaluation(accuracy, best_case))
        if not ok:
            self.condemned = (accuracy, bound)
        return not ok
