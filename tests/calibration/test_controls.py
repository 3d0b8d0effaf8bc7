"""[calibration] controls reach NNCF: the quantized model differs as each control says; bad values and
ignored-scope entries that match nothing are located errors (warnings with strict = false)."""
from __future__ import annotations

import os

import nncf
import openvino as ov
import pytest

from int8wb.calibration import CalibrationError
from int8wb.calibration.checker import check_spec
from int8wb.calibration.methods.nncf import nncf_settings
from int8wb.calibration.workflow import calibrate
from test_accuracy_aware import project, write_spec  # noqa: F401  (the fixture: an MLP Default breaks)


def fed_by_quantizers(xml: str) -> set[str]:
    """Layers with a FakeQuantize on an input: the ones that run INT8."""
    model = ov.Core().read_model(xml)
    return {op.get_friendly_name() for op in model.get_ops()
            if any(i.get_source_output().get_node().get_type_name() == "FakeQuantize" for i in op.inputs())}


def test_an_ignored_layer_stays_float_and_that_alone_repairs_default(project):
    res = calibrate(write_spec(project, "ignored", 'method = "default"\n[calibration.ignored_scope]\n'
                                                   'names = ["hidden_matmul"]'))
    fed = fed_by_quantizers(res["output"]["model"])
    assert "hidden_matmul" not in fed and {"spread", "logits_matmul"} <= fed
    assert res["controls"]["ignored_layers"] == ["hidden_matmul"]
    assert res["controls"]["ignored_scope"]["names"] == ["hidden_matmul"] and res["controls"]["bias_correction"] == "fast"
    assert res["drop"] < 0.02  # Default without the scope loses > 5 pp here (test_accuracy_aware)
    report = open(res["output"]["report"], encoding="utf-8").read()
    assert "ignored_scope.names [&#39;hidden_matmul&#39;]" in report and "bias_correction fast" in report
    assert 'data-field="deployment">the model&#39;s own shape [?,64]' in report


def test_patterns_and_types_reach_nncf(project):
    res = calibrate(write_spec(project, "pattern", 'method = "default"\n[calibration.ignored_scope]\n'
                                                   'patterns = ["logits_"]'))
    fed = fed_by_quantizers(res["output"]["model"])
    assert "logits_matmul" not in fed and "hidden_matmul" in fed
    assert res["controls"]["ignored_layers"] == ["logits_matmul"]
    res = calibrate(write_spec(project, "types", 'method = "default"\n[calibration.ignored_scope]\ntypes = ["MatMul"]'))
    assert not {"spread", "hidden_matmul", "logits_matmul"} & fed_by_quantizers(res["output"]["model"])


def test_accuracy_aware_never_searches_an_ignored_layer(project):
    res = calibrate(write_spec(project, "aa-ignored", 'method = "accuracy_aware"\nmax_drop = 0.01\n'
                                                      '[calibration.ignored_scope]\nnames = ["hidden_matmul"]'))
    assert res["budget"]["met"]
    assert "hidden_matmul" not in {layer["name"] for layer in res["fp32_layers"]}  # pinned, not searched
    assert "hidden_matmul" not in fed_by_quantizers(res["output"]["model"])
    assert res["controls"]["ignored_layers"] == ["hidden_matmul"]


def test_weights_only_has_int8_weights_and_no_activation_quantizers(project):
    res = calibrate(write_spec(project, "weights", 'method = "weights_only"'))
    xml = open(res["output"]["model"], encoding="utf-8").read()
    assert 'type="FakeQuantize"' not in xml and res["quantize_ops"] == 0
    assert 'element_type="u8"' in xml  # int8_asym weight constants
    weights = {k: os.path.getsize(x) for k, x in (("fp32", project / "mlp.bin"), ("int8", res["output"]["weights"]))}
    assert weights["int8"] < 0.4 * weights["fp32"]  # 1 byte per weight and a scale per channel, not 4 bytes
    assert res["method"] == "weights_only" and res["drop"] < 0.02  # float activations: the outlier is harmless
    # ... on every CPU: some quantize a compressed layer's activations on the fly unless the model says not to
    compiled = ov.Core().compile_model(res["output"]["model"], "CPU")
    assert int(compiled.get_property("DYNAMIC_QUANTIZATION_GROUP_SIZE")) == 0


