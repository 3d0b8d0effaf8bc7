"""[deployment] shape: a dynamic-input model is calibrated, validated, timed and saved at the deployed
shape; without it the checker warns (with the shape the data has); shapes that cannot fit are refused."""
from __future__ import annotations

import numpy as np
import openvino as ov
import pytest
from openvino import opset13 as ops
from PIL import Image

from int8wb.calibration import CalibrationError, inspect_model, load_spec
from int8wb.calibration.checker import check_spec
from int8wb.calibration.workflow import calibrate
from conftest import save


def dynamic_net() -> ov.Model:
    """conv-relu-conv-relu-mean-matmul over [?, 3, ?, ?]: any image size runs."""
    rng = np.random.default_rng(1)
    x = ops.parameter([-1, 3, -1, -1], np.float32, name="image")
    h = ops.relu(ops.convolution(x, ops.constant(rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3),
                                 [1, 1], [1, 1], [1, 1], [1, 1]))
    h = ops.relu(ops.convolution(h, ops.constant(rng.standard_normal((16, 8, 3, 3)).astype(np.float32) * 0.3),
                                 [2, 2], [1, 1], [1, 1], [1, 1]))
    h = ops.reduce_mean(h, ops.constant(np.array([2, 3], np.int64)), keep_dims=False)
    y = ops.matmul(h, ops.constant(rng.standard_normal((16, 4)).astype(np.float32)), False, False)
    return ov.Model([y], [x], "dynamic")


def workspace(tmp_path, deployment: str = "", count: int = 12):
    save(dynamic_net(), tmp_path / "model.xml")
    rng = np.random.default_rng(0)
    (tmp_path / "pages").mkdir()
    for i in range(count):  # odd sizes, as pages come
        Image.fromarray(rng.integers(0, 255, (21 + i % 3, 27, 3), dtype=np.uint8)).save(tmp_path / "pages" / f"{i}.png")
    spec = tmp_path / "pages.calibration.toml"
    spec.write_text('model = "model.xml"\n[dataset]\nkind = "images"\npath = "pages"\n'
                    '[accuracy]\nmetric = "agreement"\n[inference]\nduration = 0.2\nrounds = 2\n' + deployment)
    return spec


def test_a_dynamic_model_runs_and_is_saved_at_the_deployment_shape(tmp_path):
    spec = workspace(tmp_path, "[deployment]\nshape = [1, 3, 24, 32]\n")
    result = calibrate(load_spec(spec))
    assert result["deployment"] == {"shape": [[1, 3, 24, 32]], "model_shape": [[-1, 3, -1, -1]],
                                    "interpolation": "opencv-linear",
                                    "float_precision": f"device default ({result['device_default_precision']})"}
    saved = inspect_model(result["output"]["model"])
    assert saved.inputs[0].shape == [1, 3, 24, 32]  # the INT8 model is deployed as it was measured
    assert inspect_model(tmp_path / "model.xml").inputs[0].shape == [-1, 3, -1, -1]  # the original is untouched
    assert not [p for p in check_spec(spec) if p.rule == "dynamic-shape"]


def test_without_a_deployment_shape_the_checker_warns_with_the_shape_the_data_has(tmp_path):
    spec = workspace(tmp_path)
    found = [p for p in check_spec(spec) if p.rule == "dynamic-shape"]
    assert len(found) == 1 and found[0].severity == "warning"
    assert found[0].line == 1 and found[0].key == "model"  # the `model = ...` line
    assert "measured at the dynamic shape only" in found[0].message
    assert "shape = [1, 3, 21, 27] (the shape of the first sample)" in found[0].fix  # 0.png is 27×21, no resize


@pytest.mark.parametrize("shape, words", [("[1, 4, 24, 32]", "does not fit input 'image' [?,3,?,?]"),
                                          ("[1, 3, 24]", "does not fit"),
                                          ("[[1, 3, 24, 32], [1, 3, 8, 8]]", "2 shape(s) for a model with 1 input")])
def test_shapes_that_cannot_fit_are_refused_at_the_key(tmp_path, shape, words):
    spec = workspace(tmp_path, f"[deployment]\nshape = {shape}\n")
    line = spec.read_text().splitlines().index(f"shape = {shape}") + 1
    found = [p for p in check_spec(spec) if p.rule == "deployment-shape"]
    assert len(found) == 1 and words in found[0].message and found[0].line == line
    assert found[0].key == "deployment.shape" and found[0].severity == "error"
    with pytest.raises(CalibrationError) as info:
        calibrate(load_spec(spec))
    assert info.value.problems[0].rule == "deployment-shape"
    assert not (tmp_path / "calibrated").exists()


def test_check_json_summarises_each_split_and_warns_about_mixed_channels(tmp_path):
    spec = workspace(tmp_path, "[deployment]\nshape = [1, 3, 24, 32]\n")
    Image.new("L", (27, 21)).save(tmp_path / "pages" / "mask.png")  # a grayscale mask among colour pages
    found = {p.rule: p for p in check_spec(spec, summaries=True)}
    assert found["dataset-summary"].message == ("[dataset] 13 samples; sizes (w×h): 27×21 (5), 27×22 (4), "
                                                "27×23 (4); channels: 1, 3")
    assert found["mixed-channels"].severity == "warning" and "1 channel(s): 1, 3 channel(s): 12" in \
        found["mixed-channels"].message
    assert "dataset-summary" not in {p.rule for p in check_spec(spec)}  # only when asked (check --json)
