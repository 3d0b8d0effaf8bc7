"""Pascal VOC as its VOCdevkit lays it out (Annotations/, JPEGImages/, ImageSets/Main/<split>.txt): the
split's list picks the images, and a bad split or a listed id without its files is named with the file
and line."""
from __future__ import annotations

import pytest
from PIL import Image

from int8wb.calibration import CalibrationError, load_spec
from int8wb.calibration.checker import check_spec
from int8wb.calibration.datasets import open_dataset
from int8wb.calibration.inspection import inspect_model
from int8wb.calibration.workflow import calibrate
from conftest import save
from detectors import pictures, ssd_net, voc_xml

SPEC = """model = "det.xml"
[dataset]
kind = "voc"
path = "VOCdevkit/VOC2012"
split = "val"
classes = ["red", "green"]
[preprocessing]
letterbox = true
[accuracy]
metric = "voc_map50"
decoder = "ssd"
label_offset = 1
[inference]
duration = 0.2
rounds = 2
[calibration.ignored_scope]
types = ["Multiply", "Subtract"]
"""


@pytest.fixture
def devkit(tmp_path):
    """Six pictures as JPEGs with their XML files; train lists p0-p2, val p5, p3, p4 (its own order),
    and a class's list (red_val.txt) sits beside them as in the real tree."""
    root = tmp_path / "VOCdevkit" / "VOC2012"
    pics = pictures(tmp_path / "pngs", 6, seed=1)
    (root / "JPEGImages").mkdir(parents=True)
    for p in pics:
        # JPEG at full quality: the squares' edges stay where the boxes say
        Image.open(tmp_path / "pngs" / p["file"]).save(root / "JPEGImages" / p["file"].replace(".png", ".jpg"),
                                                       quality=100, subsampling=0)
    voc_xml(root / "Annotations", pics)
    main = root / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (main / "train.txt").write_text("p0\np1\np2\n")
    (main / "val.txt").write_text("p5\np3\n\np4\n")
    (main / "red_val.txt").write_text("p5  1\np3 -1\np4  1\n")
    save(ssd_net(), tmp_path / "det.xml")
    spec = tmp_path / "det.calibration.toml"
    spec.write_text(SPEC)
    return spec


def scanned(spec_path):
    spec = load_spec(spec_path)
    return open_dataset(spec, inspect_model(str(spec_path.parent / "det.xml")))


def problem(spec_path):
    with pytest.raises(CalibrationError) as caught:
        scanned(spec_path)
    [p] = caught.value.problems
    return p


def test_the_split_list_picks_the_images_in_its_order(devkit):
    assert check_spec(devkit) == []
    val = scanned(devkit)
    assert [e.source.rsplit("/", 1)[1] for e in val.entries] == ["p5.jpg", "p3.jpg", "p4.jpg"]
    assert val.classes == ["red", "green"] and [len(e.label.boxes) for e in val.entries] == [2, 2, 2]
    devkit.write_text(devkit.read_text().replace('split = "val"', 'split = "train"'))
    assert [e.source.rsplit("/", 1)[1] for e in scanned(devkit).entries] == ["p0.jpg", "p1.jpg", "p2.jpg"]


def test_a_detector_is_scored_on_the_split(devkit):
    res = calibrate(load_spec(devkit))
    assert res["accuracy_on"]["size"] == 3 and res["fp32"]["accuracy"] == pytest.approx(1.0)


def test_a_split_without_its_list_names_the_spec_line_and_the_lists_there(devkit):
    devkit.write_text(devkit.read_text().replace('split = "val"', 'split = "tset"'))
    p = problem(devkit)
    assert (p.path, p.line, p.key, p.rule) == (str(devkit), 5, "dataset.split", "dataset-missing")
    assert "tset.txt" in p.message and "(splits there: train, val)" in p.message  # not a class's list
    assert [q.key for q in check_spec(devkit)] == ["dataset.split"]


@pytest.mark.parametrize("listing, text, line, words", [
    ("val.txt", "p5\np3\np9\n", 3, "image p9 not found"),
    ("val.txt", "p5\n\np5\n", 3, "listed twice (first at line 1)"),
    ("red_val.txt", None, 1, "expected one image id"),
])
def test_a_bad_list_line_is_named_with_its_file_and_line(devkit, listing, text, line, words):
    main = devkit.parent / "VOCdevkit" / "VOC2012" / "ImageSets" / "Main"
    if text is not None:
        (main / listing).write_text(text)
    else:
        devkit.write_text(devkit.read_text().replace('split = "val"', 'split = "red_val"'))
    p = problem(devkit)
    assert (p.path, p.line, p.rule) == (str(main / listing), line, "dataset-format") and words in p.message


def test_a_listed_image_without_its_xml_is_named_at_its_line(devkit):
    root = devkit.parent / "VOCdevkit" / "VOC2012"
    (root / "Annotations" / "p3.xml").unlink()
    p = problem(devkit)
    assert (p.path, p.line) == (str(root / "ImageSets" / "Main" / "val.txt"), 2) and "p3.xml not found" in p.message


def test_split_is_for_voc_alone_and_names_a_list(devkit):
    for bad, words in (('kind = "voc"', 'kind = "coco"'), ('split = "val"', 'split = "../val"')):
        devkit.write_text(SPEC.replace(*(bad, words)))
        with pytest.raises(CalibrationError) as caught:
            load_spec(devkit)
        [p] = [q for q in caught.value.problems if q.key == "dataset.split"]
        assert p.line == 5 and p.path == str(devkit)
