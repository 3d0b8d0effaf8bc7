"""Accuracy of a compiled model on a dataset, per sample, with all infer requests busy.

The requests run in turn (in_turn.py), so every metric (built-in or a user's, per sample or dataset
level) runs on the calling thread, in dataset order, on an output of its own that it may keep. A failed
inference is reported with its sample; a metric that raises ends the run with a located problem.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import openvino as ov

from .custom_metrics import sample_of
from .datasets import Dataset
from .in_turn import InferenceFailed, run_in_turn
from .metrics import Metric, metric_error
from .problems import Cancelled, CalibrationError, Problem

Progress = Callable[[float], None]


@dataclass
class Evaluation:
    accuracy: float
    scores: np.ndarray | None   # per sample in `indices` order: a score (n,), or (numerator, denominator)
                                # pairs (n, 2); None when the metric gives none (no interval then)
    references: list = field(default_factory=list)  # metric.reference() of each output
    warnings: list[Problem] = field(default_factory=list)
    stopped_after: int = 0  # > 0: `hopeless` ended the pass after this many samples (accuracy: NaN)

    @property
    def size(self) -> int:
        """Samples evaluated (with or without per-sample scores)."""
        return len(self.references)


def output_index(compiled: ov.CompiledModel, name: str | None, spec_problem) -> int:
    if name is None:
        return 0
    for i, out in enumerate(compiled.outputs):
        if name in out.get_names():
            return i
    names = [sorted(o.get_names())[0] if o.get_names() else f"#{i}" for i, o in enumerate(compiled.outputs)]
    raise CalibrationError(spec_problem(f"the model has no output {name!r} (outputs: {', '.join(names)})"))


def evaluate(compiled: ov.CompiledModel, dataset: Dataset, indices: list[int], metric: Metric, *,
             output: int = 0, references: list | None = None, progress: Progress | None = None,
             cancel: Callable[[], bool] | None = None, order: list[int] | None = None,
             hopeless: Callable[[np.ndarray, np.ndarray, int], bool] | None = None) -> Evaluation:
    """Runs every sample once; `references` (from the FP32 run) feed label-free metrics. `order`:
    the positions in `indices` to run, in that order (scores stay in `indices` order). A per-sample
    metric's pass asks `hopeless(scores, seen, slot)` after each sample and ends when it says so."""
    n = len(indices)
    order = list(range(n)) if order is None else order
    tally = metric.tally(n)
    step = max(1, n // 50)
    per_sample = getattr(tally, "scores", None) if hopeless else None
    seen = np.zeros(n, dtype=bool)
    stopped = [0]

    def samples():
        for slot in order:
            if cancel and cancel():
                raise Cancelled()
            if stopped[0]:
                return
            yield dataset.load(indices[slot])

    def take(k: int, request: ov.InferRequest) -> None:
        slot = order[k]
        out = np.array(request.get_output_tensor(output).data, copy=True)  # the request is reused
        try:
            tally.add(slot, out, sample_of(dataset, indices[slot]),
                      references[slot] if references is not None else None)
        except Exception as exc:  # noqa: BLE001  (the metric's own error, located in its file)
            source = dataset.entries[indices[slot]].source
            raise CalibrationError(metric_error(metric, exc, f"on sample {source}")) from None
        seen[slot] = True
        if per_sample is not None and not stopped[0] and hopeless(per_sample, seen, slot):
            stopped[0] = k + 1
        if progress and (k + 1) % step == 0:
            progress((k + 1) / n)

    try:
        run_in_turn(compiled, samples(), take)
    except InferenceFailed as exc:
        source = dataset.entries[indices[order[exc.index]]].source
        raise CalibrationError(Problem(f"inference failed on sample {source}: {exc}")) from None
    if stopped[0]:  # requests in flight when it stopped were still scored
        return Evaluation(float("nan"), None, stopped_after=int(seen.sum()))
    tallied = tally.finish()
    if progress:
        progress(1.0)
    return Evaluation(tallied.accuracy, tallied.scores, tallied.references, tallied.warnings)
