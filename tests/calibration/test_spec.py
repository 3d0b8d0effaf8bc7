import json

import pytest

from int8wb.calibration import CalibrationError, load_spec
from int8wb.calibration.spec import SCHEMA_PATH, json_schema

GOOD = """\
model = "model.xml"

[dataset]
kind = "imagenet"
path = "data"
subset = "10%"
"""


def problems(tmp_path, text):
    path = tmp_path / "a.calibration.toml"
    path.write_text(text)
    with pytest.raises(CalibrationError) as exc:
        load_spec(path)
    return exc.value.problems


def test_defaults_and_relative_paths(tmp_path):
    path = tmp_path / "sub" / "a.calibration.toml"
    path.parent.mkdir()
    path.write_text(GOOD)
    spec = load_spec(path)
    assert spec.model_path == tmp_path / "sub" / "model.xml"
    assert spec.device == "CPU" and spec.calibration.method == "default" and spec.accuracy.metric == "top1"
    assert spec.dataset.subset_size(1000) == 100 and spec.dataset.subset_size(5) == 0
    assert spec.output_dir == tmp_path / "sub" / "calibrated"


def test_count_subset(tmp_path):
    path = tmp_path / "a.calibration.toml"
    path.write_text(GOOD.replace('"10%"', "300"))
    assert load_spec(path).dataset.subset_size(100) == 100


def test_wrong_type_names_file_line_and_key(tmp_path):
    [p] = problems(tmp_path, GOOD + "\n[inference]\nbatch = \"eight\"\n")
    assert (p.line, p.key) == (9, "inference.batch") and p.path.endswith("a.calibration.toml")
    assert "integer" in p.message


def test_unknown_key_suggests_the_right_one(tmp_path):
    [p] = problems(tmp_path, GOOD.replace("seed", "x").replace('subset = "10%"', 'subest = "10%"'))
    assert p.key == "dataset.subest" and p.line == 6 and "did you mean 'subset'" in p.message


def test_missing_required_key(tmp_path):
    [p] = problems(tmp_path, "[dataset]\nkind = \"images\"\n")
    assert p.key == "model" and p.line == 1 and "missing" in p.message


def test_bad_choice_and_range(tmp_path):
    found = problems(tmp_path, GOOD.replace('"10%"', '"0%"') + "\n[calibration]\npreset = \"fast\"\n")
    by_key = {p.key: p for p in found}
    assert by_key["dataset.subset"].line == 6
    assert by_key["calibration.preset"].line == 9 and "'fast'" in by_key["calibration.preset"].message


def test_toml_syntax_error_has_line(tmp_path):
    [p] = problems(tmp_path, GOOD + "\n[output\n")
    assert p.rule == "toml" and p.line == 8


def test_editor_buffer_overrides_file(tmp_path):
    path = tmp_path / "a.calibration.toml"
    path.write_text("broken = [")
    assert load_spec(path, text=GOOD).dataset.kind == "imagenet"


def test_published_schema_is_current():
    assert json.loads(SCHEMA_PATH.read_text()) == json_schema(), "run `make schema`"


def test_schema_validates_example_shape():
    schema = json_schema()
    assert set(schema["required"]) == {"model", "dataset"}
    assert schema["additionalProperties"] is False
