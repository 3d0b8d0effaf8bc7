"""Object detection: decoders on hand-built outputs, mAP checked against hand-computed cases, and tiny
SSD- and YOLO-style detectors calibrated end to end on COCO and VOC datasets."""
from __future__ import annotations

import numpy as np
import pytest

from int8wb.calibration import CalibrationError, load_spec
from int8wb.calibration.annotations import Boxes
from int8wb.calibration.checker import check_spec
from int8wb.calibration.decoders import Detections, decode, to_original
from int8wb.calibration.detection import Detection, mean_average_precision
from int8wb.calibration.spec import AccuracySpec
from int8wb.calibration.workflow import calibrate
from conftest import save
from detectors import coco_json, pictures, ssd_net, voc_xml, yolo_net


def image(boxes, classes=None, size=(100, 200), ignore=None, input_size=None, placement=(1.0, 1.0, 0, 0)):
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    n = len(boxes)
    return Boxes(0, size, boxes, np.asarray(classes if classes is not None else [0] * n, np.int64),
                 np.asarray(ignore if ignore is not None else [False] * n, bool), input_size or size, placement)


def found(boxes, scores, classes=None) -> Detections:
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return Detections(boxes, np.asarray(scores, np.float64),
                      np.asarray(classes if classes is not None else [0] * len(boxes), np.int64))


def both(truth, dets) -> tuple[float, float]:
    return (mean_average_precision(truth, dets, "coco_map", 100),
            mean_average_precision(truth, dets, "voc_map50", 100))


# --- metric: hand-computed cases -------------------------------------------------------------------

def test_perfect_boxes_score_one():
    truth = [image([[10, 10, 50, 40]]), image([[0, 0, 20, 20], [100, 50, 180, 90]], [0, 1])]
    dets = [found([[10, 10, 50, 40]], [0.9]), found([[100, 50, 180, 90], [0, 0, 20, 20]], [0.8, 0.7], [1, 0])]
    assert both(truth, dets) == (pytest.approx(1.0), pytest.approx(1.0))


def test_one_of_two_objects_missed():
    # recall reaches 0.5 at precision 1: 51 of COCO's 101 recall points (0, 0.01 .. 0.50) score 1
    truth = [image([[10, 10, 50, 40]]), image([[60, 20, 90, 70]])]
    dets = [found([[10, 10, 50, 40]], [0.9]), found([], [])]
    assert both(truth, dets) == (pytest.approx(51 / 101), pytest.approx(51 / 101))


def test_a_shifted_box_counts_only_at_the_iou_thresholds_it_reaches():
    truth = [image([[0, 0, 10, 10]])]
    # shifted by 2: intersection 80, union 120, IoU 0.667: a hit at 0.50, 0.55, 0.60, 0.65 of the ten
    assert both(truth, [found([[2, 0, 12, 10]], [0.9])]) == (pytest.approx(0.4), pytest.approx(1.0))
    # shifted by 4: IoU 60 / 140 = 0.43, below 0.5: a miss and a false positive
    assert both(truth, [found([[4, 0, 14, 10]], [0.9])]) == (pytest.approx(0.0), pytest.approx(0.0))


def test_a_false_positive_ranked_first_halves_the_precision():
    # ranked: wrong (precision 0), right (recall 1 at precision 1/2): every recall point scores 1/2
    truth = [image([[0, 0, 10, 10]])]
    dets = [found([[50, 50, 60, 60], [0, 0, 10, 10]], [0.9, 0.8])]
    assert both(truth, dets) == (pytest.approx(0.5), pytest.approx(0.5))
    # ranked the other way round, the false positive comes after full recall: no cost
    assert both(truth, [found([[50, 50, 60, 60], [0, 0, 10, 10]], [0.7, 0.8])])[1] == pytest.approx(1.0)


def test_the_wrong_class_is_a_miss_and_crowd_objects_are_neither_hit_nor_miss():
    truth = [image([[0, 0, 10, 10]], [1])]
    assert both(truth, [found([[0, 0, 10, 10]], [0.9], [0])])[1] == pytest.approx(0.0)
    truth = [image([[0, 0, 10, 10], [50, 50, 90, 90]], [0, 0], ignore=[False, True])]
    assert both(truth, [found([[0, 0, 10, 10]], [0.9])]) == (pytest.approx(1.0), pytest.approx(1.0))


def test_no_box_found_scores_zero_and_no_box_to_find_is_nan():
    assert both([image([[0, 0, 10, 10]])], [found([], [])]) == (0.0, 0.0)
    assert np.isnan(mean_average_precision([image([])], [found([[0, 0, 5, 5]], [0.5])], "coco_map", 100))


