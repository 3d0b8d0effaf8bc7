"""`pytest --int8-ray`: the gate's calibrations as jobs on a Ray cluster (conftest's `ray_cluster`, a
local one of 2 CPUs that the inner pytest joins by its address; skipped without ray installed).

Inner runs are subprocesses, loading the plugin as test_pytest_plugin.py does; their conftest
records every real calibration (the plugin's `pytest_int8_calibrated` hook): the INT8 weights'
sha256, the figures the verdict rests on, and whether ray was imported in that process.
"""
from __future__ import annotations

import json
import os
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from int8wb.calibration.jobs import JobStore
from conftest import copy_example
from test_pytest_plugin import PLUGIN, quick_example

pytest_plugins = ["pytester"]

# Ray's token (token authentication, on by default for local clusters) is in the user's home;
# pytester gives its inner runs a home of their own, so they are told where the token is.
RAY_TOKEN = Path.home() / ".ray" / "auth_token"

RECORDING_CONFTEST = '''
import hashlib, json, sys


def pytest_int8_calibrated(config, spec, result, seconds):
    with open(result["output"]["weights"], "rb") as fh:
        weights = hashlib.sha256(fh.read()).hexdigest()
    with open({record!r}, "a") as fh:
        fh.write(json.dumps({{"where": config.getoption("int8_ray") or config.getini("int8_ray") or "here", "spec": result["spec"],
                              "weights": weights, "fp32": result["fp32"]["accuracy"],
                              "int8": result["int8"]["accuracy"], "drop": result["drop"],
                              "ray loaded": "ray" in sys.modules}}) + "\\n")


def pytest_sessionfinish(session):
    with open({record!r}, "a") as fh:
        fh.write(json.dumps({{"session ends": True, "ray loaded": "ray" in sys.modules}}) + "\\n")
'''

# The fixture's way in: a spec with a table overridden exists only in the test, never as a file.
FIXTURE_TEST = '''
def test_overridden_output(int8_calibrate):
    result = int8_calibrate("digits/digits.calibration.toml", output={"dir": "by-fixture"})
    int8_calibrate.check(result, max_drop=0.01)
'''

# Speed is measured anew on every run. The INT8 .xml's size is not compared either: OpenVINO numbers
# new nodes from a per-process counter (`Constant_41002`), so a second calibration in one pytest
# process writes longer names than the first. The .bin, where the INT8 model lives, is compared.
VERDICT = ("int8.drop", "int8.drop_ci", "int8.fp32_accuracy", "int8.int8_accuracy", "int8.max_drop", "int8.status")


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def verdicts(junit: Path) -> dict[str, dict]:
    """Each test's outcome and the figures its verdict rests on (speed figures are measured anew)."""
    out = {}
    for case in ET.parse(junit).iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        outcome = "failed" if case.find("failure") is not None or case.find("error") is not None else "passed"
        out[case.get("name")] = {"outcome": outcome, **{k: props.get(k) for k in VERDICT}}
    return out


def project(root: Path) -> Path:
    """A quick copy of the example and a test of the fixture beside it."""
    spec = quick_example(root)
    (root / "test_fixture.py").write_text(FIXTURE_TEST)
    return spec


