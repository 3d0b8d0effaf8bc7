"""A model given as ONNX is converted once with openvino.convert_model, cached by content under the spec's
`.int8wb/converted/`, and calibrated as that IR; a broken file is its own located rule, never 'malformed XML'."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from int8wb.calibration import CalibrationError, load_spec
from int8wb.calibration.checker import check_spec
from int8wb.calibration.workflow import calibrate
from conftest import onnx_net


@pytest.fixture
def project(tmp_path):
    onnx_net(tmp_path / "net.onnx")
    rng = np.random.default_rng(1)
    (tmp_path / "images").mkdir()
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "images" / f"{i}.png")
    spec = tmp_path / "net.calibration.toml"
    spec.write_text('model = "net.onnx"\n[dataset]\nkind = "images"\npath = "images"\n[accuracy]\n'
                    'metric = "agreement"\n[calibration]\nonly_if_faster = false\n[inference]\nduration = 0.2\nrounds = 2\n')
    return spec


def test_an_onnx_model_is_converted_once_and_calibrated_as_its_ir(project):
    found = check_spec(project)
    assert [p.rule for p in found] == ["converted-model"] and found[0].severity == "info"
    result = calibrate(load_spec(project))
    conv = result["conversion"]
    assert conv["source"] == str(project.parent / "net.onnx") and conv["route"] == "openvino.convert_model"
    assert conv["ir"].startswith(str(project.parent / ".int8wb" / "converted")) and conv["ir"].endswith("model.xml")
    assert result["model"] == conv["source"] and result["output"]["model"].endswith("calibrated/net.int8.xml")
    assert result["int8_layer_count"] > 0
    stamp = (project.parent / conv["ir"]).stat().st_mtime_ns
    again = calibrate(load_spec(project))
    assert again["conversion"]["ir"] == conv["ir"] and (project.parent / conv["ir"]).stat().st_mtime_ns == stamp
    assert check_spec(project) == []  # now checked as the cached IR: an eligible FP32 model, static shape


def test_inspect_converts_beside_the_file(project):
    done = subprocess.run([sys.executable, "-m", "int8wb.editor_client.cli", "inspect", str(project.parent / "net.onnx"),
                           "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout)
    assert facts["precision"] == "FP32" and facts["inputs"][0]["shape"] == [1, 3, 16, 16]
    assert len(facts["int8_layers"]) == 3 and "openvino.convert_model" in done.stderr


@pytest.mark.parametrize("content, rule", [
    (b"\x08\x07not really a protobuf" * 10, "broken-onnx"),            # its framing says what is wrong
    (b"\x08\x07\x3a\x04\x0a\x02\x08\x01", "conversion-failed"),  # whole protobuf, no usable graph
])
def test_a_broken_onnx_file_is_a_conversion_failure_with_a_fix(project, content, rule):
    (project.parent / "net.onnx").write_bytes(content)
    with pytest.raises(CalibrationError) as info:
        calibrate(load_spec(project))
    [p] = info.value.problems
    assert p.rule == rule and p.path == str(project.parent / "net.onnx")
    assert "cannot convert this ONNX model" in p.message and "malformed XML" not in p.message and p.fix
    assert not (project.parent / "calibrated").exists()
    assert not list((project.parent / ".int8wb" / "converted").glob("*/model.xml"))  # no half entry cached


def test_the_editor_hover_reads_the_cached_conversion(project):
    from int8wb.daemon.check_worker import hover

    source = project.parent / "net.onnx"
    before = hover(str(source))["markdown"]
    assert before.startswith("**net.onnx**: ONNX model, calibrated as its conversion by openvino.convert_model")
    assert "done at the first calibration" in before
    calibrate(load_spec(project))
    after = hover(str(source))["markdown"]
    assert "(cached: `" in after and "- precision: FP32" in after and "can be calibrated" in after
