"""Semantic segmentation: image + mask pairs, IoU / mIoU / pixel accuracy checked against hand-counted
cases, and a tiny segmentation net calibrated end to end with its intervals."""
from __future__ import annotations

import numpy as np
import openvino as ov
import pytest
from openvino import opset13 as ops
from PIL import Image

from int8wb.calibration import CalibrationError, load_spec
from int8wb.calibration.checker import check_spec
from int8wb.calibration.segmentation import Segmentation
from int8wb.calibration.workflow import calibrate
from conftest import save


class Sample:
    def __init__(self, label):
        self.label = label


def masks(tmp_path, *arrays) -> list[Sample]:
    out = []
    for i, a in enumerate(arrays):
        Image.fromarray(np.asarray(a, np.uint8)).save(tmp_path / f"m{i}.png")
        out.append(Sample(tmp_path / f"m{i}.png"))
    return out


def run(metric: str, outputs, samples):
    tally = Segmentation(metric).tally(len(samples))
    for slot, (out, sample) in enumerate(zip(outputs, samples)):
        tally.add(slot, np.asarray(out, np.float32), sample, None)
    return tally.finish()


def test_binary_iou_and_pixel_accuracy_by_hand(tmp_path):
    # sample 0: mask foreground 6 px (255), prediction 4 px of which 3 overlap -> (3, 7); 16 px, 4 wrong
    mask0 = np.zeros((4, 4)); mask0[0, :3] = mask0[1, :3] = 255
    prob0 = np.zeros((1, 1, 4, 4)); prob0[0, 0, 0, :3] = 0.9; prob0[0, 0, 3, 3] = 0.7
    # sample 1: nothing in either -> (0, 0); all 16 right
    samples = masks(tmp_path, mask0, np.zeros((4, 4)))
    iou = run("iou", [prob0, np.zeros((1, 1, 4, 4))], samples)
    assert iou.accuracy == pytest.approx(3 / 7) and iou.scores.tolist() == [[3, 7], [0, 0]]
    acc = run("pixel_accuracy", [prob0, np.zeros((1, 1, 4, 4))], samples)
    assert acc.accuracy == pytest.approx(28 / 32) and acc.scores.tolist() == [[12, 16], [16, 16]]


def test_miou_over_classes_of_a_multi_class_output(tmp_path):
    mask = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 2], [2, 2, 2, 2]])
    pred = np.array([[0, 1, 1, 1], [0, 0, 1, 1], [2, 2, 2, 0], [2, 2, 2, 2]])
    scores = np.stack([(pred == c).astype(np.float32) for c in range(3)])[None]  # [1, 3, 4, 4]
    [sample] = masks(tmp_path, mask)
    # class 0: inter 3, union 5; class 1: inter 4, union 5; class 2: inter 7, union 8
    got = run("miou", [scores], [sample])
    assert got.accuracy == pytest.approx((3 / 5 + 4 / 5 + 7 / 8) / 3) and got.scores is None


def seg_net() -> ov.Model:
    """Foreground probability = sigmoid(red - green), through two 1x1 convolutions (INT8-able)."""
    x = ops.parameter([1, 3, 16, 16], np.float32, name="image")
    w1 = np.zeros((4, 3, 1, 1), np.float32); w1[0, 0] = 1.0; w1[0, 1] = -1.0; w1[1:, 2] = 0.01
    h = ops.relu(ops.convolution(x, ops.constant(w1), [1, 1], [0, 0], [0, 0], [1, 1]))
    w2 = np.zeros((1, 4, 1, 1), np.float32); w2[0, 0] = 0.05
    y = ops.sigmoid(ops.add(ops.convolution(h, ops.constant(w2), [1, 1], [0, 0], [0, 0], [1, 1]),
                            ops.constant(np.full((1, 1, 1, 1), -5.0, np.float32))))
    return ov.Model([y], [x], "seg")


@pytest.fixture
def project(tmp_path):
    save(seg_net(), tmp_path / "seg.xml")
    rng = np.random.default_rng(0)
    for folder in ("images", "masks"):
        (tmp_path / "data" / folder).mkdir(parents=True)
    for i in range(24):
        img = rng.integers(0, 60, (16, 16, 3), dtype=np.uint8)
        y, x = rng.integers(0, 9, 2)
        img[y:y + 7, x:x + 7, 0] = 230  # a red square: the foreground
        mask = np.zeros((16, 16), np.uint8); mask[y:y + 7, x:x + 7] = 255
        Image.fromarray(img).save(tmp_path / "data" / "images" / f"{i}.png")
        Image.fromarray(mask).save(tmp_path / "data" / "masks" / f"{i}.png")
    spec = tmp_path / "seg.calibration.toml"
    spec.write_text('model = "seg.xml"\n[dataset]\nkind = "segmentation"\npath = "data"\n[accuracy]\nmetric = "iou"\n'
                    '[inference]\nduration = 0.2\nrounds = 2\n')
    return spec


def test_a_segmentation_net_is_calibrated_with_an_interval_on_its_iou(project):
    assert check_spec(project) == []
    res = calibrate(load_spec(project))
    assert res["metric"] == "iou" and res["fp32"]["accuracy"] > 0.95  # the net finds the red squares
    assert res["drop_ci"] is not None and res["drop_ci"][0] <= res["drop"] <= res["drop_ci"][1]
    assert abs(res["drop"]) < 0.05


def test_miou_has_no_interval_and_a_class_metric_on_masks_is_refused(project):
    project.write_text(project.read_text().replace('metric = "iou"', 'metric = "miou"'))
    res = calibrate(load_spec(project))
    assert res["drop_ci"] is None and res["fp32"]["accuracy"] > 0.9
    project.write_text(project.read_text().replace('metric = "miou"', 'metric = "top1"'))
    [p] = check_spec(project)
    assert p.rule == "usage-dataset-mismatch" and p.key == "accuracy.metric"
    with pytest.raises(CalibrationError):
        calibrate(load_spec(project))
    project.write_text(project.read_text().replace('metric = "top1"', 'metric = "iou"')
                       .replace('kind = "segmentation"', 'kind = "images"'))
    assert "usage-dataset-mismatch" in {p.rule for p in check_spec(project)}


def test_letterboxed_pictures_are_scored_on_their_own_pixels(project):
    """8x16 pictures letterboxed into the 16x16 input (rows 4-11): the masks are matched to that band,
    not stretched over the padding (which would shift every square by its row, and halve the IoU)."""
    rng = np.random.default_rng(1)
    data = project.parent / "data"
    for i in range(24):
        img = rng.integers(0, 60, (8, 16, 3), dtype=np.uint8)
        y, x = rng.integers(0, 4), rng.integers(0, 11)
        img[y:y + 5, x:x + 5, 0] = 230
        mask = np.zeros((8, 16), np.uint8); mask[y:y + 5, x:x + 5] = 255
        Image.fromarray(img).save(data / "images" / f"{i}.png")
        Image.fromarray(mask).save(data / "masks" / f"{i}.png")
    project.write_text(project.read_text() + '[preprocessing]\nletterbox = true\n')
    res = calibrate(load_spec(project))
    assert res["fp32"]["accuracy"] > 0.95 and res["drop_ci"] is not None