@pytest.mark.slow  # four calibrations and two inner pytest runs: 75–150 s on 2 busy cores
def test_the_gate_on_ray_gives_the_local_verdicts_and_int8_models(pytester, ray_cluster, monkeypatch):
    """The same project twice: calibrated in the pytest process, then as jobs on the cluster
    (`int8_ray` in the ini file). Two copies, since one spec's cached result would serve both; their
    folders' names are as long as each other, as the INT8 .xml records its source model's path."""
    if RAY_TOKEN.is_file() and "RAY_AUTH_TOKEN" not in os.environ:
        monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(RAY_TOKEN))
    record = pytester.path / "calibrations.jsonl"
    pytester.makeconftest(RECORDING_CONFTEST.format(record=str(record)))
    pytester.makeini("[pytest]\n")
    local, on_ray = project(pytester.path / "local"), project(pytester.path / "onray")

    here = pytester.runpytest_subprocess(*PLUGIN, "--int8", "local", "--junitxml=local.xml")
    here.assert_outcomes(passed=2)
    address = ray_cluster.get_runtime_context().gcs_address
    pytester.makeini(f"[pytest]\nint8_ray = {address}\n")
    there = pytester.runpytest_subprocess(*PLUGIN, "--int8", "--int8-rerun", "onray", "--junitxml=ray.xml")
    there.assert_outcomes(passed=2)
    there.stdout.fnmatch_lines([f"int8: collecting *; calibrations on Ray ({address}, 1 CPU each)*"])

    assert verdicts(pytester.path / "ray.xml") == verdicts(pytester.path / "local.xml")
    calibrated = [r for r in records(record) if "weights" in r]
    assert sorted((r["where"], Path(r["spec"]).relative_to(pytester.path).as_posix()) for r in calibrated) == [
        (address, "onray/digits/digits.calibration.toml")] * 2 + [("here", "local/digits/digits.calibration.toml")] * 2
    by_where = {w: sorted((r["weights"], r["fp32"], r["int8"], r["drop"]) for r in calibrated if r["where"] == w)
                for w in ("here", address)}
    assert by_where["here"] == by_where[address]  # the same INT8 weights and accuracy figures, gate and fixture
    ends = [r["ray loaded"] for r in records(record) if "session ends" in r]
    assert ends == [False, True], "ray loads only in the run that asked for the cluster"

    # The calibrations ran as jobs of the spec folder's store, as `int8wb calibrate --ray` runs them.
    jobs = JobStore(on_ray.parent, create=False).list()
    assert [j["state"] for j in jobs] == ["done"] * 2
    names = sorted(Path(j["spec"]).name for j in jobs)  # the fixture's spec went as a hidden copy, the gate's as it is
    assert names[1] == "digits.calibration.toml" and re.fullmatch(r"\.digits\.calibration\.toml\.[0-9a-f]{8}\.int8-ray",
                                                                  names[0]), names
    assert {Path(j["summary"]["output"]["model"]).parent.name for j in jobs} == {"calibrated", "by-fixture"}
    assert not (local.parent / ".int8wb").exists()
    assert not list(on_ray.parent.glob(".*.int8-ray")), "the fixture's job spec is removed"
    for folder in ("calibrated", "by-fixture"):
        assert (on_ray.parent / folder / "model.int8.bin").read_bytes() == \
            (local.parent / folder / "model.int8.bin").read_bytes()


def test_the_option_alone_loads_no_ray_and_names_the_cluster(pytester):
    """Collecting with --int8-ray joins nothing: the cluster is joined at the first calibration."""
    record = pytester.path / "calibrations.jsonl"
    pytester.makeconftest(RECORDING_CONFTEST.format(record=str(record)))
    pytester.makeini("[pytest]\n")
    quick_example(pytester.path)
    run = pytester.runpytest_subprocess(*PLUGIN, "--int8", "--int8-ray", "auto", "--int8-ray-cpus", "2",
                                        "--collect-only", "-q")
    assert run.ret == pytest.ExitCode.OK
    run.stdout.fnmatch_lines(["digits/digits.calibration.toml::digits"])
    assert records(record) == [{"session ends": True, "ray loaded": False}]
    header = pytester.runpytest_subprocess(*PLUGIN, "--int8", "--int8-ray", "auto", "--collect-only")
    header.stdout.fnmatch_lines(["int8: collecting *; calibrations on Ray (auto, 1 CPU each)"])


def test_a_bad_cpu_count_in_the_ini_names_the_file_and_key(pytester):
    ini = pytester.makeini("[pytest]\nint8_ray = auto\nint8_ray_cpus = many\n")
    run = pytester.runpytest_subprocess(*PLUGIN, "--int8", "--collect-only")
    assert run.ret == pytest.ExitCode.USAGE_ERROR
    run.stderr.fnmatch_lines([f"*{ini}: int8_ray_cpus = 'many': not a positive number of CPUs*"])


def test_an_overridden_spec_as_a_job_is_said_of_the_spec_asked_for(tmp_path):
    """The fixture's hidden job spec, run through the same path with local workers (no cluster):
    a refusal names the spec file the test asked for, says why, and the hidden copy is gone."""
    from int8wb.calibration import CalibrationError, load_spec
    from int8wb.calibration.jobs.backend import LocalBackend
    from int8wb.editor_client.gate_state import on_cluster

    spec = copy_example(tmp_path)
    out = spec.parent / "calibrated"
    out.mkdir()
    (out / "model.int8.json").write_text(json.dumps({"spec": str(spec)}))  # the file's own INT8 set
    text = spec.read_text().replace("duration = 0.3", "duration = 0.2")
    with pytest.raises(CalibrationError) as raised:
        on_cluster(load_spec(spec, text=text), text, LocalBackend(sys.executable))
    problem = raised.value.problems[0]
    assert (problem.path, problem.rule) == (str(spec), "output-taken")
    assert problem.message.startswith("with --int8-ray a spec with overrides runs as a spec file of its own: "
                                      "model.int8.json in 'calibrated' holds the result of another spec")
    assert 'output={"dir": ' in problem.fix
    assert not list(spec.parent.glob(".*.int8-ray"))
