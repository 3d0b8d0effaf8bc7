"""Accuracy metrics as per-sample scores, so a drop can be traced to the samples that moved."""
from __future__ import annotations

import importlib.util
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

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

    def reference(self, output: np.ndarray):
        """The compact part of an FP32 output that later scores compare against."""
        return None

    def score(self, output: np.ndarray, label: int | None, reference) -> float:
        raise NotImplementedError

    @staticmethod
    def aggregate(scores: np.ndarray) -> float:
        return float(np.mean(scores)) if len(scores) else float("nan")


def _class_scores(output: np.ndarray) -> np.ndarray:
    # Classification outputs are [1, C] (or [C]); anything more is flattened per sample.
    return output.reshape(-1)


class TopK(Metric):
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
    needs_labels = False
    needs_reference = True

    def reference(self, output):
        return int(np.argmax(_class_scores(output)))

    def score(self, output, label, reference):
        return float(int(np.argmax(_class_scores(output))) == reference)


class Custom(Metric):
    """A user's per-sample function `fn(output, label) -> float`, loaded from a file beside the spec."""

    def __init__(self, fn, name: str, higher_is_better: bool, needs_labels: bool, path: Path | None = None):
        self.fn, self.name, self.path = fn, name, path
        self.higher_is_better, self.needs_labels = higher_is_better, needs_labels

    def score(self, output, label, reference):
        return float(self.fn(output, label))


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


def load_custom(spec: "Spec", trusted: bool) -> Custom:
    """Imports `file.py:function` named by the spec; user code runs only when the caller trusts it."""
    acc = spec.accuracy
    path, func = custom_metric_file(spec, trusted), acc.custom.rsplit(":", 1)[1]
    module_spec = importlib.util.spec_from_file_location(f"int8wb_metric_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
        fn = getattr(module, func)
    except Exception as exc:  # user code: report it, located at the spec key
        raise CalibrationError(spec.problem(f"cannot load {acc.custom}: {type(exc).__name__}: {exc}",
                                            "accuracy", "custom", rule="metric-error")) from None
    return Custom(fn, func, acc.higher_is_better, acc.needs_labels, path)


def metric_error(metric: Metric, sample: str, exc: Exception) -> Problem:
    """A metric that raised on `sample`, located at the raising line of the metric's own file (the
    innermost frame in it), else unlocated (a built-in metric: a label it cannot compare)."""
    path = getattr(metric, "path", None)
    line = None
    if path is not None:
        for frame, number in traceback.walk_tb(exc.__traceback__):
            if Path(frame.f_code.co_filename) == path:
                line = number
    text = str(exc).splitlines()[0] if str(exc) else ""
    return Problem(f"metric {metric.name!r} raised {type(exc).__name__}{': ' + text if text else ''} on sample {sample}",
                   path=str(path) if path else None, line=line, rule="metric-error",
                   fix="fix the metric (the sample that made it raise is named); nothing was written")


def make_metric(spec: "Spec", trusted: bool = False) -> Metric:
    acc = spec.accuracy
    if acc.metric == "custom":
        return load_custom(spec, trusted)
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
