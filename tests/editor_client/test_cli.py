"""The `int8wb` command line: every subcommand's --help, `compare` end to end on real models, exit codes."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import EXAMPLE, ROOT, conv_net, save
from int8wb.editor_client.cli import build_parser, main

FP32 = EXAMPLE / "model.xml"
DATA_COMMANDS = ("inspect", "check", "calibrate", "compare", "jobs")  # print data: each has --json


def subcommands() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")  # noqa: SLF001
    return list(action.choices)


def run(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The real entry point in a fresh interpreter: stdout, stderr and the process exit status."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="200")
    env.pop("INT8WB_TRUST", None)
    return subprocess.run([sys.executable, "-m", "int8wb.editor_client.cli", *argv], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


@pytest.fixture(scope="module")
def int8_model(tmp_path_factory) -> Path:
    """A quickly quantized copy of the example's FP32 model (NNCF on a few random tensors)."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(FP32))
    rng = np.random.default_rng(0)
    data = [rng.random((1, 1, 32, 32), dtype=np.float32) for _ in range(8)]
    quantized = nncf.quantize(model, nncf.Dataset(data), subset_size=len(data))
    path = tmp_path_factory.mktemp("int8") / "model.int8.xml"
    ov.save_model(quantized, str(path))
    return path


@pytest.fixture(scope="module")
def compared(int8_model, tmp_path_factory) -> tuple[dict, Path]:
    html = tmp_path_factory.mktemp("html") / "compare.html"
    proc = run("compare", str(FP32), str(int8_model), "--duration", "0.2", "--json", "--html", str(html))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), html


# ---- help and consistency --------------------------------------------------------------------

def test_top_level_help_documents_the_exit_codes(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for code in ("0 ", "1 ", "2 ", "130 "):
        assert re.search(rf"^\s+{code}", text, re.M), f"exit code {code.strip()} not documented"
    for name in ("inspect", "check", "calibrate", "compare", "jobs", "serve", "schema"):
        assert name in text


@pytest.mark.parametrize("command", subcommands())
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: int8wb {command}")
    # every option says what it does
    for line in text.split("options:", 1)[1].splitlines():
        if line.strip().startswith("-") and "  " not in line.strip():
            pytest.fail(f"option without help in `int8wb {command} --help`: {line.strip()}")
    if command in DATA_COMMANDS:
        assert "--json" in text


def test_the_documented_commands_exist():
    assert set(DATA_COMMANDS) | {"serve", "schema"} <= set(subcommands())


# ---- compare -----------------------------------------------------------------------------------

def test_compare_json_fp32_vs_int8(compared, int8_model):
    result, _ = compared
    assert result["kind"] == "comparison" and result["device"] == "CPU"
    assert result["models"]["a"]["path"] == str(FP32.resolve())
    assert result["models"]["b"]["path"] == str(int8_model.resolve())
    assert result["models"]["a"]["quantized"] is False and result["models"]["b"]["quantized"] is True
    # the FP32 model is also measured in strict f32; the quantized one only as the device runs it
    assert result["variants"] == ["a_f32", "a", "b"]
    assert set(result["throughput"]) == set(result["latency_ms"]) == set(result["speed"]) == {"a_f32", "a", "b"}
    assert all(v > 0 for v in result["throughput"].values())
    for key, base in (("b_vs_a", "a"), ("b_vs_a_f32", "a_f32")):  # geometric means of interleaved rounds' ratios
        ratio = result["speedup_ci"][key]
        per_round = [b / a for b, a in zip(result["speed"]["b"]["rounds"], result["speed"][base]["rounds"])]
        assert result["speedup"][key] == ratio["value"] and min(per_round) <= ratio["value"] <= max(per_round)
        assert ratio["ci"][0] <= ratio["value"] <= ratio["ci"][1]
    assert result["speed"]["a_f32"]["config"] == {"INFERENCE_PRECISION_HINT": "f32"}
    # sizes: .xml + .bin
    size = lambda xml: xml.stat().st_size + xml.with_suffix(".bin").stat().st_size  # noqa: E731
    assert result["model_size"] == {"a": size(FP32), "b": size(int8_model)}
    assert result["model_size"]["b"] < result["model_size"]["a"]
    # per-layer runtime tables of both, and INT8 execution only in B
    assert result["layers"]["a"] and result["layers"]["b"]
    assert {"name", "type", "runtimePrecision", "time_us"} <= set(result["layers"]["b"][0])
    assert result["int8_layer_count"]["a"] == 0 and result["int8_layer_count"]["b"] > 0
    convs = [r for r in result["layers"]["b"] if r["type"] == "Convolution"]
    assert convs and all(r["runtimePrecision"] in ("u8", "i8") for r in convs)
    # inputs: random tensors shaped like the model input, the dynamic batch set to 1
    assert result["inputs"] == {"image": {"shape": [1, 1, 32, 32], "dtype": "float32"}}
    assert result["settings"]["duration"] == 0.2 and result["settings"]["batch"] == 1


def test_compare_html_is_one_self_contained_file(compared):
    result, html = compared
    assert result["report"] == str(html.resolve()) and html.is_file()
    page = html.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and 'data-report="comparison"' in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page), "the page loads something"
    assert "<link" not in page and "@import" not in page and "<script src" not in page
    for section in ("summary", "comparison", "models", "speed", "layer-types", "layers", "details"):
        assert f'data-section="{section}"' in page
    assert result["models"]["a"]["name"] in page and result["models"]["b"]["name"] in page
    rows = re.findall(r'<tr data-row="\d+"', page)
    assert len(rows) >= max(len(result["layers"]["a"]), len(result["layers"]["b"]))
    assert re.search(r'data-field="speedup.b_vs_a">[\d.]+×<', page)
    assert "fp32.accuracy" not in page  # no accuracy in a comparison of two models
    assert not list(html.parent.glob(".*tmp*")), "temporary file left behind"


