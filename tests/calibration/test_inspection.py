import numpy as np
import openvino as ov
import pytest
from openvino import opset13 as ops

from int8wb.calibration import CalibrationError, inspect_model
from int8wb.calibration.output import mark
from conftest import conv_net, save


def test_fp32_model_facts(model_xml):
    info = inspect_model(model_xml)
    assert info.ir_version == 11
    assert info.precision == "FP32" and not info.fp16_compressed_weights
    assert [(t.name, t.shape, t.element_type) for t in info.inputs] == [("image", [-1, 3, 16, 16], "f32")]
    assert info.outputs[0].name == "logits" and info.outputs[0].shape == [-1, 4]
    assert sorted(layer["type"] for layer in info.int8_layers) == ["Convolution", "Convolution", "MatMul"]
    assert not info.quantized and info.derived is None
    assert info.weights_complete and info.bin_size == info.bin_expected_size > 0


def test_fp16_compressed_weights_is_still_fp32(tmp_path):
    info = inspect_model(save(conv_net(), tmp_path / "m.xml", compress_to_fp16=True))
    assert info.precision == "FP32" and info.fp16_compressed_weights


def test_true_fp16_model(tmp_path):
    info = inspect_model(save(conv_net(fp16=True), tmp_path / "m.xml"))
    assert info.precision == "FP16"


def test_quantized_model_is_detected(tmp_path):
    x = ops.parameter([1, 3, 8, 8], np.float32, name="x")
    lo, hi = ops.constant(np.float32(0)), ops.constant(np.float32(1))
    fq = ops.fake_quantize(x, lo, hi, lo, hi, 256)
    w = ops.constant(np.ones((2, 3, 1, 1), np.float32))
    y = ops.convolution(fq, w, [1, 1], [0, 0], [0, 0], [1, 1])
    info = inspect_model(save(ov.Model([y], [x]), tmp_path / "q.xml"))
    assert info.quantized and "FakeQuantize" in info.quantized_evidence
    assert info.quantized_line is not None


def test_our_own_output_is_marked(tmp_path):
    model = conv_net()
    mark(model, source="orig.xml", method="default")
    info = inspect_model(save(model, tmp_path / "m.int8.xml"))
    assert info.derived == {"source": "orig.xml", "method": "default"}


def test_truncated_and_missing_weights(model_xml):
    bin_path = model_xml.with_suffix(".bin")
    data = bin_path.read_bytes()
    bin_path.write_bytes(data[: len(data) // 2])
    info = inspect_model(model_xml)
    assert not info.weights_complete and info.bin_size == len(data) // 2
    bin_path.unlink()
    assert inspect_model(model_xml).bin_size is None


def test_malformed_xml_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.xml"
    bad.write_text('<?xml version="1.0"?>\n<net name="x" version="11">\n<layers>\n<layer id="0"\n</net>\n')
    with pytest.raises(CalibrationError) as exc:
        inspect_model(bad)
    problem = exc.value.problems[0]
    assert problem.rule == "corrupt-model" and problem.path == str(bad) and problem.line == 5


def test_not_an_ir(tmp_path):
    other = tmp_path / "other.xml"
    other.write_text("<html><body/></html>")
    with pytest.raises(CalibrationError, match="no <net> root"):
        inspect_model(other)
