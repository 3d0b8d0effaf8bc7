"""calibration.jobs.worker: one request in, protocol messages out, started apart from the workspace."""
from __future__ import annotations

import subprocess
import sys

from int8wb.calibration.jobs import protocol
from int8wb.calibration.jobs.protocol import Calibrate, Compare, Failure, Progress, Result
from int8wb.calibration.jobs.backend import spawn
from int8wb.calibration.jobs.worker import run


def answers(request) -> tuple[int, list]:
    sent: list = []
    return run(request, sent.append), sent


def test_a_spec_that_does_not_load_is_one_failure_with_its_problems(tmp_path):
    code, sent = answers(Calibrate(str(tmp_path / "missing.calibration.toml")))
    assert code == 1 and len(sent) == 1 and isinstance(sent[0], Failure)
    assert sent[0].problems and sent[0].problems[0].path == str(tmp_path / "missing.calibration.toml")


def test_a_missing_model_to_compare_is_one_failure(tmp_path):
    code, sent = answers(Compare(str(tmp_path / "a.xml"), str(tmp_path / "b.xml")))
    assert code == 1 and [p.rule for p in sent[-1].problems] == ["model-missing"]


def test_compare_sends_progress_then_the_result_with_its_report(model_xml, tmp_path):
    html = tmp_path / "r.html"
    code, sent = answers(Compare(str(model_xml), str(model_xml), str(html), duration=0.1, strict_f32=False))
    assert code == 0 and all(isinstance(m, Progress) for m in sent[:-1]) and isinstance(sent[-1], Result)
    assert sent[-1].data["variants"] == ["a", "b"] and sent[-1].data["report"] == str(html) and html.is_file()


def test_the_worker_starts_isolated_from_the_workspace(tmp_path, monkeypatch):
    """Neither its folder nor PYTHONPATH can put a workspace module in place of ours."""
    for name in ("int8wb", "calibration"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("raise SystemExit('the workspace was imported')\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    spec = tmp_path / "missing.calibration.toml"
    with open(tmp_path / "log", "wb") as log:
        proc = spawn(sys.executable, Calibrate(str(spec)), log, tmp_path)
        out = proc.stdout.read()
        proc.stdout.close()
    assert proc.wait() == 1, (tmp_path / "log").read_text()
    [msg] = protocol.messages(out.splitlines())
    assert isinstance(msg, Failure) and msg.problems[0].path == str(spec)


def test_a_bad_command_line_exits_2_and_says_nothing_on_the_protocol(tmp_path):
    run_ = subprocess.run([sys.executable, "-I", "-m", protocol.WORKER_MODULE, "dance"], capture_output=True,
                          text=True, cwd=tmp_path)
    assert run_.returncode == 2 and run_.stdout == "" and "dance" in run_.stderr
