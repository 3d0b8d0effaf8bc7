"""A custom metric that raises: a located `metric-error`, nothing written, never an abort.

It used to be called from OpenVINO's callback threads, where an exception aborted the whole process
(exit 134, `terminate called after throwing ...`) with no hint of the metric or the sample.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from int8wb.calibration import CalibrationError, load_spec
from int8wb.calibration.jobs import protocol
from int8wb.calibration.jobs.protocol import Calibrate, Failure
from int8wb.calibration.workflow import calibrate
from conftest import copy_example

BOOM = '''import numpy as np
calls = [0]
def score(output, label):
    calls[0] += 1
    if calls[0] == 50:
        raise ValueError("boom")
    return float(int(np.argmax(output)) == label)
'''


@pytest.fixture
def raising(tmp_path):
    spec = copy_example(tmp_path)
    (spec.parent / "boom.py").write_text(BOOM)
    spec.write_text(spec.read_text().replace('metric = "top1"', 'metric = "custom"\ncustom = "boom.py:score"', 1))
    assert 'custom = "boom.py:score"' in spec.read_text()
    return spec


def test_the_engine_raises_a_located_problem_and_writes_nothing(raising):
    with pytest.raises(CalibrationError) as err:
        calibrate(load_spec(raising), trust_custom_metrics=True)
    (p,) = err.value.problems
    assert (p.rule, p.path, p.line) == ("metric-error", str(raising.parent / "boom.py"), 6)
    assert "ValueError: boom on sample " in p.message and p.message.endswith(".png")
    assert not (raising.parent / "calibrated").exists()


def test_the_command_line_exits_1_with_one_line(raising):
    proc = subprocess.run([sys.executable, "-m", "int8wb.editor_client.cli", "calibrate", str(raising), "--trust"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert f"error: {raising.parent / 'boom.py'}:6: metric 'score' raised ValueError: boom on sample" in proc.stderr
    assert "Traceback" not in proc.stderr and "terminate called" not in proc.stderr


LATE = '''import numpy as np
class Corpus:
    def __init__(self):
        self.right = []
    def update(self, output, sample):
        self.right.append(float(int(np.argmax(output)) == sample.label))
    def compute(self):
        raise RuntimeError("corpus too small")
'''


def test_the_worker_ends_after_a_metric_that_raises_at_the_end(tmp_path):
    """Freeing the compiled model after the error once deadlocked a worker now and then (an OpenVINO
    thread held the last reference to a Python callback and waited for the interpreter lock): its job
    stayed "running" for ever. Eight workers, each must answer and exit."""
    spec = copy_example(tmp_path)
    (spec.parent / "corpus.py").write_text(LATE)
    spec.write_text(spec.read_text().replace('metric = "top1"', 'metric = "custom"\ncustom = "corpus.py:Corpus"', 1))
    argv = protocol.command(sys.executable, Calibrate(str(spec), True))
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=tmp_path)
             for _ in range(8)]
    try:
        for proc in procs:
            out, _ = proc.communicate(timeout=120)
            assert proc.returncode == 1
            (failure,) = [m for m in protocol.messages(out.splitlines()) if isinstance(m, Failure)]
            assert "metric 'Corpus' raised RuntimeError: corpus too small in compute()" in failure.error
    finally:
        for proc in procs:
            proc.kill()
