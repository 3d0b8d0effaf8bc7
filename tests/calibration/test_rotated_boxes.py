"""Rotated text boxes (`boxes = "rotated"` with the db decoder): DBPostProcess's quadrilaterals from a
probability map, mapped back to the image, and scored by polygon IoU against COCO segmentation polygons."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from int8wb.calibration import CalibrationError
from int8wb.calibration.annotations import Boxes, read_coco
from int8wb.calibration.decoders import Detections, decode
from int8wb.calibration.detection import Detection, mean_average_precision
from int8wb.calibration.spec import AccuracySpec

SIZE = (200, 320)  # the map's and the image's (height, width)
RECT = ((160.0, 100.0), (240.0, 80.0), 13.0)  # centre (x, y), sides, degrees


def rotated(rect=RECT) -> np.ndarray:
    return cv2.boxPoints(rect).astype(np.float64)


def prob_map(rect=RECT, size=SIZE) -> np.ndarray:
    prob = np.zeros((1, 1, *size), np.float32)
    cv2.fillPoly(prob[0, 0], [np.round(rotated(rect)).astype(np.int32)], 0.9)
    return prob


def truth(polygon=None, box=None, size=SIZE, input_size=SIZE, placement=(1.0, 1.0, 0, 0)) -> Boxes:
    corners = rotated() if polygon is None else polygon
    box = [*corners.min(0), *corners.max(0)] if box is None else box
    shapes = None if polygon is None else ((tuple(polygon.ravel()),),)
    return Boxes(0, size, np.asarray([box], np.float64), np.zeros(1, np.int64), np.zeros(1, bool), input_size,
                 placement, shapes)


def controls(**keys) -> AccuracySpec:
    return AccuracySpec(metric="coco_map", decoder="db", boxes="rotated", **keys)


def near(found: np.ndarray, expected: np.ndarray) -> float:
    """The largest distance from an expected corner to the found corner in the same place."""
    return float(max(np.linalg.norm(found - e, axis=1).min() for e in expected))


def test_the_decoder_finds_the_rotated_rectangle_of_a_region():
    got = decode(prob_map(), controls(unclip_ratio=0), truth())
    [quad] = got.quads
    assert near(quad, rotated()) < 1.5 and got.scores.tolist() == pytest.approx([0.9])
    assert quad[0].sum() == min(quad.sum(1))  # top-left first, then clockwise: top-right, bottom-right
    assert quad[1, 0] > quad[0, 0] and quad[2, 1] > quad[1, 1]
    np.testing.assert_allclose(got.boxes, [[*quad.min(0), *quad.max(0)]])  # its upright bounds
    # grown by area * 1.5 / perimeter = 240 * 80 * 1.5 / 640 = 45 on every side
    middle = ((320.0, 200.0), *RECT[1:])  # room to grow
    [grown] = decode(prob_map(middle, (400, 640)), controls(unclip_ratio=1.5),
                     truth(size=(400, 640), input_size=(400, 640))).quads
    assert near(grown, rotated((middle[0], (330.0, 170.0), RECT[2]))) < 2.0
    # the axis-aligned decoder keeps its upright boxes
    assert decode(prob_map(), AccuracySpec(metric="coco_map", decoder="db"), truth()).quads is None


def test_quadrilaterals_are_mapped_back_through_the_letterbox():
    # the map is the input; a 240x640 picture was halved into its rows 40-160 (padding above and below)
    picture = truth(size=(240, 640), input_size=SIZE, placement=(0.5, 0.5, 40, 0))
    [quad] = decode(prob_map(), controls(unclip_ratio=0), picture).quads
    expected = (rotated() - [0, 40]) * 2
    assert near(quad, np.clip(expected, 0, [640, 240])) < 3.0  # 1.5 map pixels, doubled
    assert (quad[:, 1].min(), quad[:, 1].max()) == (0.0, 240.0)  # corners in the padding: clipped to the picture


def test_rotated_boxes_score_one_on_their_polygons_and_upright_boxes_lower():
    polygon = truth(rotated())
    tally = Detection("coco_map", controls(unclip_ratio=0)).tally(1)
    tally.add(0, prob_map(), type("Sample", (), {"label": polygon})(), None)
    assert tally.finish().accuracy == pytest.approx(1.0)  # IoU above 0.95
    # the upright bounds of the same rectangle against its polygon: IoU = 240 * 80 / (bounds' area)
    t = np.radians(RECT[2])
    iou = 240 * 80 / ((240 * np.cos(t) + 80 * np.sin(t)) * (240 * np.sin(t) + 80 * np.cos(t)))
    assert iou == pytest.approx(0.578, abs=1e-3)  # hits at IoU 0.50 and 0.55 of 0.50:0.05:0.95
    upright = Detections(np.array([[*rotated().min(0), *rotated().max(0)]]), np.ones(1), np.zeros(1, np.int64))
    assert mean_average_precision([polygon], [upright], "coco_map", 100, polygons=True) == pytest.approx(0.2)
    assert mean_average_precision([polygon], [upright], "voc_map50", 100, polygons=True) == pytest.approx(1.0)
    # a truth with a bbox alone is that box's 4 corners: now the rotated one is the poorer fit
    quad = Detections(upright.boxes, np.ones(1), np.zeros(1, np.int64), rotated()[None])
    assert mean_average_precision([truth()], [quad], "coco_map", 100, polygons=True) == pytest.approx(0.2)
    assert mean_average_precision([truth()], [upright], "coco_map", 100, polygons=True) == pytest.approx(1.0)


def test_coco_segmentation_polygons_are_read_and_a_bad_one_is_named(tmp_path):
    from PIL import Image
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    data = {"images": [{"id": 1, "file_name": "a.png", "width": 8, "height": 8}],
            "categories": [{"id": 1, "name": "text"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 3],
                             "segmentation": [[1, 2, 5, 1, 5, 4, 1, 4]]},
                            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [0, 0, 2, 2]},
                            {"id": 3, "image_id": 1, "category_id": 1, "bbox": [0, 0, 8, 8], "iscrowd": 1,
                             "segmentation": {"size": [8, 8], "counts": [0, 64]}}]}
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    [(_, boxes)], _ = read_coco(path, tmp_path, None)
    assert boxes.polygons == (((1.0, 2.0, 5.0, 1.0, 5.0, 4.0, 1.0, 4.0),), None, None)  # an RLE: its bbox
    data["annotations"][0]["segmentation"] = [[1, 2, 5]]
    path.write_text(json.dumps(data))
    with pytest.raises(CalibrationError) as caught:
        read_coco(path, tmp_path, None)
    [p] = caught.value.problems
    assert (p.path, p.key) == (str(path), "annotations[0].segmentation") and "3 points" in p.message


def test_rotated_boxes_need_the_db_decoder(tmp_path):
    from int8wb.calibration import load_spec
    spec = tmp_path / "s.calibration.toml"
    spec.write_text('model = "m.xml"\n[dataset]\nkind = "coco"\n[accuracy]\nmetric = "coco_map"\n'
                    'decoder = "yolo"\nboxes = "rotated"\n')
    with pytest.raises(CalibrationError) as caught:
        load_spec(spec)
    [p] = caught.value.problems
    assert (p.key, p.line) == ("accuracy.boxes", 7) and 'decoder = "db"' in p.message
