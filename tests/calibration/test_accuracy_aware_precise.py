"""AccuracyAware at the device's default float precision (bf16 on AMX CPUs) with `precise_reverted`: the
layers it puts back in float are marked strict f32 in the saved INT8 IR and the result says so; without
the key, or at strict f32, nothing is marked."""
import openvino as ov
import pytest

from int8wb.calibration.precise import lowered, precise_layers
from int8wb.calibration.workflow import calibrate
from conftest import outlier_mlp
from test_accuracy_aware import write_spec


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    if not lowered(ov.Core(), "CPU", "default"):
        pytest.skip("this CPU runs float layers in f32 by default (no bf16): nothing to mark")
    return outlier_mlp(tmp_path_factory.mktemp("aa-precise"))


def test_reverted_layers_are_marked_strict_f32_in_the_saved_ir(project):
    res = calibrate(write_spec(project, "aa", 'method = "accuracy_aware"\nmax_drop = 0.005\nprecise_reverted = true'))
    assert res["settings"]["int8_float_precision"] == "default" and res["budget"]["met"]
    reverted = [layer["name"] for layer in res["fp32_layers"]]
    assert reverted and all(layer["precise"] for layer in res["fp32_layers"])
    assert sorted(precise_layers(res["output"]["model"])) == sorted(reverted)  # what ships is what was measured
    assert res["deployment"]["float_precision"] == (
        f"device default (bf16), {len(reverted)} layer{'s' if len(reverted) > 1 else ''} marked strict f32 in the IR")


def test_nothing_is_marked_when_floats_run_strict_f32(project):
    spec = write_spec(project, "aaf32", 'method = "accuracy_aware"\nmax_drop = 0.005\nprecise_reverted = true')
    spec.inference.int8_float_precision = "f32"
    res = calibrate(spec)
    assert res["fp32_layers"] and not any(layer["precise"] for layer in res["fp32_layers"])
    assert precise_layers(res["output"]["model"]) == [] and res["deployment"]["float_precision"] == "f32"


def test_nothing_is_marked_unless_asked(project):
    res = calibrate(write_spec(project, "aaplain", 'method = "accuracy_aware"\nmax_drop = 0.005'))
    assert res["fp32_layers"] and not any(layer["precise"] for layer in res["fp32_layers"])
    assert precise_layers(res["output"]["model"]) == [] and res["deployment"]["float_precision"] == "device default (bf16)"
