"""calibration.jobs.store: the SQLite store, reconciling rows after a restart, and `int8wb jobs` reading it."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from int8wb.calibration.jobs import JobStore, Runner, alive, store_path
from int8wb.calibration.jobs.protocol import WORKER_MODULE
from conftest import wait_until
from jobs_helpers import spec_in, ws  # noqa: F401 (ws is a fixture)

ROOT = Path(__file__).resolve().parents[3]


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


def test_reconcile_knows_a_live_worker_by_its_command_line(ws):
    """A live runner's worker is left alone; a live process that is not a worker (a reused pid) is not one."""
    sleep = "import time; time.sleep(60)"
    worker = subprocess.Popen([sys.executable, "-c", sleep, "-m", WORKER_MODULE, "calibrate", "x"])
    other = subprocess.Popen([sys.executable, "-c", sleep])
    owner = subprocess.Popen([sys.executable, "-c", sleep])  # another runner, alive
    try:
        wait_until(lambda: alive(worker.pid, WORKER_MODULE), 5, "worker command line readable")
        assert not alive(other.pid, WORKER_MODULE) and alive(other.pid)
        store = JobStore(ws)
        kept = store.add(str(spec_in(ws)))
        store.update(kept, state="running", pid=worker.pid, owner=owner.pid, started=time.time())
        reused = store.add(str(spec_in(ws)))
        store.update(reused, state="running", pid=other.pid, owner=owner.pid, started=time.time())
        assert store.reconcile() == [reused]
        assert store.get(kept)["state"] == "running" and worker.poll() is None
        assert store.get(reused)["state"] == "failed" and str(other.pid) in store.get(reused)["error"]
    finally:
        for proc in (worker, other, owner):
            proc.kill()
            proc.wait()


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


def test_a_reader_in_the_instant_the_store_file_exists_without_its_tables_sees_no_jobs(tmp_path):
    """The maker creates the file (with its mode), then the tables: a reader in between lists nothing
    instead of failing with "no such table"."""
    path = store_path(tmp_path)
    path.parent.mkdir()
    path.touch()
    assert JobStore(tmp_path, create=False).list() == []
    assert JobStore(tmp_path).list() == []
