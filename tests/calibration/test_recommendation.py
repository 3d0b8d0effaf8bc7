"""The recommendation ships INT8 only when it beats, on evidence, FP32 as the device runs it by default."""
from __future__ import annotations

import pytest

from int8wb.calibration import performance
from int8wb.calibration.result import Recommendation
from int8wb.calibration.spec import Spec
from int8wb.calibration.workflow import recommend

SPEC = Spec.model_validate({"model": "m.xml", "dataset": {"kind": "generated"}})


def speed(int8: list[float], fp32_default: list[float]) -> dict:
    row = lambda rounds: {"rounds": rounds, "latency_ms": {"median": 1000 / (sum(rounds) / len(rounds))}}  # noqa: E731
    return {"int8": row(int8), "fp32_default": row(fp32_default)}


@pytest.mark.parametrize("int8, base, choice, words", [
    ([300, 310, 295, 305, 300], [200, 205, 198, 202, 200], "int8", "INT8 is faster than FP32 as CPU runs it"),
    ([150, 148, 152, 149, 151], [200, 205, 198, 202, 200], "keep-fp32", "slower than FP32 as CPU runs it"),
    ([150, 260, 190, 240, 170], [200, 205, 198, 202, 200], "keep-fp32", "not measurably faster than"),
])
def test_int8_only_when_faster_on_evidence(int8, base, choice, words):
    s = speed(int8, base)
    vs = performance.speedup(s, "int8", "fp32_default")
    r = recommend(SPEC, vs, s, "bf16")
    assert r["choice"] == choice and words in r["reason"] and "(bf16)" in r["reason"]
    assert r["speedup_vs_default"] == vs and r["latency_ms"]["int8"] > 0
    assert (choice == "keep-fp32") == ("keep the FP32 model" in r["reason"])
    Recommendation.model_validate(r)  # the result's typed record
