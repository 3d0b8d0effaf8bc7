"""Trust is given from outside the workspace: nothing in a folder makes its Python or its drop policy run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from int8wb.calibration.trust import set_trusted, trust_file, trusted, trusted_folders

CLI = [sys.executable, "-I", "-m", "int8wb.editor_client.cli"]


def test_a_trusted_folder_trusts_what_lies_below_it_and_nothing_else(tmp_path):
    inside, outside = tmp_path / "ws" / "deep", tmp_path / "other"
    inside.mkdir(parents=True)
    outside.mkdir()
    assert not trusted(folder=inside)
    set_trusted(tmp_path / "ws")
    assert trusted(folder=inside) and trusted(folder=tmp_path / "ws") and not trusted(folder=outside)
    assert oct(trust_file().stat().st_mode & 0o777) == "0o600"
    set_trusted(tmp_path / "ws", on=False)
    assert trusted_folders() == [] and not trusted(folder=inside)


def test_a_symlink_into_a_trusted_folder_is_judged_by_where_it_points(tmp_path):
    real, link = tmp_path / "real", tmp_path / "link"
    real.mkdir()
    link.symlink_to(real)
    set_trusted(link)
    assert trusted_folders() == [real.resolve()] and trusted(folder=real)


def test_a_broken_list_trusts_nothing(tmp_path):
    trust_file().parent.mkdir(parents=True, exist_ok=True)
    trust_file().write_text("{not json")
    assert not trusted(folder=tmp_path)
    trust_file().write_text(json.dumps({"folders": ["relative/path", 7]}))
    assert trusted_folders() == []


def test_int8wb_trust_adds_lists_and_revokes(tmp_path):
    run = subprocess.run(CLI + ["trust", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.split() == [str(tmp_path.resolve())]
    run = subprocess.run(CLI + ["trust", str(tmp_path), "--revoke"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout == ""
    run = subprocess.run(CLI + ["trust", str(tmp_path / "missing")], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "not a folder" in run.stderr


def test_sigterm_cleans_up_like_ctrl_c(tmp_path):
    """`timeout` sends SIGTERM: calibrate now stops as on Ctrl-C (exit 130) and leaves no temporaries."""
    from conftest import copy_example

    spec = copy_example(tmp_path)
    spec.write_text(spec.read_text().replace("duration = 0.3", "duration = 60.0"))  # still at work when signalled
    proc = subprocess.Popen(CLI + ["calibrate", str(spec), "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    # Signalled at work, not during start-up: once OpenVINO's CPU plugin is loaded, a model is compiling.
    deadline = time.monotonic() + 120
    while "openvino_intel_cpu_plugin" not in Path(f"/proc/{proc.pid}/maps").read_text(errors="replace"):
        assert proc.poll() is None and time.monotonic() < deadline, "calibrate ended or never compiled"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "cancelled; nothing was written" in err
    left = [p.name for p in spec.parent.rglob("*") if ".tmp-" in p.name or p.name.startswith(".model")]
    assert left == []
    assert not (spec.parent / "calibrated" / "model.int8.xml").exists()