def test_every_control_becomes_an_nncf_argument(project):
    spec = write_spec(project, "all", 'method = "default"\nmodel_type = "transformer"\nbias_correction = "full"\n'
                                      'statistics_samples = 10\n[calibration.smooth_quant]\nmatmul = 0.5\n'
                                      '[calibration.activations]\nrange_estimator = "mean_quantile"\n'
                                      '[calibration.weights]\nper_channel = false\nrange_estimator = "minmax"')
    s = nncf_settings(spec, 300)
    adv = s["advanced_parameters"]
    assert s["model_type"] == nncf.ModelType.TRANSFORMER and s["subset_size"] == 10 and not s["fast_bias_correction"]
    assert adv.smooth_quant_alphas.matmul == 0.5 and adv.smooth_quant_alphas.convolution == -1
    assert adv.weights_quantization_params.per_channel is False and not adv.disable_bias_correction
    sets = nncf.quantization.range_estimator.RangeEstimatorParametersSet
    assert adv.activations_range_estimator_params == sets.MEAN_QUANTILE
    assert adv.weights_range_estimator_params == sets.MINMAX
    off = nncf_settings(write_spec(project, "off", 'bias_correction = "off"'), 300)
    assert off["advanced_parameters"].disable_bias_correction and "ignored_scope" not in off and "model_type" not in off


def test_range_estimators_change_the_ranges(project):
    ranges = {}
    for name in ("minmax", "mean_quantile"):
        res = calibrate(write_spec(project, name, f'[calibration.activations]\nrange_estimator = "{name}"'))
        model = ov.Core().read_model(res["output"]["model"])
        ranges[name] = sorted(float(op.input_value(2).get_node().get_data().max()) for op in model.get_ops()
                              if op.get_type_name() == "FakeQuantize")
        assert res["controls"]["activations"]["range_estimator"] == name
    assert ranges["minmax"] != ranges["mean_quantile"]


@pytest.mark.parametrize("strict, severity", [("true", "error"), ("false", "warning")])
def test_an_entry_that_matches_nothing_is_located_with_a_did_you_mean(project, strict, severity):
    spec = write_spec(project, f"typo-{strict}", f'[calibration.ignored_scope]\nnames = ["hiden_matmul"]\n'
                                                 f'strict = {strict}')
    [p] = [p for p in check_spec(spec.path) if p.rule == "ignored-scope-unmatched"]
    assert p.severity == severity and "did you mean 'hidden_matmul'?" in p.message
    assert spec.path.read_text().splitlines()[p.line - 1] == 'names = ["hiden_matmul"]'
    assert p.key == "calibration.ignored_scope.names"
    if strict == "true":
        with pytest.raises(CalibrationError) as info:
            calibrate(spec)
        assert info.value.problems[0].rule == "ignored-scope-unmatched"
        assert not (project / "out-typo-true").exists()


@pytest.mark.parametrize("text, key, words", [
    ("[calibration.activations]\nper_channel = true", "calibration.activations", "per tensor"),
    ('[calibration.weights]\nrange_estimator = "maxmin"', "calibration.weights.range_estimator", "'minmax'"),
    ('[calibration.ignored_scope]\npatterns = ["(["]', "calibration.ignored_scope.patterns", "not a regular expression"),
    ('model_type = "rnn"', "calibration.model_type", "'transformer'")])
def test_bad_values_are_located_errors(project, text, key, words):
    with pytest.raises(CalibrationError) as info:
        write_spec(project, "bad", text)
    [p] = info.value.problems
    assert p.key == key and words in p.message and p.line > 1
