"""Hostile files: whatever a workspace holds, the checker answers with problems, at once.

Each case reproduces a file that used to hang, freeze or crash a tool (a FIFO, a backtracking
regular expression, nesting and integers past Python's limits, an unknown XML encoding, a
symlink loop), through the engine and through `int8wb check --json` in a child process.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from int8wb.calibration.checker import check_model, check_paths, check_spec
from int8wb.calibration.toml_lines import key_lines

SPEC = 'model = "model.xml"\n[dataset]\nkind = "imagenet"\npath = "data"\n'


def check_json(folder: Path) -> list[dict]:
    """`int8wb check FOLDER --json` must finish well within the bound and print JSON, not a traceback."""
    run = subprocess.run([sys.executable, "-I", "-m", "int8wb.editor_client.cli", "check", str(folder), "--json"],
                         capture_output=True, text=True, timeout=60)
    assert "Traceback" not in run.stderr, run.stderr
    return json.loads(run.stdout)


def test_a_fifo_named_like_a_model_or_spec_never_blocks(tmp_path):
    os.mkfifo(tmp_path / "model.xml")
    os.mkfifo(tmp_path / "pipe.calibration.toml")
    (p,) = check_model(tmp_path / "model.xml")
    assert p.rule == "corrupt-model" and "not a regular file (a FIFO)" in p.message
    (p,) = check_spec(tmp_path / "pipe.calibration.toml")
    assert "not a regular file (a FIFO)" in p.message
    rows = check_json(tmp_path)
    assert [r["rule"] for r in rows] == ["spec"] and "FIFO" in rows[0]["message"]


def test_spec_line_scan_is_linear_on_a_backtracking_input(tmp_path):
    """A nested array of spaces used to take 3 s at 2 KB and 201 s at 8 KB (cubic backtracking)."""
    spaces = " " * 64_000
    text = SPEC + f"bogus = 1\nx = [[{spaces}\n"
    start = time.perf_counter()
    key_lines(text)
    assert time.perf_counter() - start < 2.0
    spec = tmp_path / "slow.calibration.toml"
    spec.write_text(SPEC + f"bogus = 1\nx = [[{spaces}1]]\n")
    start = time.perf_counter()
    problems = check_spec(spec)
    assert time.perf_counter() - start < 5.0
    bogus = next(p for p in problems if p.key == "dataset.bogus")
    assert bogus.line == 5 and "unknown key" in bogus.message


@pytest.mark.parametrize("body, words", [
    ("x = " + "[" * 5000 + "]" * 5000, "nested too deeply"),
    ("x = " + "9" * 4400, "4300 digits"),
], ids=["nested array", "huge integer"])
def test_toml_past_pythons_limits_is_one_problem(tmp_path, body, words):
    spec = tmp_path / "bad.calibration.toml"
    spec.write_text(body + "\n")
    (p,) = check_spec(spec)
    assert p.rule == "toml" and words in p.message and p.line == 1
    assert [r["rule"] for r in check_json(tmp_path)] == ["toml"]


def test_xml_in_an_unknown_encoding_is_a_corrupt_model(tmp_path):
    (tmp_path / "model.xml").write_bytes(b'<?xml version="1.0" encoding="EBCDIC-US"?>\n<net name="x"></net>\n')
    (p,) = check_model(tmp_path / "model.xml")
    assert p.rule == "corrupt-model" and "EBCDIC-US" in p.message
    assert [r["rule"] for r in check_json(tmp_path)] == ["corrupt-model"]


def test_a_symlink_loop_and_a_nul_in_a_path(tmp_path):
    loop = tmp_path / "loop.xml"
    loop.symlink_to(loop)
    (p,) = check_model(loop)
    assert "symbolic links" in p.message
    (p,) = check_paths(["bad\0name.xml"])
    assert p.rule == "not-found"


def test_the_checker_never_raises_on_random_bytes(tmp_path):
    """Bytes that are neither TOML nor XML, under both names."""
    rng = __import__("random").Random(7)
    for n in range(40):
        blob = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))
        (tmp_path / f"{n}.calibration.toml").write_bytes(blob)
        (tmp_path / f"{n}.xml").write_bytes(b"<net" + blob)
    problems = check_paths([tmp_path])
    assert problems and all(p.rule != "internal" for p in problems)


def test_check_reports_a_custom_metric_calibrate_would_refuse(tmp_path, monkeypatch):
    """`check` passed such a spec while `calibrate` refused it: both now ask the same question."""
    from conftest import copy_example

    monkeypatch.delenv("INT8WB_TRUST", raising=False)
    folder = copy_example(tmp_path).parent
    (folder / "score.py").write_text("open('PWNED', 'w')\ndef score(output, label):\n    return 1.0\n")
    spec = folder / "custom.calibration.toml"
    spec.write_text((folder / "digits.calibration.toml").read_text()
                    .replace('metric = "top1"', 'metric = "custom"\ncustom = "score.py:score"'))
    line = spec.read_text().splitlines().index('custom = "score.py:score"') + 1
    (p,) = [p for p in check_spec(spec) if p.severity == "error"]
    assert (p.rule, p.key, p.line) == ("untrusted-metric", "accuracy.custom", line)
    assert [p.rule for p in check_spec(spec, trusted=True) if p.severity == "error"] == []
    assert not (folder / "PWNED").exists() and not Path("PWNED").exists()  # checking ran no user code


def test_an_ir_with_40k_int8_constants_is_checked_in_linear_time(tmp_path):
    """Every Const's edges used to be searched with a freshly compiled pattern over all edges (96 s)."""
    n = 40_000
    layers = ['<layer id="0" name="x" type="Parameter" version="opset1"><data shape="1,4" element_type="f32"/>'
              '<output><port id="0" precision="FP32"><dim>1</dim><dim>4</dim></port></output></layer>']
    layers += [f'<layer id="{i}" name="c{i}" type="Const" version="opset1"><data element_type="i8" shape="4" '
               f'offset="{(i - 1) * 4}" size="4"/><output><port id="0" precision="I8"><dim>4</dim></port></output>'
               f'</layer>' for i in range(1, n + 1)]
    layers.append(f'<layer id="{n + 1}" name="r" type="Result" version="opset1"><input><port id="0"><dim>1</dim>'
                  f'<dim>4</dim></port></input></layer>')
    (tmp_path / "m.xml").write_text('<?xml version="1.0"?>\n<net name="m" version="11">\n<layers>\n'
                                    + "\n".join(layers) + f'\n</layers>\n<edges>\n<edge from-layer="0" from-port="0" '
                                    f'to-layer="{n + 1}" to-port="0"/>\n</edges>\n</net>\n')
    (tmp_path / "m.bin").write_bytes(bytes(4 * n))
    start = time.perf_counter()
    problems = check_model(tmp_path / "m.xml")
    assert time.perf_counter() - start < 15.0
    assert [p.rule for p in problems] == ["no-int8-layers"]


