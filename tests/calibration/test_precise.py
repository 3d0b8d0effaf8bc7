"""Layers marked strict f32 run in f32 while the CPU runs the rest in bf16, and the mark survives saving."""
import re

import numpy as np
import openvino as ov
import pytest

from int8wb.calibration.precise import keep_precise, lowered, precise_layers
from int8wb.calibration.runtime import INT8, config_for, default_precision
from conftest import conv_net

CORE = ov.Core()


def two_convs() -> ov.Model:
    """conftest's small conv classifier, its two convolutions named."""
    model = conv_net()
    for n, op in enumerate(op for op in model.get_ordered_ops() if op.get_type_name() == "Convolution"):
        op.set_friendly_name(f"conv{n + 1}")
    return model


def needs_bf16_default():
    if "BF16" not in CORE.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU has no bf16: every float layer runs in f32 already")
    if default_precision(CORE, "CPU") != "bf16":
        pytest.skip("this CPU runs float layers in f32 by default")


def runtime_precisions(model: ov.Model) -> dict[str, str]:
    """Runtime precision of conv1/conv2 compiled as an INT8 model with int8_float_precision "default"."""
    compiled = CORE.compile_model(model, "CPU", config_for(INT8, "CPU", "default"))
    return {op.get_friendly_name(): op.get_rt_info()["runtimePrecision"].astype(str)
            for op in compiled.get_runtime_model().get_ops() if op.get_friendly_name() in ("conv1", "conv2")}


def test_a_marked_layer_runs_f32_while_the_rest_runs_bf16():
    needs_bf16_default()
    assert runtime_precisions(two_convs()) == {"conv1": "bf16", "conv2": "bf16"}
    assert runtime_precisions(keep_precise(two_convs(), {"conv2"})) == {"conv1": "bf16", "conv2": "f32"}
    assert lowered(CORE, "CPU", "default") and not lowered(CORE, "CPU", "f32")


def test_the_mark_survives_save_and_read(tmp_path):
    marked = keep_precise(two_convs(), ["conv2"])
    assert precise_layers(marked) == ["conv2"]
    ov.save_model(marked, str(tmp_path / "m.xml"), compress_to_fp16=False)
    assert precise_layers(tmp_path / "m.xml") == ["conv2"]  # saved under the typed attribute's own name
    again = CORE.read_model(str(tmp_path / "m.xml"))
    assert precise_layers(again) == ["conv2"]
    if "BF16" in CORE.get_property("CPU", "OPTIMIZATION_CAPABILITIES") and default_precision(CORE, "CPU") == "bf16":
        assert runtime_precisions(again) == {"conv1": "bf16", "conv2": "f32"}  # a user's default compile


def test_marking_keeps_the_values_and_leaves_the_original_alone():
    original = two_convs()
    marked = keep_precise(keep_precise(original, {"conv1"}), {"conv1", "conv2"})  # marking twice is harmless
    assert precise_layers(original) == [] and precise_layers(marked) == ["conv1", "conv2"]
    x = np.random.default_rng(1).standard_normal((2, 3, 16, 16)).astype(np.float32)
    strict = config_for("fp32_f32", "CPU")
    want = CORE.compile_model(original, "CPU", strict)(x)[0]
    got = CORE.compile_model(marked, "CPU", strict)(x)[0]
    np.testing.assert_array_equal(got, want)  # the weights went through the IR untouched


def test_existing_rt_info_is_kept(tmp_path):
    ov.save_model(two_convs(), str(tmp_path / "m.xml"), compress_to_fp16=False)
    text = (tmp_path / "m.xml").read_text()
    opening = re.search(r'<layer id="\d+" name="conv2" type="Convolution" version="opset1">', text).group(0)
    (tmp_path / "m.xml").write_text(text.replace(
        opening, opening + '<rt_info><attribute name="fused_names" version="0" value="conv2,bias2" /></rt_info>'))
    marked = keep_precise(CORE.read_model(str(tmp_path / "m.xml")), {"conv2"})
    info = next(op for op in marked.get_ops() if op.get_friendly_name() == "conv2").get_rt_info()
    assert info["fused_names_0"].astype(str) == "bias2,conv2" and precise_layers(marked) == ["conv2"]


def test_an_unknown_layer_is_named():
    with pytest.raises(KeyError, match="no layer named conv9 in the model"):
        keep_precise(two_convs(), {"conv2", "conv9"})
