"""Accuracy of a compiled model on a dataset, per sample, with all infer requests busy."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import openvino as ov

from .datasets import Dataset
from .metrics import Metric, metric_error
from .problems import Cancelled, CalibrationError, Problem

Progress = Callable[[float], None]


@dataclass
class Evaluation:
    accuracy: float
    scores: np.ndarray                      # per sample, in `indices` order
    references: list = field(default_factory=list)  # metric.reference() of each output


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
    scores = np.zeros(n, dtype=np.float64)
    refs: list = [None] * n
    done = [0]
    failed: list[tuple[int, Exception]] = []  # the first metric error, with the sample's slot

    def on_done(request: ov.InferRequest, slot: int) -> None:
        if failed:
            return
        out = request.get_output_tensor(output).data
        i = indices[slot]
        ref = references[slot] if references is not None else None
        try:
            scores[slot] = metric.score(out, dataset.label(i), ref)
            refs[slot] = metric.reference(out)
        except Exception as exc:  # noqa: BLE001  (escaping an OpenVINO callback, it aborts the process)
            failed.append((slot, exc))
            return
        done[0] += 1

    queue = ov.AsyncInferQueue(compiled)
    queue.set_callback(on_done)
    step = max(1, n // 50)
    try:
        for slot, i in enumerate(indices):
            if cancel and cancel():
                raise Cancelled()
            if failed:
                break
            # share_inputs=False: the queue must not keep a view of a cached sample it may overwrite.
            queue.start_async(dataset.load(i), userdata=slot, share_inputs=False)
            if progress and slot % step == 0:
                progress(done[0] / n)
    finally:
        queue.wait_all()
    if failed:
        slot, exc = failed[0]
        raise CalibrationError(metric_error(metric, dataset.entries[indices[slot]].source, exc)) from None
    if progress:
        progress(1.0)
    if done[0] != n:  # a callback that raised is reported by OpenVINO only as a log line
        raise CalibrationError(Problem(f"inference finished {done[0]} of {n} samples"))
    return Evaluation(metric.aggregate(scores), scores, refs)
