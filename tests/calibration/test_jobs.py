"""calibration.jobs: the store, the runner's concurrency limit, progress, cancel, crashes, restarts."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from int8wb.calibration.jobs import JobStore, Runner, Slots, store_path
from conftest import copy_example, wait_until

ROOT = Path(__file__).resolve().parents[2]


def _visible(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*")} if folder.is_dir() else {}


def _temporaries(folder: Path) -> list[str]:
    return [p.name for p in folder.glob(".*tmp*")] if folder.is_dir() else []



@pytest.fixture
def ws(tmp_path) -> Path:
    copy_example(tmp_path)
    return tmp_path


def spec_in(ws: Path) -> Path:
    return ws / "digits" / "digits.calibration.toml"


def test_store_is_wal_sqlite_under_the_workspace(ws):
    store = JobStore(ws)
    assert store.path == ws / ".int8wb" / "jobs.sqlite" == store_path(ws)
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    job_id = store.add(str(spec_in(ws)), "model.xml", "default", str(ws / "out"))
    row = store.get(job_id)
    assert row["state"] == "queued" and row["percent"] == 0 and row["method"] == "default"
    cols = {r[1] for r in sqlite3.connect(store.path).execute("PRAGMA table_info(jobs)")}
    assert {"id", "spec", "model", "method", "state", "percent", "phase", "started", "finished", "summary",
            "error", "pid"} <= cols


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
    assert {"baseline accuracy", "calibrating", "speed: INT8"} <= {ph for _, ph in progress}
    s = done["summary"]
    assert isinstance(s["drop"], float) and s["speedup"]["vs_default"] > 0
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
    assert not [n for n in _visible(out) if n.startswith("model.int8")] and not _temporaries(out)


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
    assert not _temporaries(spec.parent / "calibrated")


def test_restart_marks_orphaned_running_rows_failed(ws):
    store = JobStore(ws)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = store.add(str(spec_in(ws)))
    store.update(orphan, state="running", pid=dead.pid, owner=dead.pid, started=time.time(), percent=42.0)
    never = store.add(str(spec_in(ws)))
    store.update(never, state="running", pid=None, owner=dead.pid, started=time.time())
    queued = store.add(str(spec_in(ws)))
    store.close()

    store = JobStore(ws)  # a new process would open the same file
    runner = Runner(store)
    assert sorted(store.reconcile()) == sorted([orphan, never])
    row = store.get(orphan)
    assert row["state"] == "failed" and str(dead.pid) in row["error"] and row["finished"]
    assert store.get(never)["state"] == "failed"
    assert store.get(queued)["state"] == "queued"  # still there, picked up by the next runner
    runner.start()
    try:
        wait_until(lambda: store.get(queued)["state"] == "running", 10, "queued job resumed")
        runner.cancel(queued)
        runner.wait(queued, 10)
    finally:
        runner.stop()


def test_cli_jobs_reads_the_same_store(ws):
    store = JobStore(ws)
    job_id = store.add(str(spec_in(ws)), method="default")
    store.update(job_id, state="failed", error="boom", finished=time.time())
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-m", "int8wb.editor_client.cli", "jobs", str(ws), "--json"],
                         capture_output=True, text=True, env=env, check=True).stdout
    rows = json.loads(out)
    assert rows[0]["id"] == job_id and rows[0]["state"] == "failed" and rows[0]["error"] == "boom"
    text = subprocess.run([sys.executable, "-m", "int8wb.editor_client.cli", "jobs", str(ws)],
                          capture_output=True, text=True, env=env, check=True).stdout
    assert job_id in text and "failed" in text
