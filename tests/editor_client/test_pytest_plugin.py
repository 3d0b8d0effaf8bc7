"""The pytest plugin: spec files as INT8 gates and the int8_calibrate fixture (the budgets and
verdicts themselves: tests/calibration/test_gate.py; the cache: tests/calibration/test_result_cache.py).

Inner pytest runs load the plugin with `-p editor_client.pytest_plugin`, so these tests do not
depend on the package's entry point. Each inner project counts real calibrations in a file (its
conftest implements the plugin's `pytest_int8_calibrated` hook), which is how "cached" is proved. Runs that may
calibrate are subprocesses: pytester's in-process runs drop the modules first imported inside
them, and NNCF cannot be imported twice into one interpreter.
"""
from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest

# Imported here, before any in-process inner run: pytester drops the modules first imported
# inside such a run, and numpy's and OpenVINO's native modules cannot be imported twice.
import int8wb.calibration.workflow  # noqa: F401
from int8wb.calibration import load_spec
from conftest import copy_example

pytest_plugins = ["pytester"]

def _plugin_name() -> str:
    """`-p editor_client.pytest_plugin`, unless an installed `pytest11` entry point already loads
    the module (pytest refuses one module under two names): then `-p <its name>`, a no-op."""
    names = [ep.name for ep in entry_points(group="pytest11") if ep.value == "int8wb.editor_client.pytest_plugin"]
    return names[0] if names else "int8wb.editor_client.pytest_plugin"


# The plugin module is imported above, so an in-process inner run cannot assertion-rewrite it: say
# nothing. Hypothesis' and pytest-asyncio's plugins have no business in the inner projects and cost
# a second or more per inner run (hypothesis loads itself at collection).
PLUGIN = ("-p", _plugin_name(), "-W", "ignore::pytest.PytestAssertRewriteWarning",
          "-p", "no:hypothesispytest", "-p", "no:asyncio")

COUNTING_CONFTEST = '''
import os


def pytest_int8_calibrated(config, spec, result, seconds):
    with open({counter!r}, "a") as f:
        f.write(f"{{os.getpid()}} {{spec.path.name}} {{seconds:.1f}}\\n")
'''


def quick_example(folder: Path) -> Path:
    """A copy of the example that calibrates in a few seconds: 0.1 s per speed figure, 100 samples."""
    spec = copy_example(folder)
    spec.write_text(spec.read_text().replace("duration = 0.3", "duration = 0.1")
                    .replace('subset = "100%"', "subset = 100"))
    return spec


@pytest.fixture
def project(pytester):
    """An inner project: a quick copy of the example, and a counter of real calibrations."""
    pytester.makeini("[pytest]\n")
    spec = quick_example(pytester.path)
    counter = pytester.path / "calibrations.txt"
    pytester.makeconftest(COUNTING_CONFTEST.format(counter=str(counter)))
    return spec


def calibrations(pytester) -> list[str]:
    counter = pytester.path / "calibrations.txt"
    return counter.read_text().splitlines() if counter.exists() else []


def with_gate(spec: Path, name: str, gate: str) -> Path:
    """A copy of `spec` beside it with extra [gate] lines (the calibration itself is unchanged)."""
    path = spec.with_name(name)
    path.write_text(spec.read_text().replace("[gate]", "[gate]\n" + gate, 1))
    return path


# --------------------------------------------------------------------------- collection

def test_specs_are_collected_only_when_enabled(pytester, project):
    off = pytester.runpytest(*PLUGIN, "--collect-only", "-q")
    assert off.ret == pytest.ExitCode.NO_TESTS_COLLECTED

    on = pytester.runpytest(*PLUGIN, "--int8", "--collect-only", "-q")
    on.stdout.fnmatch_lines(["digits/digits.calibration.toml::digits"])

    pytester.makeini("[pytest]\nint8_collect = true\nint8_spec_glob = gates/*.toml\n")
    gates = pytester.path / "gates"
    gates.mkdir()
    (gates / "small.toml").write_text(project.read_text().replace('"model.xml"', '"../digits/model.xml"'))
    by_ini = pytester.runpytest(*PLUGIN, "--collect-only", "-q")
    by_ini.stdout.fnmatch_lines(["gates/small.toml::small"])
    assert "digits.calibration.toml" not in by_ini.stdout.str()
    assert calibrations(pytester) == []


