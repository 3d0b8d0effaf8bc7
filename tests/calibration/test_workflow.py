"""The main job end to end on the shipped example, and bad input that must write nothing."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from int8wb.calibration import CalibrationError, inspect_model, load_spec, recommendation
from int8wb.calibration.workflow import calibrate
from conftest import copy_example, tree

CLI = [sys.executable, "-m", "int8wb.editor_client.cli"]


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    spec_path = copy_example(tmp_path_factory.mktemp("run"))
    phases = []
    res = calibrate(load_spec(spec_path), progress=lambda pct, phase: phases.append((pct, phase)))
    return res, phases, spec_path


def test_example_calibrates_within_one_point(result):
    res, _, _ = result
    assert 0.95 < res["fp32"]["accuracy"] <= 1.0
    assert res["drop"] <= 0.01
    assert res["dataset"]["size"] == 300 and res["dataset"]["subset"] == 300
    assert res["accuracy_on"] == {"role": "validation", "size": 540}


def test_counts_and_the_deployment_profile_are_recorded(result):
    res, _, _ = result
    xml = open(res["output"]["model"], encoding="utf-8").read()
    assert res["quantize_ops"] == xml.count('type="FakeQuantize"') > 0  # operations inserted in the saved graph
    assert res["int8_layer_count"] == sum(r["runtimePrecision"] in ("u8", "i8") for r in res["layers"]["int8"])
    assert res["deployment"]["shape"] == [[1, 1, 32, 32]] and res["deployment"]["model_shape"] == [[-1, 1, 32, 32]]
    assert res["deployment"]["interpolation"] == "pillow-bilinear"
    assert inspect_model(res["output"]["model"]).inputs[0].shape == [1, 1, 32, 32]
    rec = res["recommendation"]
    assert rec["speedup_vs_default"] == res["speedup"]["vs_default"]
    assert rec["latency_vs_default"] == res["speedup"]["latency_vs_default"] is not None
    verdicts = {res["speedup"]["vs_default"]["verdict"], res["speedup"]["latency_vs_default"]["verdict"]}
    assert rec["choice"] == ("int8" if "faster" in verdicts and "slower" not in verdicts else "keep-fp32")
    report = open(res["output"]["report"], encoding="utf-8").read()
    assert 'data-section="recommendation"' in report and rec["reason"].split(":")[0] in report


def test_int8_convolutions_run_u8_i8(result):
    res, _, _ = result
    convs = [r for r in res["layers"]["int8"] if r["type"] == "Convolution"]
    assert convs and all(r["runtimePrecision"] in ("u8", "i8") for r in convs)
    assert all(r["runtimePrecision"] == "f32" for r in res["layers"]["fp32_f32"] if r["type"] == "Convolution")
    assert res["int8_layer_count"] >= len(convs)


def test_result_has_the_promised_fields(result):
    res, _, _ = result
    looks = res["speed"]["int8"]["looks"]
    n = 5 * looks  # the example's 5 rounds, and 5 more when they decided nothing
    first = {k: {**v, "rounds": v["rounds"][:5], "latency_rounds": v["latency_rounds"][:5]}
             for k, v in res["speed"].items()}
    assert (looks == 2) == recommendation.undecided(first)
    for variant in ("fp32_f32", "fp32_default", "int8"):
        assert res["throughput"][variant] > 0 and res["latency_ms"][variant] > 0
        speed = res["speed"][variant]
        assert len(speed["rounds"]) == n and speed["spread"] == [min(speed["rounds"]), max(speed["rounds"])]
        assert speed["throughput"] == pytest.approx(float(np.median(speed["rounds"])), rel=1e-3)  # median of rounds
        assert speed["latency_mode"].startswith("batch 1, one request in flight") and len(speed["latency_rounds"]) == n
        assert speed["looks"] == looks
    for key, base in (("vs_f32", "fp32_f32"), ("vs_default", "fp32_default")):
        ratio = res["speedup"][key]
        per_round = [i / b for i, b in zip(res["speed"]["int8"]["rounds"], res["speed"][base]["rounds"])]
        assert min(per_round) <= ratio["value"] <= max(per_round)  # a geometric mean of the rounds' ratios
        low, high = ratio["ci"]
        assert low <= ratio["value"] <= high and ratio["rounds"] == n
        assert ratio["verdict"] == ("faster" if low > 1 else "slower" if high < 1 else "no measurable difference")
    assert res["drop_ci"][0] <= res["drop"] <= res["drop_ci"][1]
    assert res["machine"]["cores"] >= 1 and res["machine"]["cpu"]
    assert res["model_size"]["int8"] < res["model_size"]["fp32"]
    assert res["drop"] == pytest.approx(res["fp32"]["accuracy"] - res["int8"]["accuracy"])


def test_outputs_written_and_marked(result):
    res, _, spec_path = result
    out = res["output"]
    on_disk = json.loads(open(out["result"]).read())
    assert on_disk["int8"]["accuracy"] == res["int8"]["accuracy"]
    info = inspect_model(out["model"])
    assert info.derived["source"] == str(spec_path.parent / "model.xml") and info.quantized
    assert info.weights_complete
    assert not [p for p in (spec_path.parent / "calibrated").iterdir() if ".tmp-" in p.name]


def test_progress_is_monotonic_and_complete(result):
    _, phases, _ = result
    pcts = [p for p, _ in phases]
    assert pcts == sorted(pcts) and pcts[-1] == 100
    assert {"baseline accuracy", "calibrating", "INT8 accuracy", "speed (interleaved rounds)"} <= {ph for _, ph in phases}


def test_our_output_is_refused(result, tmp_path):
    res, _, spec_path = result
    spec = spec_path.parent / "again.calibration.toml"
    spec.write_text(spec_path.read_text().replace('model = "model.xml"', 'model = "calibrated/model.int8.xml"'))
    with pytest.raises(CalibrationError) as exc:
        calibrate(load_spec(spec))
    assert "derived-model" in {p.rule for p in exc.value.problems}


def run_cli(*args, cwd=None):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=cwd)


def test_cli_json(example):
    proc = run_cli("calibrate", str(example), "--json")
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)  # stdout holds the JSON alone
    assert {"fp32", "int8", "drop", "throughput", "latency_ms", "speedup", "model_size", "output", "layers"} <= set(res)


BAD_INPUTS = {
    "missing bin": (lambda d: (d / "model.bin").unlink(), "missing-weights", "model.xml"),
    "truncated bin": (lambda d: (d / "model.bin").write_bytes((d / "model.bin").read_bytes()[:1000]),
                      "truncated-weights", "model.xml"),
    "malformed xml": (lambda d: (d / "model.xml").write_text((d / "model.xml").read_text()[:3000]),
                      "corrupt-model", "model.xml"),
    "wrong type": (lambda d: _edit(d, 'seed = 0', 'seed = "zero"'), "spec", "dataset.seed"),
    "unknown key": (lambda d: _edit(d, 'seed = 0', 'sede = 0'), "spec", "dataset.sede"),
    "missing dataset": (lambda d: shutil.rmtree(d / "data" / "calibration"), "dataset-missing", "dataset.path"),
    "undecodable image": (lambda d: (d / "data" / "test" / "3" / "zz.png").write_bytes(b"garbage"),
                          "bad-image", "zz.png"),
    "shape mismatch": (lambda d: _edit(d, "resize = [32, 32]", "resize = [30, 32]"),
                       "input-shape-mismatch", ".png"),
}


def _edit(folder, old, new):
    spec = folder / "digits.calibration.toml"
    text = spec.read_text()
    assert old in text
    spec.write_text(text.replace(old, new))


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_fails_clearly_and_writes_nothing(example, case):
    folder = example.parent
    breaker, rule, where = BAD_INPUTS[case]
    breaker(folder)
    before = tree(folder)
    with pytest.raises(CalibrationError) as exc:
        calibrate(load_spec(example))
    problem = exc.value.problems[0]
    assert problem.rule == rule, exc.value
    assert where in (problem.key or "") or where in (problem.path or "")
    assert problem.line is not None or problem.rule in ("bad-image", "input-shape-mismatch")
    assert tree(folder) == before


def test_cli_bad_input_exit_code_and_message(example):
    _edit(example.parent, 'seed = 0', 'seed = "zero"')
    proc = run_cli("calibrate", str(example))
    assert proc.returncode == 1
    assert "digits.calibration.toml:10: dataset.seed" in proc.stderr
    assert not (example.parent / "calibrated").exists()


def test_cli_inspect_json(example):
    proc = run_cli("inspect", str(example.parent / "model.xml"), "--json")
    data = json.loads(proc.stdout)
    assert data["ir_version"] == 11 and data["inputs"][0]["name"] == "image" and data["weights_complete"]
