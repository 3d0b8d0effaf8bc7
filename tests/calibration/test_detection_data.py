"""Detection datasets: COCO instances JSON and Pascal VOC XML read into boxes, and bad files reported
with the file and the key (and the line where the format has one), never a traceback."""
from __future__ import annotations

import json

import pytest

from int8wb.calibration import CalibrationError
from int8wb.calibration.annotations import read_coco, read_voc
from int8wb.calibration.checker import check_spec
from conftest import save
from detectors import coco_json, pictures, voc_xml, yolo_net


def problem(call, *args):
    with pytest.raises(CalibrationError) as caught:
        call(*args)
    [p] = caught.value.problems
    return p


@pytest.fixture
def coco(tmp_path):
    pics = pictures(tmp_path / "images", 3)
    return tmp_path / "images", coco_json(tmp_path / "instances.json", pics), pics


def test_coco_boxes_become_corners_with_classes_by_category_id(coco):
    images, path, pics = coco
    data = json.loads(path.read_text())
    data["categories"] = [{"id": 7, "name": "green"}, {"id": 3, "name": "red"}]  # by id: red first
    for ann in data["annotations"]:
        ann["category_id"] = 3 if ann["category_id"] == 1 else 7
    data["annotations"][0]["iscrowd"] = 1
    data["images"].append({"id": 99, "file_name": "p0.png", "width": 64, "height": 48})  # no objects
    path.write_text(json.dumps(data))
    entries, names = read_coco(path, images, None)
    assert names == ["red", "green"] and [e[0] for e in entries] == [str(images / f"p{i}.png") for i in (0, 1, 2, 0)]
    first = entries[0][1]
    (c0, x0, y0, w0, h0), (c1, x1, y1, w1, h1) = pics[0]["boxes"]
    assert first.size == (48, 64) and first.image_id == 0
    assert first.boxes.tolist() == [[x0, y0, x0 + w0, y0 + h0], [x1, y1, x1 + w1, y1 + h1]]
    assert first.classes.tolist() == [0, 1] and first.ignore.tolist() == [True, False]
    assert len(entries[3][1].boxes) == 0
    # `classes` gives the model's order
    assert read_coco(path, images, ["green", "red"])[0][0][1].classes.tolist() == [1, 0]
    p = problem(read_coco, path, images, ["green"])
    assert p.key == "categories" and "'red'" in p.message and p.path == str(path)


@pytest.mark.parametrize("edit, key, words", [
    (lambda d: d.pop("images"), "images", "required key is missing"),
    (lambda d: d["images"][1].pop("height"), "images[1].height", "required key is missing"),
    (lambda d: d["images"][2].update(file_name="gone.png"), "images[2].file_name", "image not found"),
    (lambda d: d["annotations"][3].update(bbox=[1, 2, 3]), "annotations[3].bbox", "[x, y, width, height]"),
    (lambda d: d["annotations"][0].update(bbox=[1, 2, -3, 4]), "annotations[0].bbox", "width, height >= 0"),
    (lambda d: d["annotations"][1].update(category_id="1"), "annotations[1].category_id", "expected int"),
    (lambda d: d["annotations"][1].update(category_id=5), "annotations[1].category_id", "not in categories"),
    (lambda d: d["annotations"][2].update(image_id=42), "annotations", "image_id 42"),
    (lambda d: d["categories"][0].pop("name"), "categories[0].name", "required key is missing"),
    (lambda d: d.update(images={}), "images", "expected list"),
])
def test_a_bad_coco_file_names_the_key(coco, edit, key, words):
    images, path, _ = coco
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    p = problem(read_coco, path, images, None)
    assert (p.path, p.key, p.rule) == (str(path), key, "dataset-format") and words in p.message


def test_invalid_json_names_its_line(coco):
    images, path, _ = coco
    path.write_text('{\n  "images": [\n    {"id": 1,}\n  ]\n}\n')
    p = problem(read_coco, path, images, None)
    assert p.line == 3 and "invalid JSON" in p.message
    path.write_text("[1, 2]")
    assert "JSON object" in problem(read_coco, path, images, None).message


def test_voc_files_pair_with_images_by_name(tmp_path):
    pics = pictures(tmp_path / "images", 2)
    folder = voc_xml(tmp_path / "xml", pics)
    text = (folder / "p1.xml").read_text()
    (folder / "p1.xml").write_text(text.replace("<difficult>0</difficult>", "<difficult>1</difficult>", 1)
                                   .replace("<width>64</width><height>48</height>", "<width>0</width><height>0</height>"))
    entries, names = read_voc(folder, sorted((tmp_path / "images").iterdir()), None)
    assert names == ["green", "red"]  # sorted: VOC's own order for its 20 classes
    (c0, x0, y0, w0, h0), (c1, x1, y1, w1, h1) = pics[1]["boxes"]
    second = entries[1][1]
    assert second.boxes.tolist() == [[x0, y0, x0 + w0, y0 + h0], [x1, y1, x1 + w1, y1 + h1]]
    assert second.classes.tolist() == [1, 0] and second.ignore.tolist() == [True, False]
    assert second.size == (48, 64)  # <size> 0: read from the image


@pytest.mark.parametrize("edit, key, words, line", [
    (lambda t: t.replace("</annotation>", ""), "annotation", "invalid XML", 1),
    (lambda t: t.replace("<xmin>", "<xmin>x", 1), "object[0]/bndbox/xmin", "expected a number", None),
    (lambda t: t.replace("<ymax>", "<!--", 1).replace("</ymax>", "-->", 1), "object[0]/bndbox/ymax",
     "required element is missing", None),
    (lambda t: t.replace("<name>red</name>", "", 1), "object[0]/name", "required element is missing", None),
    (lambda t: t.replace("annotation>", "doc>"), "doc", "<annotation>", None),
])
def test_a_bad_voc_file_names_the_file_and_element(tmp_path, edit, key, words, line):
    folder = voc_xml(tmp_path / "xml", pictures(tmp_path / "images", 2))
    (folder / "p1.xml").write_text(edit((folder / "p1.xml").read_text()))
    p = problem(read_voc, folder, sorted((tmp_path / "images").iterdir()), None)
    assert (p.path, p.key, p.rule) == (str(folder / "p1.xml"), key, "dataset-format") and words in p.message
    assert p.line == line


def test_an_image_without_its_xml_is_named(tmp_path):
    folder = voc_xml(tmp_path / "xml", pictures(tmp_path / "images", 2))
    (folder / "p0.xml").unlink()
    p = problem(read_voc, folder, sorted((tmp_path / "images").iterdir()), None)
    assert p.key == "annotations" and "p0.png" in p.message and p.fix


def test_the_checker_reports_a_bad_annotation_file_on_the_spec_too(coco):
    images, path, _ = coco
    save(yolo_net(), images.parent / "det.xml")
    spec = images.parent / "det.calibration.toml"
    spec.write_text('model = "det.xml"\n[dataset]\nkind = "coco"\npath = "images"\nannotations = "instances.json"\n'
                    '[preprocessing]\nletterbox = true\n[accuracy]\nmetric = "coco_map"\ndecoder = "yolo"\n')
    assert check_spec(spec) == []
    path.write_text(path.read_text().replace('"bbox": [', '"bbox": ["a", ', 1))
    problems = check_spec(spec)
    assert {(p.path, p.key) for p in problems} == {(str(path), "annotations[0].bbox"), (str(spec), "dataset.path")}
    assert all(p.rule == "dataset-format" for p in problems)
