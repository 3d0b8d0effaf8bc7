"""Semantic segmentation: image + mask pairs, IoU / mIoU / pixel accuracy checked against hand-counted
cases, and a tiny segmentation net calibrated end to end with its intervals."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import openvino as ov
import pytest
from openvino import opset13 as ops
from PIL import Image

from int8wb.calibration import CalibrationError, load_spec
from int8wb.calibration.checker import check_spec
from int8wb.calibration.report import summary_rows
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
    assert got.accuracy == pytest.approx((3 / 5 + 4 / 5 + 7 / 8) / 3)


def one_hot(pred, classes: int = 3) -> np.ndarray:
    return np.stack([(np.asarray(pred) == c).astype(np.float32) for c in range(classes)])[None]


def test_miou_sums_each_class_over_the_images_before_dividing(tmp_path):
    mask0, pred0 = [[0, 0, 1, 1], [0, 0, 0, 0]], [[0, 1, 1, 0], [0, 0, 0, 0]]
    mask1, pred1 = [[0, 0, 2, 2], [0, 0, 0, 0]], [[0, 0, 0, 0], [2, 2, 0, 0]]
    samples = masks(tmp_path, mask0, mask1)
    # image 0: class 0 inter 5 union 7, class 1 inter 1 union 3; image 1: class 0 inter 4 union 8,
    # class 2 inter 0 union 4 (predicted where it is not, missed where it is)
    got = run("miou", [one_hot(pred0), one_hot(pred1)], samples)
    assert got.accuracy == pytest.approx((9 / 15 + 1 / 3 + 0 / 4) / 3)  # not the mean of the images' mIoUs
    # the resampled figure: all images once is the pass's; image 1 alone knows no class 1; an image
    # taken twice weighs as a pass that holds it twice
    assert got.scores.of(np.array([[0, 1], [1, 1]])).tolist() == pytest.approx([got.accuracy, (4 / 8 + 0 / 4) / 2])
    twice = run("miou", [one_hot(pred0), one_hot(pred0), one_hot(pred1)], [samples[0], samples[0], samples[1]])
    assert twice.accuracy == pytest.approx((14 / 22 + 2 / 6 + 0 / 4) / 3)
    assert got.scores.of(np.array([[0, 0, 1]]))[0] == pytest.approx(twice.accuracy)


def planted(tmp_path, images: int, changed: int):
    """FP32 and INT8 passes of mIoU over `images` 3-class masks: INT8 predicts a class-1 block as
    background on the first `changed` images, the same as FP32 elsewhere."""
    rng = np.random.default_rng(3)
    arrays, fp32, int8 = [], [], []
    for i in range(images):
        mask = np.zeros((8, 8), np.uint8)
        mask[:4, :4], mask[4:, 4:] = 1, 2
        pred = mask.copy()
        pred[rng.integers(0, 8, 3), rng.integers(0, 8, 3)] = rng.integers(0, 3, 3)  # a few pixels wrong
        worse = pred.copy()
        if i < changed:
            worse[:2, :4] = 0
        arrays.append(mask); fp32.append(one_hot(pred)); int8.append(one_hot(worse))
    samples = masks(tmp_path, *arrays)
    return run("miou", fp32, samples), run("miou", int8, samples)


def test_miou_drop_has_a_paired_bootstrap_interval_over_images(tmp_path):
    from int8wb.calibration.stats import drop_upper_bound, paired_drop_ci
    fp32, int8 = planted(tmp_path, 40, 8)
    drop = fp32.accuracy - int8.accuracy
    low, high = paired_drop_ci(fp32.scores, int8.scores, resamples=500)
    assert drop > 0.02 and 0 < low < drop < high  # 8 images of 40 moved the same way: a drop they vouch for
    assert drop_upper_bound(fp32.scores, int8.scores) > drop
    same = planted(tmp_path, 40, 0)
    assert paired_drop_ci(same[0].scores, same[1].scores, resamples=500) == (0.0, 0.0)
    one = planted(tmp_path, 40, 1)  # one image of 40: most resamples hold it, many do not
    low, high = paired_drop_ci(one[0].scores, one[1].scores, resamples=500)
    assert low == 0.0 < one[0].accuracy - one[1].accuracy < high


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


def test_miou_has_an_interval_and_a_class_metric_on_masks_is_refused(project):
    project.write_text(project.read_text().replace('metric = "iou"', 'metric = "miou"'))
    res = calibrate(load_spec(project))
    assert res["fp32"]["accuracy"] > 0.9 and "no_interval" not in res
    assert res["drop_ci"][0] <= res["drop"] <= res["drop_ci"][1]
    low, high = (f"{v * 100:+.2f}" for v in res["drop_ci"])
    assert f"[{low}, {high}]" in summary_rows(res)[0][3]  # the terminal's row
    report = Path(res["output"]["report"]).read_text()
    assert 'data-field="drop_ci">95 % interval' in report and 'data-field="no_interval"' not in report
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


def test_accuracy_aware_bounds_a_miou_drop_with_the_bootstrap_over_images(project):
    project.write_text(project.read_text().replace('metric = "iou"', 'metric = "miou"')
                       + '[calibration]\nmethod = "accuracy_aware"\nmax_drop = 0.2\n[gate]\nmax_drop = 0.05\n')
    res = calibrate(load_spec(project))
    budget = res["budget"]
    assert budget["met"] and "95% confidence (one-sided, paired bootstrap)" in budget["guarantee"]
    # the one-sided 95 % bound: within the two-sided 95 % interval's upper end, above the measured drop
    assert res["drop"] <= budget["bound"] <= res["drop_ci"][1] and "no_interval" not in res
    # 24 images cannot vouch for the gate's 0.05 whatever the model does: the result says so
    assert any("cannot resolve max_drop = 0.05" in n for n in res["notes"])
