"""Object detection: the usage's metrics, mean average precision over a coco or voc dataset's boxes.

Each output is decoded into boxes in the original image (`decoders`), and the whole pass is scored by
pycocotools' COCOeval (bbox), the reference implementation of both figures:
- `coco_map`: AP averaged over IoU thresholds 0.50:0.05:0.95 and the classes (COCO's headline figure);
- `voc_map50`: AP at IoU 0.50, averaged over the classes (COCO's 101-point interpolation, not VOC2007's
  11 points).
Both keep each image's `max_detections` best boxes. Average precision ranks the boxes of every image
together: no per-image statistic adds up to it, so the tally gives no per-sample scores, and the drop
has no interval (AccuracyAware judges it as measured), as for miou.
"""
from __future__ import annotations

import contextlib
import io

import numpy as np

from .annotations import Boxes
from .decoders import Detections, decode
from .metrics import Metric, Tallied
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
        value = mean_average_precision(self.truth, self.found, self.metric.name, self.metric.controls.max_detections)
        return Tallied(value, None, [None] * n)


def mean_average_precision(truth: list[Boxes], found: list[Detections], name: str, max_detections: int) -> float:
    """coco_map or voc_map50 of `found` against `truth` (image by image), by pycocotools; NaN without
    any box to find."""
    from pycocotools.coco import COCO  # only where a detection pass is scored
    from pycocotools.cocoeval import COCOeval

    classes = max([int(t.classes.max()) + 1 for t in truth if len(t.classes)], default=0)
    images = [{"id": k, "height": t.size[0], "width": t.size[1]} for k, t in enumerate(truth)]
    annotations = [{"id": i + 1, **box} for i, box in enumerate(
        {"image_id": k, "category_id": int(c), "bbox": _xywh(b), "area": float((b[2] - b[0]) * (b[3] - b[1])),
         "iscrowd": int(ignore)}
        for k, t in enumerate(truth) for b, c, ignore in zip(t.boxes, t.classes, t.ignore))]
    if not any(not a["iscrowd"] for a in annotations):
        return float("nan")
    results = [{"image_id": k, "category_id": int(c), "bbox": _xywh(b), "score": float(s)}
               for k, f in enumerate(found) for b, s, c in zip(f.boxes, f.scores, f.classes)]
    if not results:
        return 0.0
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and the summary
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
    precision = evaluation.eval["precision"][:, :, :, 0, 0]  # [IoU threshold, recall, class]; area "all"
    precision = precision if name == "coco_map" else precision[:1]  # the thresholds start at 0.50
    found_any = precision[precision > -1]  # -1: a class with no box to find
    return float(found_any.mean()) if found_any.size else float("nan")


def _xywh(box) -> list[float]:
    return [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]
