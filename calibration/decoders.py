"""Detection heads' outputs made into boxes in the original image (`[accuracy] decoder`).

- ssd: OpenVINO's DetectionOutput [1, 1, N, 7]: image_id, label, confidence, x1, y1, x2, y2 normalised
  to the input; rows after the first negative image_id are padding. NMS is already done;
- yolo: [1, 4 + C, anchors] (YOLOv8 and later): cx, cy, w, h in input pixels, then C class scores;
  each anchor keeps its best class, and boxes of a class suppress their lower-scored overlaps (NMS);
- db: a text probability map [1, 1, H, W] (DBNet, PaddleOCR's DBPostProcess): regions above
  `binary_threshold` scored by their mean probability, grown by area * unclip_ratio / perimeter on
  every side; upright boxes, or with `boxes = "rotated"` each region's minimum-area rectangle so grown
  (DBPostProcess's quadrilaterals: offsetting a rectangle by d and taking the minimum-area rectangle
  again gives the rectangle d larger on every side, so no polygon clipping is needed).

Boxes are found in input pixels, then mapped back through the preprocessing's resize and letterbox
(where the image sits in the input, `Boxes.placement`) and clipped to the image.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .annotations import Boxes
from .spec_controls import DetectionControls

DEFAULT_SCORE = {"ssd": 0.001, "yolo": 0.001, "db": 0.6}
NMS_CANDIDATES = 30000  # best-scored boxes NMS looks at (as Ultralytics does): bounded time on noise


@dataclass
class Detections:
    boxes: np.ndarray    # [N, 4] x1, y1, x2, y2 (rotated: each quadrilateral's upright bounds)
    scores: np.ndarray   # [N]
    classes: np.ndarray  # [N] class index, in the dataset's order
    quads: np.ndarray | None = None  # rotated: [N, 4, 2] corners (x, y), top-left first, clockwise


def decode(output: np.ndarray, controls: DetectionControls, image: Boxes) -> Detections:
    """The boxes of one output, in `image`'s original pixels, best `max_detections` first."""
    out = np.asarray(output, dtype=np.float32)
    if not fits(controls.decoder, out.shape):
        raise ValueError(f"decoder {controls.decoder!r} reads {SHAPES[controls.decoder]}; the output is "
                         f"{list(out.shape)} (set [accuracy] output to the model output it means)")
    threshold = controls.score_threshold
    threshold = DEFAULT_SCORE[controls.decoder] if threshold is None else threshold
    if controls.decoder == "ssd":
        found = ssd(out, image.input_size, threshold, controls.label_offset)
    elif controls.decoder == "yolo":
        found = yolo(out, threshold, controls.nms_iou, controls.label_offset)
    elif controls.boxes == "rotated":
        found = db_rotated(out, image.input_size, controls.binary_threshold, threshold, controls.unclip_ratio,
                           controls.min_size)
    else:
        found = db(out, image.input_size, controls.binary_threshold, threshold, controls.unclip_ratio,
                   controls.min_size)
    best = np.argsort(-found.scores, kind="stable")[:controls.max_detections]
    if found.quads is not None:
        quads = quads_to_original(found.quads[best], image)
        bounds = np.hstack([quads.min(1), quads.max(1)]) if len(quads) else np.zeros((0, 4))
        return Detections(bounds, found.scores[best], found.classes[best], quads)
    return Detections(to_original(found.boxes[best], image), found.scores[best], found.classes[best])


SHAPES = {"ssd": "[1, 1, N, 7]", "yolo": "[1, 4 + C, anchors]", "db": "[1, 1, H, W]"}


def fits(decoder: str, shape) -> bool:
    """Whether `decoder` can read an output of `shape` (-1: a dimension not known before running)."""
    shape = list(shape)
    single = all(d in (1, -1) for d in shape[:-2])  # one image's output
    if decoder == "ssd":
        return len(shape) >= 1 and shape[-1] in (7, -1)
    if decoder == "yolo":
        return len(shape) >= 2 and single and (shape[-2] > 4 or shape[-2] == -1)
    return len(shape) >= 2 and single


def to_original(boxes: np.ndarray, image: Boxes) -> np.ndarray:
    """Input-pixel boxes mapped back to the original image (undoing resize and letterbox), clipped to it."""
    scale_y, scale_x, top, left = image.placement
    out = (boxes - np.array([left, top, left, top])) / np.array([scale_x, scale_y, scale_x, scale_y])
    height, width = image.size
    return np.clip(out, 0, [width, height, width, height])


def quads_to_original(quads: np.ndarray, image: Boxes) -> np.ndarray:
    """Input-pixel corners [N, 4, 2] mapped back as `to_original` maps boxes, each corner clipped to
    the image (as DBPostProcess clips them)."""
    scale_y, scale_x, top, left = image.placement
    out = (quads - np.array([left, top])) / np.array([scale_x, scale_y])
    height, width = image.size
    return np.clip(out, 0, [width, height])