def test_max_detections_keeps_the_best_boxes_of_an_image():
    truth = [image([[0, 0, 10, 10]])]
    dets = [found([[50, 50, 60, 60], [0, 0, 10, 10]], [0.9, 0.8])]
    assert mean_average_precision(truth, dets, "voc_map50", 1) == pytest.approx(0.0)  # the right box was 2nd


# --- decoders on hand-built outputs ----------------------------------------------------------------

def controls(**keys) -> AccuracySpec:
    return AccuracySpec(metric="coco_map", **keys)


def test_ssd_reads_rows_until_the_padding_and_drops_the_background():
    rows = np.array([[0, 1, 0.9, 0.1, 0.2, 0.5, 0.6],
                     [0, 0, 0.99, 0.0, 0.0, 1.0, 1.0],     # label 0: the background with label_offset 1
                     [0, 2, 0.0005, 0.1, 0.1, 0.2, 0.2],   # below the default score threshold 0.001
                     [-1, 0, 0, 0, 0, 0, 0],
                     [0, 1, 0.9, 0.0, 0.0, 0.1, 0.1]], np.float32)  # after the padding: not a box
    got = decode(rows[None, None], controls(decoder="ssd", label_offset=1), image([]))
    np.testing.assert_allclose(got.boxes, [[20, 20, 100, 60]], atol=1e-4)
    assert got.classes.tolist() == [0] and got.scores.tolist() == pytest.approx([0.9])


def test_yolo_keeps_each_anchors_best_class_and_suppresses_overlaps_within_a_class():
    anchors = np.array([[50, 50, 20, 20, 0.9, 0.1],    # kept
                        [52, 50, 20, 20, 0.8, 0.0],    # IoU 0.82 with the first, same class: suppressed
                        [52, 50, 20, 20, 0.0, 0.7],    # same place, other class: kept
                        [150, 50, 20, 20, 0.6, 0.0],   # elsewhere: kept
                        [150, 80, 20, 20, 0.0005, 0]],  # below the threshold
                       np.float32).T[None]             # [1, 4 + 2, 5]
    got = decode(anchors, controls(decoder="yolo"), image([]))
    np.testing.assert_allclose(got.boxes, [[40, 40, 60, 60], [42, 40, 62, 60], [140, 40, 160, 60]], atol=1e-4)
    assert got.classes.tolist() == [0, 1, 0] and got.scores.tolist() == pytest.approx([0.9, 0.7, 0.6])
    loose = decode(anchors, controls(decoder="yolo", nms_iou=0.9, score_threshold=0.0001), image([]))
    assert len(loose.boxes) == 5


def test_db_makes_regions_into_grown_boxes_and_drops_small_and_faint_ones():
    prob = np.zeros((1, 1, 40, 60), np.float32)
    prob[0, 0, 10:20, 5:35] = 0.9    # 30 x 10: grown by 300 * 1.5 / 80 = 5.625 on every side
    prob[0, 0, 30:32, 50:52] = 0.9   # 2 x 2: below min_size 3
    prob[0, 0, 30:38, 10:30] = 0.4   # text by binary_threshold 0.3, but its mean 0.4 is below 0.6
    got = decode(prob, controls(decoder="db"), image([], size=(40, 60)))
    np.testing.assert_allclose(got.boxes, [[0, 4.375, 40.625, 25.625]], atol=1e-4)  # x1 clipped to the image
    assert got.scores.tolist() == pytest.approx([0.9]) and got.classes.tolist() == [0]
    # a map at half the input's size: boxes are scaled to the input, then to the image
    got = decode(prob, controls(decoder="db", unclip_ratio=0), image([], size=(80, 120)))
    np.testing.assert_allclose(got.boxes, [[10, 20, 70, 40]], atol=1e-4)


def test_boxes_are_mapped_back_through_the_letterbox():
    # a 64x48 picture letterboxed into 32x32: halved, 4 rows of padding above
    picture = image([], size=(48, 64), input_size=(32, 32), placement=(0.5, 0.5, 4, 0))
    assert to_original(np.array([[0, 4, 32, 28], [3, 5, 7, 9], [-2, 0, 40, 40]]), picture).tolist() == \
        [[0, 0, 64, 48], [6, 2, 14, 10], [0, 0, 64, 48]]


