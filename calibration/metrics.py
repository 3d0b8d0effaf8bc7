"""Accuracy metrics as per-sample scores, so a drop can be traced to the samples that moved."""
from __future__ import annotations

import traceback
from pathlib import Path
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from .gate import worse_by
from .problems import CalibrationError, Problem
from .spec import AccuracySpec

if TYPE_CHECKING:
    from .spec import Spec


class Metric:
    name = ""
    needs_labels = True
    needs_reference = False  # compares with the FP32 model's outputs
    higher_is_better = True
    best: float | None = None  # the best score one sample can have, when there is one (methods/rejection.py)

    def reference(self, output: np.ndarray):
        """The compact part of an FP32 output that later scores compare against."""
        return None

    def score(self, output: np.ndarray, label: int | None, reference) -> float:
        raise NotImplementedError

    @staticmethod
    def aggregate(scores: np.ndarray) -> float:
        return float(np.mean(scores)) if len(scores) else float("nan")

    def tally(self, samples: int) -> "Tally":
        """A fresh accumulator for one evaluation pass over `samples` samples."""
        return ScoreTally(self, samples)


@dataclass
class Tallied:
    """What one evaluation pass adds up to."""
    accuracy: float
    scores: np.ndarray | None   # per sample: a score (n,), or (numerator, denominator) pairs (n, 2); None: none given
    references: list             # metric.reference() of each output
    warnings: list[Problem] = field(default_factory=list)


class Tally(Protocol):
    def add(self, slot: int, output: np.ndarray, sample, reference) -> None: ...
    def finish(self) -> Tallied: ...


class ScoreTally:
    """A per-sample metric's pass: one score per sample (`sample.label` is all it reads), averaged."""

    def __init__(self, metric: Metric, samples: int):
        self.metric = metric
        self.scores = np.zeros(samples, dtype=np.float64)
        self.references: list = [None] * samples

    def add(self, slot: int, output: np.ndarray, sample, reference) -> None:
        self.scores[slot] = self.metric.score(output, sample.label, reference)
        self.references[slot] = self.metric.reference(output)

    def finish(self) -> Tallied:
        return Tallied(self.metric.aggregate(self.scores), self.scores, self.references)


def _class_scores(output: np.ndarray) -> np.ndarray:
    # Classification outputs are [1, C] (or [C]); anything more is flattened per sample.
    return output.reshape(-1)


class TopK(Metric):
    best = 1.0

    def __init__(self, k: int):
        self.k = k
        self.name = "top1" if k == 1 else f"top{k}"

    def score(self, output, label, reference):
        scores = _class_scores(output)
        k = min(self.k, scores.size)
        top = np.argpartition(-scores, k - 1)[:k]
        return float(label in top)


class Agreement(Metric):
    name = "agreement"
    best = 1.0
    needs_labels = False
    needs_reference = True

    def reference(self, output):
        return int(np.argmax(_class_scores(output)))

    def score(self, output, label, reference):
        return float(int(np.argmax(_class_scores(output))) == reference)


def custom_metric_file(spec: "Spec", trusted: bool) -> Path:
    """The custom metric's file, once it is known to be trusted and to exist (CalibrationError
    otherwise): what the checker reports without running anything, and what calibrate imports."""
    acc = spec.accuracy
    if not trusted:
        raise CalibrationError(spec.problem(
            f"custom metric {acc.custom} is Python code from the workspace and is not trusted here",
            "accuracy", "custom", rule="untrusted-metric",
            fix="trust the workspace: `int8wb calibrate --trust`, INT8WB_TRUST=1, or the editor setting "
                "int8wb.trustCustomMetrics"))
    path = spec.resolve(acc.custom.rsplit(":", 1)[0])
    if not path.is_file():
        raise CalibrationError(spec.problem(f"metric file not found: {path}", "accuracy", "custom",
                                            rule="metric-missing"))
    return path


def metric_error(metric: Metric, exc: Exception, where: str) -> Problem:
    """A metric that raised (`where`: "on sample S", "in compute()"), located at the raising line of the
    metric's own file (the innermost frame in it), else unlocated (a built-in metric: a label it cannot
    compare)."""
    path = getattr(metric, "path", None)
    line = None
    if path is not None:
        for frame, number in traceback.walk_tb(exc.__traceback__):
            if Path(frame.f_code.co_filename) == path:
                line = number
    text = str(exc).splitlines()[0] if str(exc) else ""
    return Problem(f"metric {metric.name!r} raised {type(exc).__name__}{': ' + text if text else ''} {where}",
                   path=str(path) if path else None, line=line, rule="metric-error",
                   fix="fix the metric (the sample or step that made it raise is named); nothing was written")


def make_metric(spec: "Spec", trusted: bool = False) -> Metric:
    acc = spec.accuracy
    if acc.metric == "custom":
        from .custom_metrics import load_custom  # it builds on this module's Metric

        return load_custom(spec, trusted)
    if acc.metric in ("iou", "miou", "pixel_accuracy"):
        from .segmentation import Segmentation  # it builds on this module's Metric

        return Segmentation(acc.metric, acc.threshold)
    if acc.metric in ("coco_map", "voc_map50"):
        from .detection import Detection  # it builds on this module's Metric

        return Detection(acc.metric, acc)
    metric = Agreement() if acc.metric == "agreement" else TopK(1 if acc.metric == "top1" else acc.k)
    return metric


def degradation(metric: Metric, fp32: float, int8: float) -> tuple[float, float]:
    """(absolute, relative) accuracy drop; positive means INT8 is worse, whatever the direction."""
    drop = worse_by(fp32, int8, metric.higher_is_better)
    return drop, (drop / abs(fp32) if fp32 else (0.0 if drop == 0 else float("inf")))


def needs_labels(spec: AccuracySpec) -> bool:
    """Whether the metric compares with labels (checked without importing user code)."""
    if spec.metric == "custom":
        return spec.needs_labels
    return spec.metric != "agreement"
