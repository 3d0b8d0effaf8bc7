"""Every import format end to end: TensorFlow Lite, a PaddlePaddle .pdmodel and a TensorFlow SavedModel
(the same trained digits classifier, tests/fixtures/make_formats.py) are calibrated through `int8wb
calibrate`, inspected through `int8wb inspect` and checked; a truncated copy is its format's own rule
with a fix, never `malformed XML`, and Paddle 3's PIR `.json` is refused as a format OpenVINO does not read."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from int8wb.calibration.checker import check_model, check_spec

FORMATS = Path(__file__).resolve().parents[1] / "fixtures" / "formats"
# name in the spec, files to copy, input layout, the format's rule for a broken copy, the file to cut short
CASES = {
    "tflite": ("digits.tflite", ["digits.tflite"], "nhwc", "broken-tflite", "digits.tflite"),
    "paddle": ("digits.pdmodel", ["digits.pdmodel", "digits.pdiparams"], "nchw", "broken-paddle", "digits.pdiparams"),
    "savedmodel": ("digits_savedmodel", ["digits_savedmodel"], "nhwc", "broken-savedmodel",
                   "digits_savedmodel/variables/variables.data-00000-of-00001"),
}


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-I", "-m", "int8wb.editor_client.cli", *args], capture_output=True,
                          text=True, timeout=timeout)


def tensors(layout: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(FORMATS / "digits.npz") as data:
        x, labels = (data["pixels"] / 16.0).astype(np.float32), data["labels"].astype(np.int64)
    return (x[:, :, :, None] if layout == "nhwc" else x[:, None]), labels


def project(folder: Path, case: str) -> Path:
    """A copy of the format's model with digits held out from its training: 100 to calibrate, 100 to measure."""
    model, files, layout, _, _ = CASES[case]
    for name in files:
        src = FORMATS / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, folder / name)
    x, labels = tensors(layout)
    np.savez(folder / "calibration.npz", inputs=x[:100], labels=labels[:100])
    np.savez(folder / "validation.npz", inputs=x[100:], labels=labels[100:])
    spec = folder / "digits.calibration.toml"
    spec.write_text(f'model = "{model}"\n[dataset]\nkind = "npz"\npath = "calibration.npz"\n'
                    '[validation]\nkind = "npz"\npath = "validation.npz"\n[accuracy]\nmetric = "top1"\n'
                    '[calibration]\nonly_if_faster = false\n[inference]\nduration = 0.2\nrounds = 2\n')
    return spec


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_format_calibrates_through_the_command_line(tmp_path, case):
    spec = project(tmp_path, case)
    source = tmp_path / CASES[case][0]
    assert [p.rule for p in check_spec(spec)] == ["converted-model"]
    done = cli("calibrate", str(spec), "--json", "-q")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    conv = result["conversion"]
    assert conv["source"] == str(source) and conv["route"] == "openvino.convert_model"
    assert Path(conv["ir"]).is_file() and Path(conv["ir"]).is_relative_to(tmp_path / ".int8wb" / "converted")
    assert result["fp32"]["accuracy"] >= 0.9  # the trained weights survive each conversion
    assert abs(result["drop"]) <= 0.03, result["drop"]
    int8 = Path(result["output"]["model"])
    stem = source.name if source.is_dir() else source.stem  # a SavedModel folder keeps its name
    assert int8 == tmp_path / "calibrated" / f"{stem}.int8.xml"
    ran = {row["runtimePrecision"] for row in result["layers"]["int8"]}
    assert ran & {"u8", "i8"}, ran  # layers the device ran in INT8
    assert result["int8_layer_count"] >= 2  # the conv and the dense layer
    assert [p.rule for p in check_spec(spec) if p.severity == "error"] == []  # now checked as the cached IR


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_format_is_inspected_and_checked_whole(tmp_path, case):
    project(tmp_path, case)
    source = tmp_path / CASES[case][0]
    [note] = check_model(source)
    assert note.rule == "converted-model" and "model model" not in note.message.lower()  # whole: nothing converted yet
    done = cli("inspect", str(source), "--json")
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout)
    shape = [1, 8, 8, 1] if CASES[case][2] == "nhwc" else [1, 1, 8, 8]
    assert facts["precision"] == "FP32" and facts["inputs"][0]["shape"] == shape
    assert "openvino.convert_model" in done.stderr
    assert all(p.severity != "error" for p in check_model(source))  # the inspected conversion is cached


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_truncated_copy_is_the_formats_own_rule_with_a_fix(tmp_path, case):
    spec = project(tmp_path, case)
    model, _, _, rule, cut = CASES[case]
    victim = tmp_path / cut
    victim.write_bytes(victim.read_bytes()[:victim.stat().st_size // 2])
    [p] = check_model(tmp_path / model)
    assert p.rule == rule and p.fix and "cut short" in p.message and "XML" not in p.message
    assert "model model" not in p.message.lower()
    [at] = [p for p in check_spec(spec) if p.severity == "error"]
    assert at.rule == rule and at.key == "model" and at.line == 1
    done = cli("calibrate", str(spec), "-q")
    assert done.returncode != 0
    said = done.stdout + done.stderr
    assert "cannot convert" in said and "cut short" in said and p.fix in said, said
    assert not (tmp_path / "calibrated").exists()
    assert not list((tmp_path / ".int8wb" / "converted").glob("*/model.xml"))


def test_paddle_without_its_weights_says_so(tmp_path):
    project(tmp_path, "paddle")
    (tmp_path / "digits.pdiparams").unlink()
    [p] = check_model(tmp_path / "digits.pdmodel")
    assert p.rule == "broken-paddle" and "digits.pdiparams, are not beside it" in p.message


def test_a_foreign_file_under_a_model_suffix_is_not_malformed_xml(tmp_path):
    for name, rule in (("junk.tflite", "broken-tflite"), ("junk.onnx", "broken-onnx"), ("junk.pdmodel", "broken-paddle")):
        (tmp_path / name).write_bytes(b"\x08\x07" + b"no model in here" * 20)
        [p] = check_model(tmp_path / name)
        assert p.rule == rule and "XML" not in p.message, p


def test_paddle_3_pir_json_is_an_unsupported_format_everywhere(tmp_path):
    for name in ("digits_pir.json", "digits_pir.pdiparams"):
        shutil.copy(FORMATS / name, tmp_path / name)
    spec = project(tmp_path, "paddle")
    spec.write_text(spec.read_text().replace('model = "digits.pdmodel"', 'model = "digits_pir.json"'))
    [p] = check_model(tmp_path / "digits_pir.json")
    assert p.rule == "unsupported-format" and "FLAGS_enable_pir_api=0" in p.fix
    [at] = check_spec(spec)
    assert at.rule == "unsupported-format" and at.key == "model"
    done = cli("inspect", str(tmp_path / "digits_pir.json"))
    assert done.returncode != 0 and "PIR" in done.stdout + done.stderr and "XML" not in done.stdout + done.stderr


def test_the_editor_shows_a_broken_source_model_by_its_rule(tmp_path):
    from int8wb.daemon.check_worker import hover, model

    project(tmp_path, "tflite")
    source = tmp_path / "digits.tflite"
    assert "cut short" not in hover(str(source))["markdown"]
    assert [p.rule for p in model(str(source), settled=True)["problems"]] == ["converted-model"]
    source.write_bytes(source.read_bytes()[:5000])
    shown = hover(str(source))["markdown"]
    assert shown.startswith("**digits.tflite**: TensorFlow Lite model") and "cut short" in shown and "fix:" in shown
    assert [p.rule for p in model(str(source), settled=True)["problems"]] == ["broken-tflite"]


def test_a_tflite_file_cut_by_any_number_of_bytes_is_caught():
    """The converter writes names, shapes and operator codes last: a file that lost its last few
    bytes still has every weight, and only a walk of those tables shows it is not whole."""
    from int8wb.calibration.source_check import Broken, check_tflite

    data = (FORMATS / "digits.tflite").read_bytes()
    check_tflite(data)
    for cut in [*range(1, 64), *range(64, len(data) - 8, 97)]:
        with pytest.raises(Broken, match="cut short|past the end|outside the file|no subgraph|TFL3"):
            check_tflite(data[:-cut])
