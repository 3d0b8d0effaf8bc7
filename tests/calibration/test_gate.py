"""The gate: budgets from a spec or from Python, and the verdict on a result (figures, failures)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from int8wb.calibration import load_spec
from int8wb.calibration.gate import evaluate, merge_budget, spec_budget, summary_lines, within
from int8wb.editor_client.pytest_plugin import Int8BudgetFailure, assert_budget
from conftest import copy_example

SAMPLE = Path(__file__).with_name("data") / "default.int8.json"


def _result(**changes) -> dict:
    """A real result (the digits example's) with round figures; a table in `changes` updates its keys."""
    result = json.loads(SAMPLE.read_text())
    del result["metric_higher_is_better"]  # here the metric's direction comes from the budget
    result.update({"spec": "/x/m.calibration.toml", "metric": "top1", "device": "CPU", "device_default_precision": "bf16",
                   "fp32": {"accuracy": 0.90, "precision_hint": "f32"}, "int8": {"accuracy": 0.88}, "drop": 0.02,
                   "heldout": None, "accuracy_on": {"role": "validation", "size": 100},
                   "throughput": {"fp32_f32": 100.0, "fp32_default": 200.0, "int8": 300.0},
                   "speedup": {"vs_f32": 3.0, "vs_default": 1.5}, "model_size": {"fp32": 4000, "int8": 1000},
                   "output": {"model": "/x/m.int8.xml", "weights": "/x/m.int8.bin", "result": "/x/m.int8.json"},
                   "notes": []})
    for key, value in changes.items():
        result[key] = {**result[key], **value} if isinstance(value, dict) and isinstance(result.get(key), dict) \
            else value
    return result


def test_budget_defaults_follow_the_method(tmp_path):
    spec_path = copy_example(tmp_path)
    text = spec_path.read_text().replace("max_drop = 0.01", "")
    assert spec_budget(load_spec(spec_path, text=text))["max_drop"] == 0.01
    aware = text.replace('method = "default"', 'method = "accuracy_aware"\nmax_drop = 0.003')
    assert spec_budget(load_spec(spec_path, text=aware))["max_drop"] == 0.003
    relative = aware.replace("max_drop = 0.003", 'max_drop = 0.1\ndrop_type = "relative"')
    budget = spec_budget(load_spec(spec_path, text=relative))
    verdict = evaluate(_result(), budget)
    assert verdict.figures["max_drop"] == pytest.approx(0.09) and verdict.ok  # 0.1 × FP32 0.90
    assert spec_budget(load_spec(spec_path))["max_drop"] == 0.01


def test_assert_budget_checks_each_figure():
    assert assert_budget(_result(), max_drop=0.02).ok
    with pytest.raises(Int8BudgetFailure, match=r"top1 drop 0\.0200 on validation \(100 samples\) exceeds"):
        assert_budget(_result())
    assert_budget(_result(), max_drop=0.05, min_speedup=3, speedup_baseline="f32")
    with pytest.raises(Int8BudgetFailure, match=r"speedup 1\.50x vs the FP32 model as CPU runs it by default"):
        assert_budget(_result(), max_drop=0.05, min_speedup=2)
    with pytest.raises(Int8BudgetFailure, match="exceeds max_model_size 999 B"):
        assert_budget(_result(), max_drop=0.05, max_model_size=999)
    held = _result(heldout={"fp32": 0.8, "int8": 0.7, "drop": 0.1, "size": 50})
    with pytest.raises(Int8BudgetFailure, match=r"drop 0\.1000 on the held-out set \(50 samples\)"):
        assert_budget(held, max_drop=0.05)
    # A lower-is-better metric gets worse when it rises.
    loss = _result(fp32={"accuracy": 0.10}, int8={"accuracy": 0.12}, drop=-0.02)
    loss["gate"] = merge_budget(None, {}, "test") | {"higher_is_better": False}
    with pytest.raises(Int8BudgetFailure, match=r"drop 0\.0200"):
        assert_budget(loss)
    with pytest.raises(TypeError, match="unknown budget max_dorp"):
        assert_budget(_result(), max_dorp=0.1)


def test_within_allows_only_rounding_above_the_budget():
    assert within(0.01, 0.01) and within(0.1 + 0.2 - 0.3, 0.0)  # 5.6e-17: float noise, not a drop
    assert not within(0.0100001, 0.01) and not within(1e-9, 0.0)


def test_verdict_reads_as_a_table_with_the_outputs():
    verdict = evaluate(_result(notes=["slow"]), merge_budget(None, {"min_speedup": 2}, "test"), label="m")
    text = verdict.render()
    assert text.splitlines()[:3] == ["INT8 budget exceeded: m", "  - top1 drop 0.0200 on validation (100 samples) "
                                     "exceeds max_drop 0.0100 (default)",
                                     "  - speedup 1.50x vs the FP32 model as CPU runs it by default (bf16) is "
                                     "below min_speedup 2x (test)"]
    assert "  INT8 model: /x/m.int8.xml" in text and "  note: slow" in text
    assert verdict.summary_row()["status"] == "FAILED" and verdict.figures["drop_on"] == "validation"
    assert "measured at" not in text  # a result from before deployment profiles names none
    profiled = _result(deployment={"shape": [[1, 3, 64, 64]], "model_shape": [[-1, 3, -1, -1]],
                                   "interpolation": "opencv-area", "float_precision": "f32"})
    assert "  measured at: shape [1,3,64,64], resize opencv-area, float layers in f32" in \
        evaluate(profiled, merge_budget(None, {}, "test"), label="m").render().splitlines()


def test_summary_lines_sort_gates_and_show_errors():
    ok = evaluate(_result(), merge_budget(None, {"max_drop": 0.05}, "test"), label="b").summary_row()
    lines = summary_lines([ok, {"label": "a", "status": "error", "source": "spec.toml:3: bad"}])
    assert lines[0].split() == ["gate", "drop", "max", "speedup", "min", "INT8", "size", "status", "source"]
    assert set(lines[1]) == {"-", " "}
    assert lines[2].split() == ["a", "error", "spec.toml:3:", "bad"]
    assert lines[3].split()[:5] == ["b", "0.0200", "validation", "0.0500", "1.50x"] and "passed" in lines[3]


@pytest.mark.parametrize("ci,state", [([0.0, 0.008], "met"), ([0.012, 0.03], "exceeded"), ([0.004, 0.02], "undecided")])
def test_a_drop_budget_is_judged_on_its_interval(ci, state):
    """Passes only on evidence, fails only on evidence; in between the verdict says undecided."""
    result = _result(int8={"accuracy": 0.89}, drop=0.01, drop_ci=ci)
    verdict = evaluate(result, merge_budget(None, {"max_drop": 0.01}, "test"))
    assert verdict.ok == (state == "met") and bool(verdict.failures) == (state == "exceeded")
    assert bool(verdict.undecided) == (state == "undecided")
    row = next(r for r in verdict.rows if r[0].startswith("top1 drop"))
    assert row[-1] == {"met": "ok", "exceeded": "FAIL", "undecided": "?"}[state] and f"[{ci[0]:.4f}" in row[3]
    if state == "undecided":
        assert "INT8 budget undecided" in verdict.render() and "cannot tell" in verdict.render()
        skip = evaluate(result, merge_budget(None, {"max_drop": 0.01, "undecided": "skip"}, "test"))
        assert skip.ok and skip.skipped and skip.summary_row()["status"] == "skipped: undecided"


def test_a_speed_floor_is_judged_on_the_interval_over_rounds():
    ratio = {"value": 1.2, "ci": [0.9, 1.5], "verdict": "no measurable difference", "rounds": 5}
    result = _result(speedup={"vs_f32": 3.0, "vs_default": ratio}, int8={"accuracy": 0.90}, drop=0.0)
    assert evaluate(result, merge_budget(None, {"min_speedup": 0.8}, "t")).ok  # all of it above
    assert evaluate(result, merge_budget(None, {"min_speedup": 1.6}, "t")).failures  # all of it below
    undecided = evaluate(result, merge_budget(None, {"min_speedup": 1.1}, "t"))
    assert not undecided.failures and undecided.undecided and not undecided.ok
    assert "1.20x vs the FP32 model" in undecided.undecided[0] and "0.90x to 1.50x" in undecided.undecided[0]


def test_results_before_intervals_are_judged_on_their_point_figures():
    result = _result(drop=0.02)  # no drop_ci, a bare speed-up number
    verdict = evaluate(result, merge_budget(None, {"max_drop": 0.01, "min_speedup": 2.0}, "t"))
    assert len(verdict.failures) == 2 and not verdict.undecided
