"""Semantic segmentation: image + mask pairs, and the metrics of the usage (IoU, mIoU, pixel accuracy).

Masks are PNGs of class indices (a binary mask may be 0/255: anything above 0 is foreground), read
with nearest-neighbour resizing to the output's size; with a letterbox, to the part of the output
that shows the picture (the padding is no pixel of it, and counts for nothing). The output is [1, C, H, W] class scores (argmax)
or [1, 1, H, W] / [1, H, W] foreground probabilities (above `threshold`). Counts are summed over the
dataset (corpus style), so a large object weighs as its pixels do:
- `iou`: foreground intersection over union; per sample (intersection, union), so its interval is the
  paired bootstrap of a ratio of sums;
- `pixel_accuracy`: correct pixels over all pixels; per sample (correct, total), likewise;
- `miou`: the mean over classes of each class's IoU: no per-sample statistic adds up to it, so each
  image keeps its per-class intersection and union counts, and the drop's interval is a bootstrap over
  images that recomputes the mIoU of both models on the same resamples (`stats.Resampled`, as the
  detection metrics do); AccuracyAware bounds its drop with it.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from .metrics import Metric, Tallied
from .stats import Resampled


def prediction(output: np.ndarray, threshold: float) -> np.ndarray:
    """Class index per pixel [H, W] from a model output."""
    out = np.asarray(output)
    out = out[0] if out.ndim == 4 else out
    if out.ndim == 3 and out.shape[0] > 1:
        return np.argmax(out, axis=0)
    return (out.reshape(out.shape[-2:]) > threshold).astype(np.int64)


class MaskLabel(str):
    """A mask's path, with where its picture lies in the model input when that is not the whole input
    (letterbox): the preprocessing's `placement` (scale_y, scale_x, top, left), `input_size` and
    `image_size` (H, W)."""
    placement: tuple[float, float, int, int] | None = None
    input_size: tuple[int, int] | None = None
    image_size: tuple[int, int] | None = None


def mask_label(mask: str, image: str, preprocess) -> MaskLabel:
    """The label of a letterboxed sample: the image's header gives its size, hence its place."""
    with Image.open(image) as img:
        width, height = img.size
    label = MaskLabel(mask)
    label.image_size, label.input_size = (height, width), tuple(preprocess.size)
    label.placement = preprocess.placement(height, width)
    return label


def region(label, shape: tuple[int, int]) -> tuple[slice, slice]:
    """The pixels of an output map of `shape` that show the picture: all, unless it was letterboxed
    (the map may be coarser than the input: the place scales with it)."""
    if getattr(label, "placement", None) is None:
        return slice(None), slice(None)
    scale_y, scale_x, top, left = label.placement
    (in_h, in_w), (h, w) = label.input_size, label.image_size
    fy, fx = shape[0] / in_h, shape[1] / in_w
    y0, x0 = round(top * fy), round(left * fx)
    return slice(y0, y0 + max(1, round(h * scale_y * fy))), slice(x0, x0 + max(1, round(w * scale_x * fx)))


def read_mask(path: str, size: tuple[int, int], binary: bool) -> np.ndarray:
    """The mask at `path` as class indices [H, W] of the output's `size` (nearest neighbour)."""
    with Image.open(path) as img:
        img = img.convert("L") if img.mode not in ("L", "P", "I", "I;16") else img
        if img.size != (size[1], size[0]):
            img = img.resize((size[1], size[0]), Image.NEAREST)
        mask = np.asarray(img).astype(np.int64)
    return (mask > 0).astype(np.int64) if binary else mask


class Segmentation(Metric):
    """One of the usage's metrics; `name` is iou, miou or pixel_accuracy."""

    def __init__(self, name: str, threshold: float = 0.5):
        self.name, self.threshold = name, threshold

    def tally(self, samples: int) -> "SegmentationTally":
        return SegmentationTally(self, samples)


class SegmentationTally:
    def __init__(self, metric: Segmentation, samples: int):
        self.metric = metric
        self.pairs = np.zeros((samples, 2), dtype=np.float64)  # iou, pixel_accuracy: per sample
        # miou: per sample, the classes in its prediction or mask with their intersection and union
        # (sparse: a 16-bit mask's class values may reach 65535)
        self.counts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = [(np.zeros(0, np.int64),) * 3] * samples

    def add(self, slot: int, output: np.ndarray, sample, reference) -> None:
        pred = prediction(output, self.metric.threshold)
        pred = pred[region(sample.label, pred.shape)]
        binary = not (np.asarray(output).ndim >= 3 and np.asarray(output).shape[-3] > 1)
        mask = read_mask(str(sample.label), pred.shape, binary)
        if self.metric.name == "pixel_accuracy":
            self.pairs[slot] = (np.count_nonzero(pred == mask), mask.size)
        elif self.metric.name == "iou":
            p, m = pred > 0, mask > 0
            self.pairs[slot] = (np.count_nonzero(p & m), np.count_nonzero(p | m))
        else:
            pred, mask = pred.ravel(), mask.ravel()
            classes = int(max(pred.max(initial=0), mask.max(initial=0))) + 1
            inter = np.bincount(pred[pred == mask], minlength=classes)
            union = np.bincount(pred, minlength=classes) + np.bincount(mask, minlength=classes) - inter
            present = np.flatnonzero(union)
            self.counts[slot] = (present, inter[present], union[present])

    def finish(self) -> Tallied:
        n = len(self.pairs)
        if self.metric.name == "miou":
            inter, union = table(self.counts)
            value = float(mean_iou(inter.sum(0)[None], union.sum(0)[None])[0])
            return Tallied(value, Resampled.weighted(n, lambda counts: mean_iou(counts @ inter, counts @ union)),
                           [None] * n)
        total = self.pairs[:, 1].sum()
        value = float(self.pairs[:, 0].sum() / total) if total else float("nan")
        return Tallied(value, self.pairs, [None] * n)


def table(counts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's (classes, intersections, unions) as [samples, classes] tables of intersection
    and union, a column per class any sample has."""
    classes = np.unique(np.concatenate([c for c, _, _ in counts])) if counts else np.zeros(0, np.int64)
    inter, union = np.zeros((len(counts), len(classes))), np.zeros((len(counts), len(classes)))
    for i, (c, a, b) in enumerate(counts):
        column = np.searchsorted(classes, c)
        inter[i, column], union[i, column] = a, b
    return inter, union


def mean_iou(inter: np.ndarray, union: np.ndarray) -> np.ndarray:
    """mIoU of each row of summed [rows, classes] counts: the mean over the classes present (union > 0),
    NaN for a row with none."""
    present = union > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        ious = np.where(present, inter / np.where(present, union, 1), 0.0)
        return ious.sum(1) / present.sum(1)