@pytest.mark.parametrize("prep, expect", [
    ({"letterbox": True, "align": "center"}, (19 / 30, 32 / 50, 6, 0)),     # 30x50 -> 19x32, 6 rows above
    ({"letterbox": True, "align": "top-left"}, (19 / 30, 32 / 50, 0, 0)),
    ({"letterbox": False}, (32 / 30, 32 / 50, 0, 0)),                        # stretched, no padding
    ({"letterbox": True, "resize": [16, 40]}, (16 / 30, 27 / 50, 0, 6)),     # 16x27 in 16x40, 6 columns left
])
def test_the_placement_is_where_the_preprocessing_puts_the_image(tmp_path, prep, expect):
    from PIL import Image as PILImage
    from int8wb.calibration.inspection import TensorInfo
    from int8wb.calibration.preprocessing import ImagePreprocessor
    from int8wb.calibration.spec import PreprocessingSpec
    PILImage.new("RGB", (50, 30), (0, 255, 0)).save(tmp_path / "g.png")
    pre = ImagePreprocessor(PreprocessingSpec(pad_value=0, **prep), TensorInfo("x", [1, 3, 32, 32], "f32"))
    scale_y, scale_x, top, left = placement = pre.placement(30, 50)
    assert placement == pytest.approx(expect)
    green = pre.pixels(str(tmp_path / "g.png"))[..., 1] > 0
    rows, cols = np.flatnonzero(green.any(1)), np.flatnonzero(green.any(0))
    assert (rows[0], cols[0], rows[-1] + 1, cols[-1] + 1) == \
        (top, left, top + round(30 * scale_y), left + round(50 * scale_x))


@pytest.mark.parametrize("decoder, shape", [("ssd", (1, 1, 5, 6)), ("yolo", (1, 4, 10)), ("yolo", (2, 6, 10)),
                                            ("db", (1, 2, 8, 8))])
def test_an_output_the_decoder_cannot_read_is_named(decoder, shape):
    with pytest.raises(ValueError, match=rf"decoder '{decoder}' reads .*; the output is {list(shape)}".replace("[", r"\[")):
        decode(np.zeros(shape, np.float32), controls(decoder=decoder), image([]))


def test_a_sample_without_boxes_is_a_located_metric_error():
    class Plain:
        label = 3
    tally = Detection("coco_map", controls(decoder="yolo")).tally(1)
    with pytest.raises(ValueError, match="compares boxes"):
        tally.add(0, np.zeros((1, 6, 2), np.float32), Plain(), None)


# --- end to end ------------------------------------------------------------------------------------

SPEC = """model = "det.xml"
[dataset]
kind = "coco"
path = "images"
annotations = "instances.json"
[preprocessing]
letterbox = true
[accuracy]
metric = "coco_map"
decoder = "yolo"
[inference]
duration = 0.2
rounds = 2
"""


@pytest.fixture
def coco_project(tmp_path):
    save(yolo_net(), tmp_path / "det.xml")
    coco_json(tmp_path / "instances.json", pictures(tmp_path / "images", 16))
    spec = tmp_path / "det.calibration.toml"
    spec.write_text(SPEC)
    return spec


# The box arithmetic of a detection head stays in floating point: quantized, the edges (0..32 input
# pixels) would move by up to a quantization step.
HEAD_IN_FLOAT = '[calibration.ignored_scope]\ntypes = ["Multiply", "Subtract", "Add"]\n'


def test_a_yolo_detector_on_coco_is_calibrated_and_its_boxes_map_back_exactly(coco_project):
    coco_project.write_text(coco_project.read_text() + HEAD_IN_FLOAT)
    assert check_spec(coco_project) == []
    res = calibrate(load_spec(coco_project))
    assert res["metric"] == "coco_map" and res["fp32"]["accuracy"] == pytest.approx(1.0)
    assert res["int8"]["accuracy"] == pytest.approx(1.0) and res["drop"] == pytest.approx(0.0)
    assert res["drop_ci"] == [0.0, 0.0] and "no_interval" not in res  # the same boxes on every resample


def test_a_quantized_head_moves_the_boxes_and_the_drop_shows_it(coco_project):
    res = calibrate(load_spec(coco_project))
    assert res["fp32"]["accuracy"] == pytest.approx(1.0) and res["int8"]["accuracy"] < 0.9
    assert res["drop"] == pytest.approx(res["fp32"]["accuracy"] - res["int8"]["accuracy"], abs=1e-6)
    low, high = res["drop_ci"]
    assert 0 < low <= res["drop"] <= high  # a bootstrap over the images, paired


