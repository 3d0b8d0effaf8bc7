"""A user's metric from a file beside the spec (`[accuracy] custom = "file.py:name"`), of two kinds.

- per sample: a function `name(output, label) -> float`, averaged over the samples;
- dataset level: a factory `name()` (a class, or a function taking no arguments) whose object has
  `update(output, sample)` and `compute() -> float`, and optionally `per_sample()`: a float per
  sample (the statistic is their mean) or a (numerator, denominator) pair per sample (the statistic
  is the ratio of sums: a corpus error rate, F1 as 2TP / (2TP + FP + FN)). The intervals of the drop
  come from `per_sample()`; without it there is none.

Which kind is decided by looking, not by convention: a class, or a function that can be called with
no arguments, is a factory, and what it returns must have `update` and `compute`. Everything runs on
the thread that calls `evaluate`, in dataset order, with outputs the metric may keep.
"""
from __future__ import annotations

import importlib.util
import inspect
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from .metrics import Metric, Tallied, custom_metric_file, metric_error
from .problems import CalibrationError
from .stats import statistic

if TYPE_CHECKING:
    from .datasets import Dataset
    from .spec import Spec

IMAGE_KINDS = ("imagenet", "image_list", "images", "coco", "voc")  # datasets whose entries are image files
AGREE = 1e-6  # relative: per_sample()'s statistic and compute() are the same figure within this


class Sample:
    """What a dataset-level metric's update() gets beside the output: which sample it is."""
    __slots__ = ("index", "path", "label", "split", "image", "size")

    def __init__(self, index: int, path: str, label: int | str | None, split: str, image: bool):
        self.index = index      # position in the dataset
        self.path = path        # the entry's source: an image file, "file.npz[i]", "generated[i]"
        self.label = label      # as written: text stays text
        self.split = split      # "dataset", "validation" or "evaluation"
        self.image, self.size = image, None

    @property
    def original_size(self) -> tuple[int, int] | None:
        """(height, width) of the source image, read from its header when first asked; None for tensors."""
        if self.image and self.size is None:
            with Image.open(self.path) as im:
                width, height = im.size
            self.size = (height, width)
        return self.size

    def __repr__(self) -> str:
        return f"Sample(index={self.index}, path={self.path!r}, label={self.label!r}, split={self.split!r})"


def sample_of(dataset: "Dataset", index: int) -> Sample:
    entry = dataset.entries[index]
    return Sample(index, entry.source, entry.label, dataset.role, dataset.kind in IMAGE_KINDS)


class Custom(Metric):
    """A user's per-sample function `fn(output, label) -> float`. `fn.best`, when the function has it:
    the best score one sample can have (AccuracyAware then stops validating a candidate once it
    cannot pass, methods/rejection.py)."""

    def __init__(self, fn, name: str, higher_is_better: bool, needs_labels: bool, path: Path | None = None):
        self.fn, self.name, self.path = fn, name, path
        self.higher_is_better, self.needs_labels = higher_is_better, needs_labels
        best = getattr(fn, "best", None)
        self.best = float(best) if isinstance(best, (int, float)) and not isinstance(best, bool) else None

    def score(self, output, label, reference):
        return float(self.fn(output, label))


class DatasetMetric(Metric):
    """A user's dataset-level metric: a fresh object from `factory()` for every evaluation pass."""

    def __init__(self, factory, name: str, spec: "Spec", path: Path, first=None):
        self.factory, self.name, self.spec, self.path = factory, name, spec, path
        self.higher_is_better, self.needs_labels = spec.accuracy.higher_is_better, spec.accuracy.needs_labels
        self.unused = first  # the object made when the kind was decided: it serves the first pass

    def tally(self, samples: int) -> "DatasetTally":
        state, self.unused = self.unused, None
        if state is None:
            try:
                state = self.factory()
            except Exception as exc:  # user code: located at its raising line
                raise CalibrationError(metric_error(self, exc, "when made (called with no arguments)")) from None
        return DatasetTally(self, state, samples)