# --------------------------------------------------------------------------- pass, cache, misses

def test_gate_passes_then_reruns_from_cache_until_an_input_changes(pytester, project):
    first = pytester.runpytest_subprocess(*PLUGIN, "--int8", "-rA")
    first.assert_outcomes(passed=1)
    first.stdout.fnmatch_lines(["*= int8 gates =*", "digits/digits.calibration.toml::digits*0.0100*"
                                "passed*calibrated in*not cached yet*"])
    assert len(calibrations(pytester)) == 1
    assert (project.parent / "calibrated" / "model.int8.xml").is_file()
    assert (pytester.path / ".int8wb" / "cache").is_dir()

    again = pytester.runpytest_subprocess(*PLUGIN, "--int8", "--junitxml=junit.xml")
    again.assert_outcomes(passed=1)
    again.stdout.fnmatch_lines(["digits/digits.calibration.toml::digits*passed*cached (*"])
    assert len(calibrations(pytester)) == 1, "an unchanged gate must not recalibrate"
    # The gate's own time (spec, hashes, cache, check); interpreter start-up is not the plugin's.
    gate_s = float(next(ET.parse(pytester.path / "junit.xml").iter("testcase")).get("time"))
    assert gate_s < 2.0, f"an unchanged gate took {gate_s:.2f} s"

    # One validation image replaced by another: new contents, same name.
    images = sorted((project.parent / "data" / "test" / "3").iterdir())
    shutil.copyfile(images[1], images[0])
    changed = pytester.runpytest_subprocess(*PLUGIN, "--int8")
    changed.assert_outcomes(passed=1)
    changed.stdout.fnmatch_lines(["*passed*calibrated in*[[]validation[]] data changed*"])
    assert len(calibrations(pytester)) == 2



# --------------------------------------------------------------------------- failures read well

def test_failing_gate_reads_like_an_assertion(pytester, project):
    with_gate(project, "fail.calibration.toml", "min_speedup = 1000\nmax_model_size = 1")
    bad = project.with_name("bad.calibration.toml")
    bad.write_text(project.read_text().replace("seed = 0", "seeds = 0"))
    missing = project.with_name("missing.calibration.toml")
    missing.write_text(project.read_text().replace('model = "model.xml"', 'model = "nope.xml"'))

    run = pytester.runpytest_subprocess(*PLUGIN, "--int8", "--junitxml=junit.xml")
    run.assert_outcomes(passed=1, failed=3)
    assert len(calibrations(pytester)) == 1, "the same calibration with other budgets is calibrated once"
    out = run.stdout.str()
    assert "Traceback" not in out and "def runtest" not in out and "site-packages" not in out
    run.stdout.fnmatch_lines([
        "*_ int8 gate bad _*",
        "INT8 gate cannot run: 1 problem in the spec or its inputs",
        "  error: digits/bad.calibration.toml:10: dataset.seeds: unknown key 'seeds'; did you mean 'seed'?",
    ])
    run.stdout.fnmatch_lines([
        "*_ int8 gate fail _*",
        "INT8 budget exceeded: digits/fail.calibration.toml::fail",
        "  - speedup *x vs the FP32 model as CPU runs it by default (*) is below min_speedup 1000x"
        " ([[]gate[]] min_speedup)",
        "  - INT8 model size * B (.xml + .bin) exceeds max_model_size 1 B ([[]gate[]] max_model_size)",
        "",
        "  check * FP32 * INT8 * value * budget",
        "  ---*",
        "  top1 drop, validation (540) * 0.9* 0.9* 0.0* <= 0.0100 * ok",
        "  speedup vs FP32 device default *.*/s *.*/s *.*x *>= 1000x *FAIL",
        "  speedup vs FP32 strict f32 *.*/s *.*/s *.*x *-",
        "  model size (.xml + .bin) * B * B * 0.*x * <= 1 B * FAIL",
        "",
        f"  INT8 model: {project.parent / 'calibrated' / 'model.int8.xml'}",
        f"  result:     {project.parent / 'calibrated' / 'model.int8.json'}",
        "  source: *",
    ])
    run.stdout.fnmatch_lines([
        "*_ int8 gate missing _*",
        "  error: digits/missing.calibration.toml:3: model: model not found: *nope.xml (fix: fix the model path)",
    ])
    run.stdout.fnmatch_lines(["*= int8 gates =*", "gate * drop * max * speedup * min * INT8 size * status * source",
                              "digits/bad.calibration.toml::bad * error *seeds*"])

    props = {case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
             for case in ET.parse(pytester.path / "junit.xml").iter("testcase")}
    result = json.loads((project.parent / "calibrated" / "model.int8.json").read_text())
    fail = props["fail"]
    assert float(fail["int8.drop"]) == pytest.approx(result["drop"])
    assert fail["int8.drop_on"] == "validation"
    assert float(fail["int8.min_speedup"]) == 1000 and fail["int8.max_model_size"] == "1"
    assert float(fail["int8.speedup_vs_default"]) == pytest.approx(result["speedup"]["vs_default"]["value"], rel=1e-3)
    assert fail["int8.int8_model"] == result["output"]["model"]
    assert float(props["digits"]["int8.max_drop"]) == 0.01


