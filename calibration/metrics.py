"""Accuracy metrics as per-sample scores, so a drop can be traced to the samples that moved."""
from __future__ import annotations

import numpy as np

from .spec import AccuracySpec


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


def make_metric(spec: AccuracySpec) -> Metric:
    if spec.metric == "agreement":
        return Agreement()
    return TopK(1 if spec.metric == "top1" else spec.k)


def needs_labels(spec: AccuracySpec) -> bool:
    """Whether the metric compares with labels (checked without importing user code)."""
    if spec.metric == "custom":
        return spec.needs_labels
    return spec.metric != "agreement"