class DatasetTally:
    """One pass of a dataset-level metric: update() per sample in order, compute() at the end."""

    def __init__(self, metric: DatasetMetric, state, samples: int):
        self.metric, self.state, self.samples = metric, state, samples
        self.split = "dataset"

    def add(self, slot: int, output: np.ndarray, sample: Sample, reference) -> None:
        self.split = sample.split
        self.state.update(output, sample)

    def finish(self) -> Tallied:
        n, metric = self.samples, self.metric
        value = self.call("compute", float)
        per_sample = getattr(self.state, "per_sample", None)
        if not callable(per_sample):
            return Tallied(value, None, [None] * n)
        scores = self.call("per_sample", lambda got: per_sample_scores(got, n, metric))
        stat = statistic(scores)
        warnings = []
        if not math.isclose(stat, value, rel_tol=AGREE, abs_tol=1e-12):
            what = "the ratio of the sums of its pairs" if scores.ndim == 2 else "the mean of its values"
            warnings.append(metric.spec.problem(
                f"per_sample() of {metric.name!r} does not add up to compute() on the {n} {self.split} samples "
                f"({what} is {stat:.6g}, compute() gives {value:.6g}): the drop's intervals describe per_sample()'s "
                "statistic, not compute()", "accuracy", "custom", rule="metric-per-sample", severity="warning",
                fix="make per_sample() give what compute() adds up (floats averaged, or (numerator, denominator) "
                    "pairs summed)"))
        return Tallied(value, scores, [None] * n, warnings)

    def call(self, method: str, convert):
        """`state.method()` converted; user code that raises becomes a located metric-error."""
        try:
            return convert(getattr(self.state, method)())
        except CalibrationError:
            raise
        except Exception as exc:  # user code (or what it returned): located at its raising line
            raise CalibrationError(metric_error(self.metric, exc, f"in {method}() after {self.samples} "
                                                                  f"{self.split} samples")) from None


def per_sample_scores(values, samples: int, metric: DatasetMetric) -> np.ndarray:
    """per_sample()'s answer as scores (n,) or (numerator, denominator) pairs (n, 2); CalibrationError else."""
    try:
        scores = np.asarray(list(values), dtype=np.float64)
    except (TypeError, ValueError):
        scores = None
    if scores is None or scores.shape not in ((samples,), (samples, 2)):
        shape = "not numbers" if scores is None else f"shape {list(scores.shape)}"
        raise CalibrationError(metric.spec.problem(
            f"per_sample() of {metric.name!r} must give one float, or one (numerator, denominator) pair, for each "
            f"of the {samples} samples; it gave {shape}", "accuracy", "custom", rule="metric-error",
            fix="return a list as long as the samples update() saw"))
    return scores


def is_factory(obj) -> bool:
    """A class, or a function that can be called with no arguments (a per-sample function needs two)."""
    if inspect.isclass(obj):
        return True
    try:
        inspect.signature(obj).bind()
    except (TypeError, ValueError):  # needs arguments, or has no signature to read
        return False
    return True


def load_custom(spec: "Spec", trusted: bool) -> Metric:
    """Imports `file.py:name` named by the spec and decides its kind; user code runs only when the
    caller trusts it."""
    acc = spec.accuracy
    path, name = custom_metric_file(spec, trusted), acc.custom.rsplit(":", 1)[1]
    module_spec = importlib.util.spec_from_file_location(f"int8wb_metric_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
        obj = getattr(module, name)
    except Exception as exc:  # user code: report it, located at the spec key
        raise CalibrationError(spec.problem(f"cannot load {acc.custom}: {type(exc).__name__}: {exc}",
                                            "accuracy", "custom", rule="metric-error")) from None
    if not is_factory(obj):
        return Custom(obj, name, acc.higher_is_better, acc.needs_labels, path)
    metric = DatasetMetric(obj, name, spec, path)
    first = metric.tally(0).state
    if not (callable(getattr(first, "update", None)) and callable(getattr(first, "compute", None))):
        raise CalibrationError(spec.problem(
            f"{acc.custom} takes no arguments, so it is read as a dataset-level metric's factory, but what it "
            f"returns ({type(first).__name__}) has no update() and compute()", "accuracy", "custom",
            rule="metric-kind", fix="give the object update(output, sample) and compute() -> float, or make "
                                    "the function per sample: name(output, label) -> float"))
    metric.unused = first
    return metric