def ssd(out: np.ndarray, input_size: tuple[int, int], threshold: float, offset: int) -> Detections:
    rows = out.reshape(-1, 7)
    end = np.flatnonzero(rows[:, 0] < 0)
    rows = rows[:end[0] if end.size else len(rows)]
    classes = rows[:, 1].astype(np.int64) - offset
    keep = (rows[:, 2] >= threshold) & (classes >= 0)  # a negative class: the background's
    rows, classes = rows[keep], classes[keep]
    height, width = input_size
    return Detections(rows[:, 3:7] * np.array([width, height, width, height], np.float32), rows[:, 2], classes)


def yolo(out: np.ndarray, threshold: float, iou: float, offset: int) -> Detections:
    table = out.reshape(out.shape[-2], out.shape[-1]).T  # [anchors, 4 + C]
    scores = table[:, 4:]
    classes = np.argmax(scores, axis=1)
    conf = scores[np.arange(len(table)), classes]
    keep = np.flatnonzero(conf >= threshold)
    keep = keep[np.argsort(-conf[keep], kind="stable")[:NMS_CANDIDATES]]
    cx, cy, w, h = table[keep, :4].T
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    chosen = nms(boxes, conf[keep], classes[keep], iou)
    return Detections(boxes[chosen], conf[keep][chosen], classes[keep][chosen] - offset)


def iou_with(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one x1, y1, x2, y2 box with each of `boxes`."""
    w = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = w * h
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(inter > 0, inter / (area + areas - inter), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression within each class, best score first."""
    order, keep = np.argsort(-scores, kind="stable"), []
    while order.size:
        first, rest = order[0], order[1:]
        keep.append(first)
        overlap = iou_with(boxes[first], boxes[rest])
        order = rest[(overlap <= iou) | (classes[rest] != classes[first])]
    return np.asarray(keep, np.int64)


def db(out: np.ndarray, input_size: tuple[int, int], binary: float, threshold: float, unclip: float,
       min_size: float) -> Detections:
    prob = out.reshape(out.shape[-2], out.shape[-1])
    boxes, scores = [], []
    for contour, (x, y, w, h), score in regions(prob, binary, threshold, min_size):
        grow = w * h * unclip / (2 * (w + h))
        boxes.append((x - grow, y - grow, x + w + grow, y + h + grow))
        scores.append(score)
    height, width = input_size
    to_input = np.array([width / prob.shape[1], height / prob.shape[0]] * 2)
    table = np.asarray(boxes, np.float64).reshape(-1, 4) * to_input
    return Detections(table, np.asarray(scores, np.float64), np.zeros(len(boxes), np.int64))


def regions(prob: np.ndarray, binary: float, threshold: float, min_size: float):
    """(contour, upright bounds, score) of each region of the map above `binary` whose bounds reach
    `min_size` and whose own pixels average at least `threshold` (as DBNet scores)."""
    import cv2  # only where maps are decoded

    contours, _ = cv2.findContours((prob > binary).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    for contour in contours:
        x, y, w, h = cv2.boundingRect(contour)
        if min(w, h) < min_size:
            continue
        region = np.zeros((h, w), np.uint8)
        cv2.fillPoly(region, [contour.reshape(-1, 2) - [x, y]], 1)
        score = float(prob[y:y + h, x:x + w][region > 0].mean())
        if score >= threshold:
            yield contour, (x, y, w, h), score


def db_rotated(out: np.ndarray, input_size: tuple[int, int], binary: float, threshold: float, unclip: float,
               min_size: float) -> Detections:
    """db's regions as DBPostProcess's quadrilaterals: the minimum-area rectangle of each, grown by
    area * unclip / perimeter on every side; a rectangle whose shorter side is below `min_size` before
    growing, or below min_size + 2 after, is dropped (as there)."""
    import cv2  # only where maps are decoded

    prob = out.reshape(out.shape[-2], out.shape[-1])
    quads, scores = [], []
    for contour, _, score in regions(prob, binary, threshold, 0.0):  # the rectangle's sides are what count
        centre, (w, h), angle = cv2.minAreaRect(contour)
        if min(w, h) < min_size:
            continue
        grow = w * h * unclip / (2 * (w + h)) if w + h else 0.0
        if min(w, h) + 2 * grow < min_size + 2:
            continue
        quads.append(clockwise(cv2.boxPoints((centre, (w + 2 * grow, h + 2 * grow), angle))))
        scores.append(score)
    height, width = input_size
    table = np.asarray(quads, np.float64).reshape(-1, 4, 2) * [width / prob.shape[1], height / prob.shape[0]]
    return Detections(np.zeros((len(quads), 4)), np.asarray(scores, np.float64), np.zeros(len(quads), np.int64),
                      table)


def clockwise(corners: np.ndarray) -> np.ndarray:
    """A rectangle's corners as DBPostProcess orders them: top-left, top-right, bottom-right, bottom-left
    (the two leftmost are the left side, each side's upper corner its top)."""
    by_x = corners[np.argsort(corners[:, 0], kind="stable")]
    (tl, bl), (tr, br) = (side[np.argsort(side[:, 1], kind="stable")] for side in (by_x[:2], by_x[2:]))
    return np.array([tl, tr, br, bl])