def test_a_spec_writes_only_below_its_own_folder(tmp_path):
    """`dir = "../../../x"`, an absolute dir and a `calibrated/` that links elsewhere were all written to."""
    from conftest import copy_example
    from int8wb.calibration.trust import set_trusted

    spec = copy_example(tmp_path)
    text = spec.read_text()
    line = text.splitlines().index('dir = "calibrated"') + 1
    (tmp_path / "elsewhere").mkdir()
    (spec.parent / "linked").symlink_to(tmp_path / "elsewhere")
    for value in ('"../../../x"', f'"{tmp_path / "elsewhere"}"', '"linked"'):
        spec.write_text(text.replace('dir = "calibrated"', f"dir = {value}"))
        (p,) = [p for p in check_spec(spec) if p.severity == "error"]
        assert (p.rule, p.key, p.line) == ("path-outside", "output.dir", line), value
    set_trusted(tmp_path / "elsewhere")  # the user vouches for it, from outside the workspace
    assert [p for p in check_spec(spec) if p.severity == "error"] == []


def test_an_images_dataset_at_the_root_of_the_disk_is_refused_quickly(tmp_path, monkeypatch):
    """`kind = "images"` with `path = "/"` walked the whole filesystem on every check (16-18 s, +430 MB)."""
    from conftest import copy_example
    from int8wb.calibration import datasets

    monkeypatch.setattr(datasets, "SCAN_LIMIT", 2_000)  # the real limit is 500,000 entries
    spec = copy_example(tmp_path)
    spec.write_text(spec.read_text().replace('kind = "imagenet"          # one sub-folder per class\npath = "data/calibration"',
                                             'kind = "images"\nrecursive = true\npath = "/usr"'))
    start = time.perf_counter()
    problems = [p for p in check_spec(spec) if p.rule == "dataset-too-large"]
    assert time.perf_counter() - start < 10 and [p.key for p in problems] == ["dataset.path"]


@pytest.mark.parametrize("model, words", [
    ("loop.xml", "model not found"),
    ("mo\\u0000del.xml", "a path cannot contain a NUL character"),
], ids=["symlink loop", "NUL in a path"])
def test_calibrate_answers_bad_model_paths_in_one_line(tmp_path, model, words):
    from conftest import copy_example

    spec = copy_example(tmp_path)
    (spec.parent / "loop.xml").symlink_to(spec.parent / "loop.xml")
    spec.write_text(spec.read_text().replace('model = "model.xml"', f'model = "{model}"'))
    run = subprocess.run([sys.executable, "-I", "-m", "int8wb.editor_client.cli", "calibrate", str(spec), "-q"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.strip().count("\n") == 0 and words in run.stderr and f"{spec}:3: model:" in run.stderr