def test_gate_measures_the_held_out_set(pytester, project):
    """Held-out noise images labelled with the FP32 model's own predictions: FP32 scores 1.0 there
    and the INT8 model disagrees on many, while the validation drop stays within 0.01."""
    from PIL import Image

    import openvino as ov
    from int8wb.calibration import inspect_model
    from int8wb.calibration.datasets import open_dataset
    from int8wb.calibration.runtime import F32, config_for

    data = project.parent / "data"
    (data / "heldout").mkdir()
    rng = np.random.default_rng(0)
    for i in range(100):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8), "L").save(data / "heldout" / f"{i}.png")
    listing = data / "heldout_list.txt"
    listing.write_text("".join(f"heldout/{i}.png 0\n" for i in range(100)))
    text = project.read_text() + '\n[evaluation]\nkind = "image_list"\npath = "data/heldout_list.txt"\n'
    spec = load_spec(project, text=text)
    held = open_dataset(spec, inspect_model(spec.model_path), "evaluation")
    compiled = ov.Core().compile_model(str(spec.model_path), "CPU", config_for(F32, "CPU"))
    predicted = [int(np.argmax(compiled(held.load(i))[0])) for i in range(len(held))]
    listing.write_text("".join(f"heldout/{i}.png {p}\n" for i, p in enumerate(predicted)))
    project.write_text(text)

    run = pytester.runpytest_subprocess(*PLUGIN, "--int8", "--junitxml=junit.xml")
    run.assert_outcomes(failed=1)
    result = json.loads((project.parent / "calibrated" / "model.int8.json").read_text())
    assert result["heldout"]["fp32"] == 1.0 and result["heldout"]["size"] == 100
    assert result["drop"] <= 0.01 < result["heldout"]["drop"]
    low, high = result["heldout"]["drop_ci"]
    assert low <= result["heldout"]["drop"] <= high and high > 0.01  # the held-out set never shows the budget met
    said = (f"  - top1 drop {result['heldout']['drop']:.4f} (95 % interval {low:.4f} to {high:.4f}) on the held-out "
            "set (100 samples) exceeds max_drop 0.0100 ([[]gate[]] max_drop)" if low > 0.01 else
            f"  ? top1 drop {result['heldout']['drop']:.4f} (95 % interval {low:.4f} to {high:.4f}) on the held-out "
            "set (100 samples): cannot tell whether it is within max_drop 0.0100 ([[]gate[]] max_drop)")
    run.stdout.fnmatch_lines([
        said,
        "*",
        "  check*",
        "  ---*",
        f"  top1 drop, held-out (100) * 1.0000 * {result['heldout']['int8']:.4f} * "
        f"{result['heldout']['drop']:.4f} [[]{low:.4f}, {high:.4f}[]] * <= 0.0100 * {'FAIL' if low > 0.01 else '?'}",
        f"  top1 drop, validation (540) * {result['drop']:.4f} * not gated",
    ])
    case = next(ET.parse(pytester.path / "junit.xml").iter("testcase"))
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props["int8.drop_on"] == "held-out"
    assert float(props["int8.drop"]) == pytest.approx(result["heldout"]["drop"])
    assert float(props["int8.validation_drop"]) == pytest.approx(result["drop"])


# --------------------------------------------------------------------------- fixture and marker

