"""Object detection: the usage's metrics, mean average precision over a coco or voc dataset's boxes.

Each output is decoded into boxes in the original image (`decoders`), and the whole pass is scored by
pycocotools' COCOeval (bbox; for rotated text boxes "segm", polygon IoU of the quadrilaterals with the
truth's segmentation polygons), the reference implementation of both figures:
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
        controls = self.metric.controls
        matches = match_boxes(self.truth, self.found, controls.max_detections, controls.boxes == "rotated")
        if matches is None:
            return Tallied(float("nan"), None, [None] * n)
        name = self.metric.name
        return Tallied(matches.value(name), Resampled.weighted(n, lambda counts: np.array(
            [matches.resampled(row, name) for row in counts])), [None] * n)


def mean_average_precision(truth: list[Boxes], found: list[Detections], name: str, max_detections: int,
                           polygons: bool = False) -> float:
    """coco_map or voc_map50 of `found` against `truth` (image by image), by pycocotools; NaN without
    any box to find."""
    matches = match_boxes(truth, found, max_detections, polygons)
    return float("nan") if matches is None else matches.value(name)


def match_boxes(truth: list[Boxes], found: list[Detections], max_detections: int,
                polygons: bool = False) -> "Matches | None":
    """pycocotools' evaluation of one pass (each image's `max_detections` best boxes); None without any
    box to find. `polygons`: IoU of the found quadrilaterals with the truth's segmentation polygons (a
    box without any: its 4 corners), as pycocotools' "segm" evaluation rasterises them, instead of box IoU."""
    from pycocotools.coco import COCO  # only where a detection pass is scored
    from pycocotools.cocoeval import COCOeval

    classes = max([int(t.classes.max()) + 1 for t in truth if len(t.classes)], default=0)
    images = [{"id": k, "height": t.size[0], "width": t.size[1]} for k, t in enumerate(truth)]
    annotations = [{"id": i + 1, **box} for i, box in enumerate(
        {"image_id": k, "category_id": int(c), "bbox": _xywh(b), "area": float((b[2] - b[0]) * (b[3] - b[1])),
         "iscrowd": int(ignore), **({"segmentation": _shape(b, t.polygons and t.polygons[j])} if polygons else {})}
        for k, t in enumerate(truth) for j, (b, c, ignore) in enumerate(zip(t.boxes, t.classes, t.ignore)))]
    if all(a["iscrowd"] for a in annotations):
        return None
    # loadRes() cannot take an empty list: a box of a class no image has stands in (COCOeval skips it).
    # With a bbox, loadRes keeps a result's own polygon as its segmentation.
    results = [{"image_id": k, "category_id": int(c), "bbox": _xywh(b), "score": float(s),
                **({"segmentation": _shape(b, None if f.quads is None else [f.quads[j].ravel()])} if polygons else {})}
               for k, f in enumerate(found) for j, (b, s, c) in enumerate(zip(f.boxes, f.scores, f.classes))] or \
        [{"image_id": 0, "category_id": classes, "bbox": [0.0, 0.0, 1.0, 1.0], "score": 0.0}]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        gt = COCO()
        gt.dataset = {"images": images, "annotations": annotations,
                      "categories": [{"id": c, "name": str(c)} for c in range(classes)]}
        gt.createIndex()
        evaluation = COCOeval(gt, gt.loadRes(results), "segm" if polygons else "bbox")
        # One cap, read straight from the precision table: summarize() scores stats[0] at 100 boxes
        # whatever maxDets says, and evaluate() sorts maxDets, so [1, 10, 1] would cap at 10.
        evaluation.params.maxDets = [max_detections]
        # Only area "all" is read (Matches): the small / medium / large passes were 3/4 of the matching.
        evaluation.params.areaRng, evaluation.params.areaRngLbl = evaluation.params.areaRng[:1], ["all"]
        evaluation.evaluate()
        evaluation.accumulate()
    return Matches(evaluation, len(truth))


