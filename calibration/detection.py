"""Object detection: the usage's metrics, mean average precision over a coco or voc dataset's boxes.

Each output is decoded into boxes in the original image (`decoders`), and the whole pass is scored by
pycocotools' COCOeval (bbox), the reference implementation of both figures:
- `coco_map`: AP averaged over IoU thresholds 0.50:0.05:0.95 and the classes (COCO's headline figure);
- `voc_map50`: AP at IoU 0.50, averaged over the classes (COCO's 101-point interpolation, not VOC2007's
  11 points).
Both keep each image's `max_detections` best boxes. Average precision ranks the boxes of every image
together: no per-image figure adds up to it. The drop's interval is therefore a bootstrap over images
that recomputes the AP on each resample (`Matches.resampled`, from pycocotools' own box matching, with
the same resampled images for FP32 and INT8), and AccuracyAware bounds its drop with it.
"""
from __future__ import annotations

import contextlib
import io

import numpy as np

from .annotations import Boxes
from .decoders import Detections, decode
from .metrics import Metric, Tallied
from .stats import Resampled
from .spec import AccuracySpec



class Detection(Metric):
    """One of the usage's metrics; `name` is coco_map or voc_map50."""

    def __init__(self, name: str, controls: AccuracySpec):
        self.name, self.controls = name, controls

    def tally(self, samples: int) -> "DetectionTally":
        return DetectionTally(self, samples)


class DetectionTally:
    def __init__(self, metric: Detection, samples: int):
        self.metric = metric
        self.truth: list[Boxes | None] = [None] * samples
        self.found: list[Detections | None] = [None] * samples

    def add(self, slot: int, output: np.ndarray, sample, reference) -> None:
        if not isinstance(sample.label, Boxes):
            raise ValueError(f"{self.metric.name} compares boxes: the sample has none (a coco or voc dataset has)")
        self.truth[slot] = sample.label
        self.found[slot] = decode(output, self.metric.controls, sample.label)

    def finish(self) -> Tallied:
        n = len(self.truth)
        matches = match_boxes(self.truth, self.found, self.metric.controls.max_detections)
        if matches is None:
            return Tallied(float("nan"), None, [None] * n)
        name = self.metric.name
        return Tallied(matches.value(name), Resampled(n, lambda rows: np.array(
            [matches.resampled(np.bincount(row, minlength=n), name) for row in rows])), [None] * n)


def mean_average_precision(truth: list[Boxes], found: list[Detections], name: str, max_detections: int) -> float:
    """coco_map or voc_map50 of `found` against `truth` (image by image), by pycocotools; NaN without
    any box to find."""
    matches = match_boxes(truth, found, max_detections)
    return float("nan") if matches is None else matches.value(name)


def match_boxes(truth: list[Boxes], found: list[Detections], max_detections: int) -> "Matches | None":
    """pycocotools' evaluation of one pass (each image's `max_detections` best boxes); None without any
    box to find."""
    from pycocotools.coco import COCO  # only where a detection pass is scored
    from pycocotools.cocoeval import COCOeval

    classes = max([int(t.classes.max()) + 1 for t in truth if len(t.classes)], default=0)
    images = [{"id": k, "height": t.size[0], "width": t.size[1]} for k, t in enumerate(truth)]
    annotations = [{"id": i + 1, **box} for i, box in enumerate(
        {"image_id": k, "category_id": int(c), "bbox": _xywh(b), "area": float((b[2] - b[0]) * (b[3] - b[1])),
         "iscrowd": int(ignore)}
        for k, t in enumerate(truth) for b, c, ignore in zip(t.boxes, t.classes, t.ignore))]
    if all(a["iscrowd"] for a in annotations):
        return None
    # loadRes() cannot take an empty list: a box of a class no image has stands in (COCOeval skips it).
    results = [{"image_id": k, "category_id": int(c), "bbox": _xywh(b), "score": float(s)}
               for k, f in enumerate(found) for b, s, c in zip(f.boxes, f.scores, f.classes)] or \
        [{"image_id": 0, "category_id": classes, "bbox": [0.0, 0.0, 1.0, 1.0], "score": 0.0}]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        gt = COCO()
        gt.dataset = {"images": images, "annotations": annotations,
                      "categories": [{"id": c, "name": str(c)} for c in range(classes)]}
        gt.createIndex()
        evaluation = COCOeval(gt, gt.loadRes(results), "bbox")
        # One cap, read straight from the precision table: summarize() scores stats[0] at 100 boxes
        # whatever maxDets says, and evaluate() sorts maxDets, so [1, 10, 1] would cap at 10.
        evaluation.params.maxDets = [max_detections]
        evaluation.evaluate()
        evaluation.accumulate()
    return Matches(evaluation, len(truth))


