"""Accuracy of a compiled model on a dataset, per sample, with all infer requests busy.

The requests take samples in turn (sample k goes to request k mod R), so the oldest request in flight
is always the next sample to score: the calling thread waits for it, copies its output and scores it,
then gives the request the next sample. Every metric (built-in or a user's, per sample or dataset
level) thus runs on one thread, in dataset order, on an output of its own that it may keep. No Python
callback is handed to OpenVINO: a callback's last reference can be dropped on an OpenVINO thread,
which then needs the interpreter lock while this thread, freeing the compiled model, waits for that
thread to end (a deadlock seen after a raising metric). A failed inference raises from `wait()` and is
reported with its sample; a metric that raises ends the run with a located problem.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import openvino as ov

from .custom_metrics import sample_of
from .datasets import Dataset
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
             cancel: Callable[[], bool] | None = None) -> Evaluation:
    """Runs every sample once; `references` (from the FP32 run) feed label-free metrics."""
    n = len(indices)
    tally = metric.tally(n)
    requests = [compiled.create_infer_request() for _ in range(in_flight(compiled))]
    step = max(1, n // 50)

    def finish(slot: int) -> None:
        """Waits for `slot`'s inference and scores it (slots finish in order)."""
        request, source = requests[slot % len(requests)], dataset.entries[indices[slot]].source
        try:
            request.wait()
            out = np.array(request.get_output_tensor(output).data, copy=True)  # the request is reused
        except RuntimeError as exc:
            raise CalibrationError(Problem(f"inference failed on sample {source}: {exc}")) from None
        try:
            tally.add(slot, out, sample_of(dataset, indices[slot]),
                      references[slot] if references is not None else None)
        except Exception as exc:  # noqa: BLE001  (the metric's own error, located in its file)
            raise CalibrationError(metric_error(metric, exc, f"on sample {source}")) from None
        if progress and (slot + 1) % step == 0:
            progress((slot + 1) / n)

    started = 0
    try:
        for slot, i in enumerate(indices):
            if cancel and cancel():
                raise Cancelled()
            if slot >= len(requests):
                finish(slot - len(requests))
            # share_inputs=False: the request must not keep a view of a cached sample that may be overwritten.
            requests[slot % len(requests)].start_async(dataset.load(i), share_inputs=False)
            started = slot + 1
        for slot in range(max(0, n - len(requests)), n):
            finish(slot)
    except BaseException:
        quiesce(requests[:started])
        raise
    tallied = tally.finish()
    if progress:
        progress(1.0)
    return Evaluation(tallied.accuracy, tallied.scores, tallied.references, tallied.warnings)


def in_flight(compiled: ov.CompiledModel) -> int:
    """How many requests keep the device busy (the plugin's own figure)."""
    try:
        return max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
    except RuntimeError:  # a plugin that does not say
        return 2


def quiesce(requests: list[ov.InferRequest]) -> None:
    """Lets the requests still running end before the error travels up (they read our inputs)."""
    for request in requests:
        try:
            request.wait()
        except RuntimeError:  # its failure is not the error being reported
            pass
