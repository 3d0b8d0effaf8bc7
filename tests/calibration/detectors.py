"""Tiny detectors built with openvino.opset, and synthetic pictures whose boxes are known.

The pictures are 64x48 (dark noise, a red and a green square at even places and sizes) so that a
letterbox into the 32x32 input halves them exactly: the nets' boxes are then exact, and mapped back
to the original image they equal the annotations.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import openvino as ov
from openvino import opset13 as ops
from PIL import Image

SIZE = 32  # input height and width


def _f32(a) -> ov.Output:
    return ops.constant(np.asarray(a, np.float32))


def _edges(x: ov.Output):
    """x1, y1, x2, y2 (input pixels) of each colour's square, and whether it is there, each [1, 2]:
    a 1x1 convolution gives red - green and green - red (INT8-able), thresholded into masks."""
    w = np.zeros((2, 3, 1, 1), np.float32)
    w[0, 0], w[0, 1], w[1, 1], w[1, 0] = 1 / 255, -1 / 255, 1 / 255, -1 / 255
    conv = ops.convolution(x, _f32(w), [1, 1], [0, 0], [0, 0], [1, 1])
    mask = ops.convert(ops.greater(conv, _f32(0.5)), np.float32)               # [1, 2, H, W]
    cols, rows = ops.reduce_max(mask, [2], False), ops.reduce_max(mask, [3], False)  # [1, 2, W], [1, 2, H]
    index = np.arange(SIZE, dtype=np.float32).reshape(1, 1, SIZE)

    def last(profile):   # one past the last pixel set
        return ops.reduce_max(ops.multiply(profile, _f32(index + 1)), [2], False)

    def first(profile):  # the first pixel set
        return ops.subtract(_f32(SIZE), ops.reduce_max(ops.multiply(profile, _f32(SIZE - index)), [2], False))

    return first(cols), first(rows), last(cols), last(rows), ops.reduce_max(cols, [2], False)


def yolo_net() -> ov.Model:
    """[1, 6, 2]: two anchors (the red square, class 0; the green one, class 1) of cx, cy, w, h, 2 scores."""
    x = ops.parameter([1, 3, SIZE, SIZE], np.float32, name="images")
    x1, y1, x2, y2, present = _edges(x)
    rows = [ops.multiply(ops.add(x1, x2), _f32(0.5)), ops.multiply(ops.add(y1, y2), _f32(0.5)),
            ops.subtract(x2, x1), ops.subtract(y2, y1),
            ops.multiply(present, _f32([[1, 0]])), ops.multiply(present, _f32([[0, 1]]))]
    out = ops.concat([ops.unsqueeze(r, ops.constant(np.int64(1))) for r in rows], 1)
    return ov.Model([out], [x], "yolo")


def ssd_net() -> ov.Model:
    """DetectionOutput-style [1, 1, 3, 7]: the red square as label 1 (label 0 is the background), the
    green one as label 2, then a padding row (image_id -1)."""
    x = ops.parameter([1, 3, SIZE, SIZE], np.float32, name="images")
    x1, y1, x2, y2, present = _edges(x)
    norm = [ops.multiply(v, _f32(1 / SIZE)) for v in (x1, y1, x2, y2)]
    parts = [_f32([[0, 0]]), _f32([[1, 2]]), present, *norm]                    # each [1, 2]: one per square
    rows = ops.transpose(ops.concat([ops.unsqueeze(p, ops.constant(np.int64(1))) for p in parts], 1),
                         ops.constant(np.array([0, 2, 1], np.int64)))              # [1, 2, 7]
    pad = _f32(np.array([[[-1, 0, 0, 0, 0, 0, 0]]]))
    out = ops.reshape(ops.concat([rows, pad], 1), ops.constant(np.array([1, 1, 3, 7], np.int64)), False)
    return ov.Model([out], [x], "ssd")


def pictures(folder: Path, count: int, seed: int = 0) -> list[dict]:
    """`count` 64x48 pictures in `folder`; per picture its file name and boxes [(class, x, y, w, h)]
    (class 0: red, 1: green)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        img = rng.integers(0, 40, (48, 64, 3), dtype=np.uint8)
        s0, s1 = (int(v) * 2 for v in rng.integers(4, 9, 2))
        x0, y0 = int(rng.integers(0, (30 - s0) // 2 + 1)) * 2, int(rng.integers(0, (48 - s0) // 2 + 1)) * 2
        x1, y1 = 32 + int(rng.integers(0, (32 - s1) // 2 + 1)) * 2, int(rng.integers(0, (48 - s1) // 2 + 1)) * 2
        img[y0:y0 + s0, x0:x0 + s0] = (230, 0, 0)
        img[y1:y1 + s1, x1:x1 + s1] = (0, 230, 0)
        Image.fromarray(img).save(folder / f"p{i}.png")
        out.append({"file": f"p{i}.png", "boxes": [(0, x0, y0, s0, s0), (1, x1, y1, s1, s1)]})
    return out


def coco_json(path: Path, pics: list[dict], names=("red", "green")) -> Path:
    anns = [{"image_id": i, "category_id": c + 1, "bbox": [x, y, w, h], "iscrowd": 0}
            for i, p in enumerate(pics) for c, x, y, w, h in p["boxes"]]
    path.write_text(json.dumps({
        "images": [{"id": i, "file_name": p["file"], "width": 64, "height": 48} for i, p in enumerate(pics)],
        "annotations": [dict(a, id=n + 1) for n, a in enumerate(anns)],
        "categories": [{"id": c + 1, "name": n} for c, n in enumerate(names)]}))
    return path


def voc_xml(folder: Path, pics: list[dict]) -> Path:
    """One XML per picture; names sort green before red, so `classes` must give the model's order."""
    folder.mkdir(parents=True, exist_ok=True)
    colour = {0: "red", 1: "green"}
    for p in pics:
        objs = "".join(f"<object><name>{colour[c]}</name><difficult>0</difficult><bndbox><xmin>{x}</xmin>"
                       f"<ymin>{y}</ymin><xmax>{x + w}</xmax><ymax>{y + h}</ymax></bndbox></object>"
                       for c, x, y, w, h in p["boxes"])
        (folder / (Path(p["file"]).stem + ".xml")).write_text(
            f"<annotation><filename>{p['file']}</filename><size><width>64</width><height>48</height>"
            f"<depth>3</depth></size>{objs}</annotation>")
    return folder