class Matches:
    """The boxes of one pass as pycocotools matched them, per class: enough to recompute the AP of any
    multiset of the images (a bootstrap resample) as COCOeval.accumulate() would."""

    def __init__(self, evaluation, images: int):
        p = evaluation.params
        self.precision = evaluation.eval["precision"][:, :, :, 0, 0]  # [IoU threshold, recall, class]; area "all"
        self.recall_points = np.asarray(p.recThrs)
        self.per_class = []
        stride = len(p.areaRng) * images  # evalImgs: class by class, area by area, image by image
        for k in range(len(p.catIds)):
            rows = [(i, e) for i, e in enumerate(evaluation.evalImgs[k * stride:k * stride + images]) if e]
            to_find = np.zeros(images)
            for i, e in rows:
                to_find[i] = np.count_nonzero(np.asarray(e["gtIgnore"]) == 0)
            image = np.concatenate([np.full(len(e["dtScores"]), i) for i, e in rows] or [[]]).astype(np.int64)
            score = np.concatenate([e["dtScores"] for _, e in rows] or [[]])
            hit = np.concatenate([e["dtMatches"] != 0 for _, e in rows] or [np.zeros((len(p.iouThrs), 0), bool)], 1)
            counted = ~np.concatenate([e["dtIgnore"].astype(bool) for _, e in rows]
                                      or [np.zeros((len(p.iouThrs), 0), bool)], 1)
            order = np.argsort(-score, kind="mergesort")  # as accumulate() ranks them
            self.per_class.append((to_find, image[order], (hit & counted)[:, order], (~hit & counted)[:, order]))

    def value(self, name: str) -> float:
        """The pass's figure, as pycocotools accumulated it."""
        precision = self.precision if name == "coco_map" else self.precision[:1]  # thresholds start at 0.50
        counted = precision[precision > -1]  # -1: a class with no box to find
        return float(counted.mean()) if counted.size else float("nan")

    def resampled(self, counts: np.ndarray, name: str) -> float:
        """The figure over the images taken `counts` times each (a bootstrap resample)."""
        aps, thresholds = [], slice(None) if name == "coco_map" else slice(0, 1)  # voc_map50: IoU 0.50 alone
        for to_find, image, tp, fp in self.per_class:
            total = float(counts @ to_find)
            if not total:
                continue
            weight = counts[image].astype(np.float64)
            keep = weight > 0
            tps = np.cumsum(tp[thresholds][:, keep] * weight[keep], 1)
            fps = np.cumsum(fp[thresholds][:, keep] * weight[keep], 1)
            if not tps.shape[1]:
                aps.append(0.0)
                continue
            recall, precision = tps / total, tps / (tps + fps + np.spacing(1))
            precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]  # the envelope
            at = np.stack([np.searchsorted(r, self.recall_points, side="left") for r in recall])
            picked = np.take_along_axis(precision, np.minimum(at, precision.shape[1] - 1), 1)
            aps.append(float(np.where(at < precision.shape[1], picked, 0.0).mean()))
        return float(np.mean(aps)) if aps else float("nan")


def _xywh(box) -> list[float]:
    return [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]