def test_an_ssd_detector_on_voc_is_calibrated_with_the_classes_in_the_models_order(tmp_path):
    save(ssd_net(), tmp_path / "det.xml")
    voc_xml(tmp_path / "xml", pictures(tmp_path / "images", 12, seed=1))
    spec = tmp_path / "det.calibration.toml"
    spec.write_text(SPEC.replace('kind = "coco"', 'kind = "voc"\nclasses = ["red", "green"]')
                    .replace('"instances.json"', '"xml"').replace('"coco_map"', '"voc_map50"')
                    .replace('"yolo"', '"ssd"\nlabel_offset = 1') + HEAD_IN_FLOAT.replace(', "Add"', ""))
    assert check_spec(spec) == []
    res = calibrate(load_spec(spec))
    assert res["metric"] == "voc_map50" and res["fp32"]["accuracy"] == pytest.approx(1.0)
    assert res["int8"]["accuracy"] == pytest.approx(1.0)
    # without `classes`, VOC's sorted names make green class 0: every box has the wrong class
    spec.write_text(spec.read_text().replace('classes = ["red", "green"]\n', ""))
    from int8wb.calibration.datasets import open_dataset
    from int8wb.calibration.inspection import inspect_model
    loaded = load_spec(spec)
    assert open_dataset(loaded, inspect_model(str(tmp_path / "det.xml"))).classes == ["green", "red"]


def test_a_detection_usage_without_boxes_is_refused_with_a_fix(coco_project):
    text = coco_project.read_text()
    coco_project.write_text(text.replace('kind = "coco"', 'kind = "images"').replace('annotations = "instances.json"\n', ""))
    [p] = [p for p in check_spec(coco_project) if p.rule == "usage-dataset-mismatch"]
    assert p.key == "dataset.kind" and "coco" in p.fix
    with pytest.raises(CalibrationError):
        calibrate(load_spec(coco_project))
    # a COCO file with images but no annotations at all
    json_file = coco_project.parent / "instances.json"
    json_file.write_text(json_file.read_text().split(', "annotations"')[0] + ', "categories": []}')
    coco_project.write_text(text)
    [p] = check_spec(coco_project)
    assert p.rule == "unannotated-dataset" and "boxes" in p.message and "annotations" in p.fix
    # a COCO dataset without its annotations file
    coco_project.write_text(text.replace('annotations = "instances.json"\n', ""))
    [p] = check_spec(coco_project)
    assert p.rule == "dataset-missing" and p.key == "dataset.kind" and "annotations" in p.fix


def test_a_detection_metric_needs_a_decoder_and_boxes_need_a_detection_metric(coco_project):
    text = coco_project.read_text()
    coco_project.write_text(text.replace('decoder = "yolo"\n', ""))
    [p] = check_spec(coco_project)
    assert p.key == "accuracy" and 'decoder = "ssd", "yolo" or "db"' in p.message
    coco_project.write_text(text.replace('metric = "coco_map"\ndecoder = "yolo"', 'metric = "top1"'))
    [p] = check_spec(coco_project)
    assert p.rule == "usage-dataset-mismatch" and p.key == "accuracy.metric" and "coco_map" in p.fix


# --- the bootstrap over images ---------------------------------------------------------------------

def random_pass(rng, images: int, classes: int = 3):
    truth, dets = [], []
    for _ in range(images):
        n = int(rng.integers(0, 5))
        xy = rng.uniform(0, 80, (n, 2))
        boxes = np.hstack([xy, xy + rng.uniform(5, 30, (n, 2))])
        truth.append(image(boxes, rng.integers(0, classes, n), ignore=rng.random(n) < 0.1))
        keep = rng.random(n) < 0.8  # some found, moved a little, a few with the wrong class; some noise
        moved = boxes[keep] + rng.normal(0, 2, (int(keep.sum()), 4))
        noise = np.hstack([rng.uniform(0, 80, (2, 2))] * 2) + [0, 0, 10, 10]
        labels = np.where(rng.random(int(keep.sum())) < 0.9, truth[-1].classes[keep], 0)
        dets.append(found(np.vstack([moved, noise]), rng.random(int(keep.sum()) + 2),
                          np.concatenate([labels, rng.integers(0, classes, 2)])))
    return truth, dets


