"""calibration.jobs.runner: the concurrency limit, progress, cancel, crashes, and comparisons in a worker."""
from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from int8wb.calibration.jobs import JobStore, Runner, Slots, compare_in_worker
from int8wb.calibration.jobs.protocol import Failure, Progress, Result
from int8wb.calibration.jobs.runner import ProgressGate
from int8wb.calibration.problems import CalibrationError, Problem
from conftest import copy_example, wait_until
from jobs_helpers import fake_python, spec_in, temporaries, visible, ws  # noqa: F401 (ws is a fixture)


def test_queue_limit_progress_and_summary(ws):
    spec = spec_in(ws)
    store = JobStore(ws)
    events: list[dict] = []
    runner = Runner(store, max_concurrent=1, on_change=events.append).start()
    try:
        ids = [runner.submit(spec) for _ in range(3)]
        wait_until(lambda: store.get(ids[0])["state"] == "running", what="first job running")
        time.sleep(0.5)
        states = [store.get(i)["state"] for i in ids]
        assert states == ["running", "queued", "queued"], states
        assert len(runner.running()) == 1
        assert runner.cancel(ids[1]) and runner.cancel(ids[2])
        assert [store.get(i)["state"] for i in ids[1:]] == ["cancelled", "cancelled"]
        done = runner.wait(ids[0], 90)
    finally:
        runner.stop()
    assert done["state"] == "done", done["error"]
    progress = [(e["percent"], e["phase"]) for e in events if e["id"] == ids[0] and e["state"] == "running"]
    percents = [p for p, _ in progress]
    assert percents == sorted(percents) and len(progress) >= 5
    assert {"baseline accuracy", "calibrating", "speed (interleaved rounds)"} <= {ph for _, ph in progress}
    s = done["summary"]
    assert isinstance(s["drop"], float) and s["speedup"]["vs_default"]["value"] > 0 and s["speedup_vs_default"] > 0
    assert s["drop_ci"][0] <= s["drop"] <= s["drop_ci"][1]
    assert Path(s["output"]["report"]).is_file() and s["report"] == s["output"]["report"]
    assert Path(s["output"]["model"]).is_file()
    assert done["started"] <= done["finished"] and done["pid"] > 0
    assert store.last_result(str(spec.resolve()))["id"] == ids[0]


def test_concurrency_limit_of_two(ws):
    store = JobStore(ws)
    runner = Runner(store, max_concurrent=2).start()
    try:
        ids = [runner.submit(spec_in(ws)) for _ in range(3)]
        wait_until(lambda: len(runner.running()) == 2, what="two workers")
        time.sleep(0.3)
        assert sorted(store.get(i)["state"] for i in ids) == ["queued", "running", "running"]
    finally:
        for i in ids:
            runner.cancel(i)
        runner.stop()
    assert all(store.get(i)["state"] == "cancelled" for i in ids)


def test_runners_of_two_folders_share_one_limit(tmp_path):
    """The language server runs one runner per workspace folder; INT8WB_MAX_JOBS is for them all."""
    folders = [tmp_path / "a", tmp_path / "b"]
    slots = Slots(1)
    runners = []
    for folder in folders:
        folder.mkdir()
        copy_example(folder)
        runners.append(Runner(JobStore(folder), max_concurrent=1, slots=slots).start())
    try:
        ids = [runner.submit(spec_in(folder)) for runner, folder in zip(runners, folders)]
        wait_until(lambda: sum(len(r.running()) for r in runners) == 1, what="one worker")
        time.sleep(0.5)
        states = [r.store.get(i)["state"] for r, i in zip(runners, ids)]
        assert sorted(states) == ["queued", "running"], states
        first = states.index("running")
        assert runners[first].cancel(ids[first])
        other = 1 - first
        wait_until(lambda: runners[other].store.get(ids[other])["state"] == "running", 10,
                   what="the other folder's job takes the freed slot")
        runners[other].cancel(ids[other])
    finally:
        for r in runners:
            r.stop()


def test_cancel_kills_the_worker_and_leaves_no_output(ws):
    spec = spec_in(ws)
    out = spec.parent / "calibrated"
    store = JobStore(ws)
    runner = Runner(store).start()
    try:
        job_id = runner.submit(spec)
        # past "saving": the engine has staged its temporaries in the output folder
        running = wait_until(lambda: (j := store.get(job_id))["state"] == "running" and j["percent"] >= 52 and j,
                        60, "job in progress")
        t0 = time.monotonic()
        assert runner.cancel(job_id)
        final = runner.wait(job_id, 10)
        assert time.monotonic() - t0 < 4
    finally:
        runner.stop()
    assert final["state"] == "cancelled"
    with pytest.raises(ProcessLookupError):
        os.kill(running["pid"], 0)
    assert not [n for n in visible(out) if n.startswith("model.int8")] and not temporaries(out)


def test_killed_worker_fails_the_job_and_the_runner_lives_on(ws):
    spec = spec_in(ws)
    store = JobStore(ws)
    runner = Runner(store).start()
    try:
        first = runner.submit(spec)
        second = runner.submit(spec)
        running = wait_until(lambda: (j := store.get(first))["state"] == "running" and j["pid"] and j, 30, "running")
        os.kill(running["pid"], signal.SIGKILL)  # what the OOM killer does
        failed = runner.wait(first, 10)
        assert failed["state"] == "failed" and "SIGKILL" in failed["error"]
        # the runner goes on with the queue
        wait_until(lambda: store.get(second)["state"] == "running", 10, "next job started")
        runner.cancel(second)
        assert runner.wait(second, 10)["state"] == "cancelled"
    finally:
        runner.stop()
    assert not temporaries(spec.parent / "calibrated")