def test_compare_two_int8_variants_and_the_text_table(int8_model, tmp_path):
    other = tmp_path / "copy" / "other.int8.xml"
    other.parent.mkdir()
    other.write_bytes(int8_model.read_bytes())
    other.with_suffix(".bin").write_bytes(int8_model.with_suffix(".bin").read_bytes())
    proc = run("compare", str(int8_model), str(other), "--duration", "0.1", "--batch", "2", "--layers", "-q")
    assert proc.returncode == 0, proc.stderr
    assert "A (strict f32)" not in proc.stdout  # both are quantized: no strict-f32 variant
    assert "model.int8.xml" in proc.stdout and "other.int8.xml" in proc.stdout and "batch 2" in proc.stdout
    assert "runtime layers, A vs B" in proc.stdout and "u8" in proc.stdout


def test_saved_comparison_re_renders(compared, tmp_path):
    from int8wb.calibration.report import main as report_main

    result, _ = compared
    saved = tmp_path / "cmp.json"
    saved.write_text(json.dumps(result))
    assert report_main([str(saved), str(tmp_path / "again.html")]) == 0
    assert 'data-report="comparison"' in (tmp_path / "again.html").read_text(encoding="utf-8")


def test_random_inputs_set_dynamic_dims_to_one():
    from int8wb.calibration.comparison import random_inputs

    data = random_inputs(conv_net(channels=2))
    assert list(data) == ["image"] and data["image"].shape == (1, 2, 16, 16) and data["image"].dtype == np.float32
    assert np.array_equal(data["image"], random_inputs(conv_net(channels=2))["image"])  # same data every time


# ---- exit codes --------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, code, stderr", [
    (["bogus"], 2, "invalid choice"),
    ([], 2, "required"),
    (["compare", str(FP32)], 2, "required"),
    (["compare", str(FP32), str(FP32), "--batch", "0"], 2, "must be > 0"),
    (["compare", str(FP32), str(FP32), "--duration", "abc"], 2, "not a number"),
    (["jobs", "--limit", "-1"], 2, "must be > 0"),
    (["compare", str(FP32), "missing.xml"], 1, "model not found"),
    (["compare", str(FP32), str(FP32), "--device", "NOPE", "--duration", "0.1"], 1, "not available"),
    (["inspect", "missing.xml"], 1, "missing.xml"),
    (["check", "missing.xml"], 1, "no such file"),
    (["calibrate", "missing.calibration.toml"], 1, "cannot read the spec"),
    (["jobs", "no-such-folder"], 1, "no such folder"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_exit_codes_for_bad_input(argv, code, stderr, tmp_path):
    argv = [str(tmp_path / a) if a.startswith(("missing", "no-such")) else a for a in argv]
    proc = run(*argv)
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    assert stderr in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr


def test_compare_models_whose_inputs_differ_is_refused(tmp_path):
    other = save(conv_net(channels=3), tmp_path / "net.xml")
    proc = run("compare", str(FP32), str(other), "--duration", "0.1")
    assert proc.returncode == 1 and "inputs do not match" in proc.stderr and "Traceback" not in proc.stderr


def test_json_output_is_pure_json(tmp_path):
    for argv in (["inspect", str(FP32), "--json"], ["check", str(EXAMPLE), "--json"], ["jobs", str(tmp_path), "--json"],
                 ["schema"]):
        proc = run(*argv)
        assert proc.returncode == 0, proc.stderr
        json.loads(proc.stdout)


def test_table_names_in_problems_are_printed_not_taken_for_markup(tmp_path):
    """`metric 'top1' needs labels but [validation] has none` used to print as `... but  has none`."""
    from conftest import copy_example

    spec = copy_example(tmp_path)
    text = spec.read_text()
    spec.write_text(text.replace('[validation]               # accuracy of FP32 and INT8, and the drop, are measured '
                                 'here\nkind = "imagenet"', '[validation]\nkind = "images"\nrecursive = true', 1))
    assert spec.read_text() != text
    proc = run("calibrate", str(spec))
    assert proc.returncode == 1 and "needs labels but [validation] has none" in proc.stderr, proc.stderr


def test_version():
    proc = run("--version")
    assert proc.returncode == 0 and re.fullmatch(r"int8wb \S+\n", proc.stdout)


def test_progress_is_plain_lines_when_stderr_is_not_a_terminal_and_timeout_stops_a_run(tmp_path):
    """CI logs and nohup get a line per phase and per 10 %; --timeout ends the run with exit 1, nothing written."""
    from conftest import copy_example, tree

    spec = copy_example(tmp_path)
    proc = run("calibrate", str(spec))
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if re.match(r"int8wb: +\d+\.\d% \S", line)]
    assert {"calibrating", "INT8 accuracy"} <= {re.sub(r"^int8wb: +[\d.]+% (.*) \(\d+ s\)$", r"\1", line)
                                               for line in lines}
    percents = [float(line.split("%")[0].split()[-1]) for line in lines]
    assert percents == sorted(percents) and len(lines) >= 8 and "recommendation:" in proc.stdout
    assert "layers that run INT8:" in proc.stdout and "quantize operations inserted:" in proc.stdout
    before = tree(spec.parent)
    late = run("calibrate", str(spec), "--timeout", "1")
    assert late.returncode == 1 and "timed out after 1 s (--timeout); nothing was written" in late.stderr
    assert tree(spec.parent) == before
