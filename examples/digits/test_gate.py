"""A custom INT8 gate for the digits example, written with int8-workbench's pytest plugin.

    pytest examples/digits/test_gate.py

(the plugin loads through its `pytest11` entry point; in a checkout where that is not installed,
add `-p int8wb.editor_client.pytest_plugin`). The first run calibrates (about 15 s: three 3 s speed
measurements); later runs, and `pytest --int8 examples/`, reuse the cached result from
`.int8wb/cache/` until the model, the data, the spec or a library version changes.
"""
import pytest

SPEC = "digits.calibration.toml"  # relative to this file's folder


@pytest.mark.int8_budget(max_drop=0.01, max_model_size=250_000)
def test_convolutions_run_in_int8(int8_calibrate):
    """The marker's budget is checked against every result once the body has passed."""
    result = int8_calibrate(SPEC)
    convs = [row for row in result["layers"]["int8"] if row["type"] == "Convolution"]
    assert convs, "the INT8 model lost its convolutions"
    slow = [row["name"] for row in convs if row["runtimePrecision"] not in ("u8", "i8")]
    assert not slow, f"convolutions not running in INT8: {slow}"


def test_faster_than_strict_fp32(int8_calibrate):
    """Budgets can also be asserted explicitly, on top of the spec's [gate]."""
    result = int8_calibrate(SPEC)  # the same calibration as above: served from the cache
    # Against the FP32 model in strict f32 INT8 is several times faster on CPUs with VNNI/AMX;
    # against the device's default (bf16 on AMX) a model this small may not be faster at all.
    int8_calibrate.check(result, min_speedup=1.0, speedup_baseline="f32")
    assert result["heldout"] is None or result["heldout"]["drop"] <= result["gate"]["max_drop"]