# -- the worker's stream, told by a fake worker ---------------------------------------------------

def run_fake(ws: Path, lines: list, code: int = 0, stderr: str = "", interval: float = 0.2) -> tuple[dict, list]:
    """One job through a runner whose worker says `lines`; the final row and the running rows seen."""
    store = JobStore(ws)
    events: list[dict] = []
    runner = Runner(store, python=fake_python(ws, lines, code, stderr), on_change=events.append,
                    progress_interval=interval).start()
    try:
        job = runner.wait(runner.submit(spec_in(ws)), 10)
    finally:
        runner.stop()
    return job, [(e["percent"], e["phase"]) for e in events if e["state"] == "running"]


def test_every_phase_is_recorded_however_short(ws):
    """Only repeated updates within one phase are throttled: a 0.2 s phase (baseline accuracy on
    the digits example) used to fall between two recordings now and then."""
    lines = [Progress(0, "checking"), Progress(2, "baseline accuracy"), Progress(18, "calibrating"),
             Progress(30, "calibrating"), Progress(47, "calibrating"), Progress(48, "saving"), Result({"drop": 0.01})]
    job, seen = run_fake(ws, lines, interval=3600)
    assert job["state"] == "done" and job["summary"]["drop"] == 0.01
    assert seen == [(0, "starting"), (0, "checking"), (2, "baseline accuracy"), (18, "calibrating"), (48, "saving")]


def test_progress_gate_throttles_within_a_phase_only():
    now = [0.0]
    gate = ProgressGate(1.0, clock=lambda: now[0])
    admitted = []
    for t, pct, phase in [(0, 0, "a"), (0.1, 5, "a"), (0.2, 6, "b"), (0.3, 7, "b"), (1.3, 8, "b"), (1.4, 100, "b"),
                          (1.5, 100, None)]:
        now[0] = t
        admitted.append(gate.admit(Progress(pct, phase)))
    assert admitted == [True, False, True, False, True, True, True]


def test_lines_that_are_not_messages_are_skipped(ws):
    """As before: a line that is not one of our messages is ignored, and the job ends by what follows."""
    lines = ["not json\n", "42\n", '["progress"]\n', '{"kind": "progress", "percent": "abc"}\n',
             '{"kind": "mystery"}\n', '{"progress": 50, "phase": "no kind"}\n', "\n",
             Progress(10, "calibrating"), Result({"drop": 0.02})]
    job, seen = run_fake(ws, lines)
    assert job["state"] == "done" and job["summary"]["drop"] == 0.02
    assert seen == [(0, "starting"), (10, "calibrating")]


def test_a_failure_keeps_the_workers_problems(ws):
    problem = Problem("no such key", path="spec.toml", line=3, key="calibration.methd", fix="method")
    job, _ = run_fake(ws, [Progress(1, "checking"), Failure(str(problem), (problem,))], code=1)
    assert job["state"] == "failed" and job["error"] == str(problem)
    assert job["summary"] == {"problems": [problem.to_dict()]}


def test_a_worker_that_dies_without_an_answer(ws):
    job, _ = run_fake(ws, [Progress(1, "checking")], code=3, stderr="Traceback\nboom\n")
    assert job["state"] == "failed"
    assert job["error"] == "the worker exited with code 3: Traceback | boom; nothing was written"


# -- comparisons ----------------------------------------------------------------------------------

def test_compare_in_worker_returns_what_the_cli_prints(model_xml, tmp_path):
    int8_like = model_xml.with_name("copy.xml")
    for suffix in (".xml", ".bin"):
        shutil.copy(model_xml.with_suffix(suffix), int8_like.with_suffix(suffix))
    phases = []
    report = tmp_path / "out" / "a-vs-b.html"
    result = compare_in_worker(model_xml, int8_like, report, duration=0.1,
                               progress=lambda pct, phase: phases.append(phase))
    assert result["kind"] == "comparison" and result["models"]["a"]["name"] == "model.xml"
    assert result["models"]["b"]["name"] == "copy.xml" and result["settings"]["duration"] == 0.1
    assert result["report"] == str(report) and report.is_file()
    assert phases[0] == "speed (interleaved rounds)" and phases[-1] == "done"


def test_compare_in_worker_raises_the_workers_problems(model_xml, tmp_path):
    model_xml.with_suffix(".bin").unlink()
    with pytest.raises(CalibrationError) as err:
        compare_in_worker(model_xml, model_xml, duration=0.1)
    assert [p.rule for p in err.value.problems] == ["missing-weights"]
    assert err.value.problems[0].path == str(model_xml)


def test_compare_in_worker_says_why_the_worker_died(tmp_path):
    python = fake_python(tmp_path, [Progress(1, "speed: A")], code=3, stderr="Fatal Python error\n")
    with pytest.raises(CalibrationError, match="exited with code 3: Fatal Python error"):
        compare_in_worker(tmp_path / "a.xml", tmp_path / "b.xml", python=python)


def test_a_caller_that_gives_up_stops_the_comparison_worker(tmp_path):
    python = fake_python(tmp_path, [Progress(1, "speed: A")], linger=60)

    def give_up(pct, phase):
        raise KeyboardInterrupt

    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        compare_in_worker(tmp_path / "a.xml", tmp_path / "b.xml", python=python, progress=give_up)
    assert time.monotonic() - t0 < 5