class Matches:
    """The boxes of one pass as pycocotools matched them: enough to recompute the AP of any multiset of
    the images (a bootstrap resample) as COCOeval.accumulate() would, for every class at once. The
    found boxes are laid out class after class, each class's best first (accumulate()'s ranking)."""

    def __init__(self, evaluation, images: int):
        p = evaluation.params
        self.precision = evaluation.eval["precision"][:, :, :, 0, 0]  # [IoU threshold, recall, class]; area "all"
        self.recall_points = np.asarray(p.recThrs)
        classes, stride = len(p.catIds), len(p.areaRng) * images  # evalImgs: class, area, image
        self.to_find = np.zeros((classes, images))
        parts = []
        for k in range(classes):
            rows = [(i, e) for i, e in enumerate(evaluation.evalImgs[k * stride:k * stride + images]) if e]
            for i, e in rows:
                self.to_find[k, i] = np.count_nonzero(np.asarray(e["gtIgnore"]) == 0)
            if rows:
                image = np.concatenate([np.full(len(e["dtScores"]), i) for i, e in rows]).astype(np.int64)
                hit = np.concatenate([e["dtMatches"] != 0 for _, e in rows], 1)
                counted = ~np.concatenate([e["dtIgnore"].astype(bool) for _, e in rows], 1)
                order = np.argsort(-np.concatenate([e["dtScores"] for _, e in rows]), kind="mergesort")
                # Boxes ranked below a class's last hit only lower precision past its final recall,
                # on any resample: they never count, and most low-scored boxes are such.
                hits = np.flatnonzero((hit & counted)[:, order].any(0))
                order = order[:hits[-1] + 1 if hits.size else 0]
                parts.append((np.full(len(order), k), image[order], (hit & counted)[:, order],
                              (~hit & counted)[:, order]))
        empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((len(p.iouThrs), 0), bool))
        self.cls, self.image, tp, fp = (np.concatenate(x, axis=-1) for x in zip(*parts)) if parts else (*empty, empty[2])
        self.tp, self.fp = tp.astype(np.float64), fp.astype(np.float64)
        self.starts = np.searchsorted(self.cls, np.arange(classes))
        self.ends = np.searchsorted(self.cls, np.arange(classes), side="right")

    def value(self, name: str) -> float:
        """The pass's figure, as pycocotools accumulated it."""
        precision = self.precision if name == "coco_map" else self.precision[:1]  # thresholds start at 0.50
        counted = precision[precision > -1]  # -1: a class with no box to find
        return float(counted.mean()) if counted.size else float("nan")

    def resampled(self, counts: np.ndarray, name: str) -> float:
        """The figure over the images taken `counts` times each (a bootstrap resample). Counts stay
        integers in floating point, so recall compares with COCO's recall points exactly as there."""
        totals = self.to_find @ counts                         # boxes to find, per class
        if not totals.any():
            return float("nan")
        thresholds = slice(None) if name == "coco_map" else slice(0, 1)  # voc_map50: IoU 0.50 alone
        weight = counts[self.image].astype(np.float64)         # an image taken twice counts twice
        classes, points = len(totals), len(self.recall_points)
        ap = np.zeros((len(self.tp[thresholds]), classes))
        if len(self.cls):
            tps, fps = (np.cumsum(a[thresholds] * weight, 1) for a in (self.tp, self.fp))
            tps, fps = (c - np.hstack([np.zeros((len(c), 1)), c])[:, self.starts][:, self.cls] for c in (tps, fps))
            total = totals[self.cls]
            recall = np.where(total > 0, tps / np.maximum(total, 1), 0.0)
            precision = tps / (tps + fps + np.spacing(1))
            # The envelope (max to the right) within each class: an offset per class keeps it from
            # reaching across (rounding moves a value by 1e-14 at most, and no comparison depends on it).
            offset = 2.0 * (classes - 1 - self.cls)
            envelope = np.maximum.accumulate((precision + offset)[:, ::-1], 1)[:, ::-1] - offset
            # The first point of each class reaching each recall point: an exact integer search.
            key = self.cls * (points + 1) + np.searchsorted(self.recall_points, recall, side="right")
            wanted = (np.arange(classes)[:, None] * (points + 1) + np.arange(points)).ravel()
            for t, row in enumerate(key):
                at = np.searchsorted(row, wanted, side="right").reshape(classes, points)
                found = at < self.ends[:, None]
                ap[t] = np.where(found, envelope[t][np.minimum(at, len(row) - 1)], 0.0).mean(1)
        return float(ap[:, totals > 0].mean())


def _xywh(box) -> list[float]:
    return [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]


def _shape(box, shapes) -> list[list[float]]:
    """COCO segmentation polygons: `shapes` when given, else the box's 4 corners."""
    if shapes:
        return [[float(v) for v in p] for p in shapes]
    x1, y1, x2, y2 = (float(v) for v in box)
    return [[x1, y1, x2, y1, x2, y2, x1, y2]]
