"""Accuracy of a compiled model on a dataset, per sample, with all infer requests busy.

OpenVINO's callbacks only copy each output into a reorder buffer keyed by the sample's slot; the
calling thread scores the buffer's contiguous slots in dataset order while it submits, and the rest at
the end. So every metric (built-in or a user's, per sample or dataset level) runs on one thread, in
order, on an output of its own that it may keep, and a metric that raises ends the run with a located
problem instead of escaping a callback (which aborts the process).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import openvino as ov

from .custom_metrics import sample_of
from .datasets import Dataset
from .metrics import Metric, metric_error
from .problems import Cancelled, CalibrationError, Problem

Progress = Callable[[float], None]

WINDOW = 4        # outputs submitted but not yet scored, per infer request: the reorder buffer's bound
WAIT_S = 1.0      # then the queue is drained: a failed inference never calls back, so its slot never comes


@dataclass
class Evaluation:
    accuracy: float
    scores: np.ndarray | None   # per sample in `indices` order: a score (n,), or (numerator, denominator)
                                # pairs (n, 2); None when the metric gives none (no interval then)
    references: list = field(default_factory=list)  # metric.reference() of each output
    warnings: list[Problem] = field(default_factory=list)

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


class Reorder:
    """Outputs by slot, filled by the callbacks and taken in slot order by the calling thread."""

    def __init__(self):
        self.ready: dict[int, np.ndarray | BaseException] = {}
        self.arrived = threading.Condition()

    def put(self, slot: int, value) -> None:
        with self.arrived:
            self.ready[slot] = value
            self.arrived.notify()

    def take(self, slot: int, wait: float = 0.0):
        """The output of `slot` (None when it has not come within `wait` seconds)."""
        with self.arrived:
            if wait:
                self.arrived.wait_for(lambda: slot in self.ready, wait)
            return self.ready.pop(slot, None)


def evaluate(compiled: ov.CompiledModel, dataset: Dataset, indices: list[int], metric: Metric, *,
             output: int = 0, references: list | None = None, progress: Progress | None = None,
             cancel: Callable[[], bool] | None = None) -> Evaluation:
    """Runs every sample once; `references` (from the FP32 run) feed label-free metrics."""
    n = len(indices)
    tally = metric.tally(n)
    buffer = Reorder()
    scored = [0]  # slots scored so far: the next one to score

    def on_done(request: ov.InferRequest, slot: int) -> None:
        try:  # a copy: the request's buffer is overwritten by its next inference
            buffer.put(slot, np.array(request.get_output_tensor(output).data, copy=True))
        except BaseException as exc:  # noqa: BLE001  (escaping an OpenVINO callback, it aborts the process)
            buffer.put(slot, exc)

    def score(until: int) -> None:
        """Scores the contiguous ready slots; waits for those below `until`."""
        while scored[0] < n:
            slot = scored[0]
            out = buffer.take(slot, WAIT_S if slot < until else 0.0)
            if out is None and slot < until:
                queue.wait_all()
                out = buffer.take(slot)
            if out is None:
                return
            source = dataset.entries[indices[slot]].source
            if isinstance(out, BaseException):
                raise CalibrationError(Problem(f"cannot read the output of sample {source}: {out}"))
            try:
                tally.add(slot, out, sample_of(dataset, indices[slot]),
                          references[slot] if references is not None else None)
            except Exception as exc:  # noqa: BLE001  (the metric's own error, located in its file)
                raise CalibrationError(metric_error(metric, exc, f"on sample {source}")) from None
            scored[0] += 1
            if progress and scored[0] % step == 0:
                progress(scored[0] / n)

    queue = ov.AsyncInferQueue(compiled)
    queue.set_callback(on_done)
    window = WINDOW * len(queue)
    step = max(1, n // 50)
    try:
        for slot, i in enumerate(indices):
            if cancel and cancel():
                raise Cancelled()
            score(slot - window + 1)
            # share_inputs=False: the queue must not keep a view of a cached sample it may overwrite.
            queue.start_async(dataset.load(i), userdata=slot, share_inputs=False)
    finally:
        queue.wait_all()
    score(n)
    if scored[0] != n:  # an inference that failed is reported by OpenVINO only as a log line
        raise CalibrationError(Problem(f"inference finished {scored[0]} of {n} samples"))
    tallied = tally.finish()
    if progress:
        progress(1.0)
    return Evaluation(tallied.accuracy, tallied.scores, tallied.references, tallied.warnings)