@pytest.mark.parametrize("seed", range(4))
def test_the_resampled_ap_of_the_whole_pass_is_pycocotools_own(seed):
    from int8wb.calibration.detection import match_boxes
    truth, dets = random_pass(np.random.default_rng(seed), 12)
    matches = match_boxes(truth, dets, 100)
    for name in ("coco_map", "voc_map50"):
        assert matches.resampled(np.ones(12, np.int64), name) == pytest.approx(matches.value(name), abs=1e-12)
        assert 0 < matches.value(name) < 1
    # an image taken twice weighs twice: the same as a pass that holds it twice
    counts = np.array([2, 1, 0, 1] * 3)
    twice = [(t, d) for t, d, c in zip(truth, dets, counts) for _ in range(c)]
    again = match_boxes([t for t, _ in twice], [d for _, d in twice], 100)
    assert matches.resampled(counts, "coco_map") == pytest.approx(again.value("coco_map"), abs=1e-9)


def test_the_drop_has_a_paired_interval_over_images():
    from int8wb.calibration.stats import paired_drop_ci
    rng = np.random.default_rng(5)
    truth, dets = random_pass(rng, 30)
    worse = [found(d.boxes + rng.normal(0, 3, d.boxes.shape), d.scores, d.classes) for d in dets]

    def tallied(found_boxes):
        tally = Detection("coco_map", controls(decoder="yolo")).tally(len(truth))
        tally.truth, tally.found = list(truth), list(found_boxes)
        return tally.finish()
    fp32, int8 = tallied(dets), tallied(worse)
    drop = fp32.accuracy - int8.accuracy
    low, high = paired_drop_ci(fp32.scores, int8.scores, resamples=300)
    assert drop > 0.05 and low < drop < high and low > 0  # moved boxes: a drop the images vouch for
    assert paired_drop_ci(fp32.scores, tallied(dets).scores, resamples=300) == (0.0, 0.0)


def test_accuracy_aware_keeps_the_box_arithmetic_in_float_to_meet_its_budget(coco_project):
    coco_project.write_text(coco_project.read_text() + '[calibration]\nmethod = "accuracy_aware"\nmax_drop = 0.01\n')
    res = calibrate(load_spec(coco_project))
    assert res["budget"]["met"] and res["int8"]["accuracy"] == pytest.approx(1.0)
    assert res["drop_ci"] == [0.0, 0.0] and res["fp32_layers"]  # some of the head went back to FP32
    assert res["budget"]["bound"] == pytest.approx(0.0)  # bounded by the bootstrap over images


def test_the_wrong_decoder_is_found_before_anything_runs(coco_project):
    coco_project.write_text(coco_project.read_text().replace('decoder = "yolo"', 'decoder = "ssd"'))
    [p] = check_spec(coco_project)
    assert (p.rule, p.key) == ("decoder-output-mismatch", "accuracy.decoder") and "[1,6,2]" in p.message
    with pytest.raises(CalibrationError) as caught:
        calibrate(load_spec(coco_project))
    assert [p.rule for p in caught.value.problems] == ["decoder-output-mismatch"]
    assert not (coco_project.parent / "calibrated").exists()


def test_an_output_only_known_when_running_is_checked_then(coco_project):
    import openvino as ov
    from int8wb.calibration.datasets import open_dataset
    from int8wb.calibration.evaluation import evaluate
    from int8wb.calibration.inspection import inspect_model
    spec = load_spec(coco_project)
    dataset = open_dataset(spec, inspect_model(str(coco_project.parent / "det.xml")))
    compiled = ov.Core().compile_model(str(coco_project.parent / "det.xml"), "CPU")
    with pytest.raises(CalibrationError) as caught:  # evaluation checks too: an IR may leave the shape open
        evaluate(compiled, dataset, [0, 1], Detection("coco_map", controls(decoder="ssd")))
    [p] = caught.value.problems
    assert p.rule == "metric-error" and "reads [1, 1, N, 7]; the output is [1, 6, 2]" in p.message \
        and "p0.png" in p.message


def test_the_fp32_side_of_the_bootstrap_is_computed_once():
    from int8wb.calibration.stats import Resampled, drop_upper_bound, paired_drop_ci
    calls = []

    def mean_of(values):
        def of(rows):
            calls.append(len(rows))
            return values[rows].mean(axis=1)
        return of
    values = np.random.default_rng(0).random(40)
    fp32 = Resampled(40, mean_of(values))
    first = paired_drop_ci(fp32, Resampled(40, mean_of(values - 0.1)), resamples=500)
    done = sum(calls)
    second = paired_drop_ci(fp32, Resampled(40, mean_of(values - 0.1)), resamples=500)
    assert first == second and sum(calls) - done == 500  # only the new candidate's resamples
    assert first[0] == pytest.approx(0.1) and first[1] == pytest.approx(0.1)  # a constant shift: exactly it
    assert drop_upper_bound(fp32, Resampled(40, mean_of(values)), confidence=0.95) == pytest.approx(0.0)