FIXTURE_TESTS = '''
import tomllib
import pytest
from int8wb.calibration import CalibrationError
from int8wb.editor_client.pytest_plugin import Int8BudgetFailure, assert_budget

SPEC = "digits/digits.calibration.toml"


def test_custom_assertions(int8_calibrate):
    result = int8_calibrate(SPEC)
    assert 0.95 < result["fp32"]["accuracy"] <= 1.0
    assert result["gate"]["max_drop"] == 0.01
    int8_calibrate.check(result)
    with pytest.raises(Int8BudgetFailure, match="exceeds max_model_size 1 B"):
        assert_budget(result, max_model_size=1)
    with pytest.raises(Int8BudgetFailure, match="below min_speedup 1000x"):
        int8_calibrate.check(result, min_speedup=1000, speedup_baseline="f32")


@pytest.mark.int8_budget(max_drop=0.05, max_model_size=10_000_000)
def test_marker_met(int8_calibrate):
    result = int8_calibrate(SPEC, gate={"max_drop": 0.0})   # the marker overrides the spec's budget
    assert int8_calibrate.budget(result)["max_drop"] == 0.05


@pytest.mark.int8_budget(min_speedup=1000)
def test_marker_exceeded(int8_calibrate):
    int8_calibrate(SPEC)


def test_spec_from_keywords(int8_calibrate):
    with open(SPEC, "rb") as f:
        fields = tomllib.load(f)
    result = int8_calibrate(base_dir="digits", **fields)   # the same calibration as SPEC: cached
    assert result["cache"]["hit"]


def test_spec_problem(int8_calibrate):
    int8_calibrate(model="nope.xml", dataset={"kind": "imagenet", "path": "digits/data/test"})
'''


def test_fixture_marker_and_assert_budget(pytester, project):
    pytester.makepyfile(test_fixture=FIXTURE_TESTS)
    run = pytester.runpytest_subprocess(*PLUGIN, "--junitxml=junit.xml")
    run.assert_outcomes(passed=3, failed=2)
    assert len(calibrations(pytester)) == 1
    out = run.stdout.str()
    run.stdout.fnmatch_lines([
        "*_ test_marker_exceeded _*",
        "INT8 budget exceeded: test_fixture.py::test_marker_exceeded [[]digits.calibration.toml[]]",
        "  - speedup *x vs the FP32 model * is below min_speedup 1000x (@pytest.mark.int8_budget)",
    ])
    run.stdout.fnmatch_lines([
        "*_ test_spec_problem _*",
        "INT8 gate cannot run: 1 problem in the spec or its inputs",
        "  error: test_spec_problem.calibration.toml:1: model: model not found: *nope.xml*",
        "*(the spec was generated by int8_calibrate*",
        '    1 | model = "nope.xml"',
        "*(raised by int8_calibrate at test_fixture.py:*)",
    ])
    assert "Traceback" not in out.split("test_marker_exceeded _")[1].split("short test summary")[0]
    run.stdout.fnmatch_lines(["*= int8 gates =*"])
    assert "test_fixture.py::test_marker_met [digits.calibration.toml]" in out
    props = {case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
             for case in ET.parse(pytester.path / "junit.xml").iter("testcase")}
    assert props["test_marker_met"]["int8.max_drop"] == "0.05"
    assert props["test_marker_met"]["int8.status"] == "passed"
    assert props["test_marker_exceeded"]["int8.status"] == "FAILED"
    assert "int8.drop" in props["test_custom_assertions"]


# --------------------------------------------------------------------------- xdist

def test_xdist_workers_calibrate_a_shared_spec_once(pytester, project):
    """Three items, two workers, one spec: one calibration; `--int8-rerun` makes exactly one more."""
    pytest.importorskip("xdist")
    shutil.copyfile(project, project.with_name("twin.calibration.toml"))
    pytester.makepyfile(test_uses_fixture='''
        def test_same_spec(int8_calibrate):
            assert int8_calibrate("digits/digits.calibration.toml")["drop"] <= 0.01
    ''')
    for n, options in enumerate([(), ("--int8-rerun",)], start=1):
        run = pytester.runpytest_subprocess("-n", "2", *PLUGIN, "--int8", "-v", *options)
        run.assert_outcomes(passed=3)
        out = run.stdout.str()
        assert "[gw0]" in out and "[gw1]" in out, "both workers ran items"
        assert len(calibrations(pytester)) == n, calibrations(pytester)
        summary = out.split("= int8 gates =")[1]
        assert summary.count("calibrated in") == 1 and summary.count("cached (") == 2, summary
    assert "--int8-rerun" in summary
