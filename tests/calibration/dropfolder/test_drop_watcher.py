"""calibration.dropfolder.watcher: one watcher per inbox, its loop, stops, crashes and restarts.

Two tests run the real worker: the end-to-end calibration of the digits example (through
`int8wb watch`) and the `kill -9` of the watcher in the middle of a calibration.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from int8wb.calibration.jobs import JobStore
from int8wb.calibration.problems import CalibrationError
from conftest import EXAMPLE, wait_until
from drop_helpers import Box, ROOT, Running, complete_entry, no_staging_left, new_box


@pytest.fixture
def box(tmp_path, monkeypatch) -> Box:
    return new_box(tmp_path, monkeypatch)


def test_clean_stop_requeues_the_running_job(box, monkeypatch):
    monkeypatch.setenv("FAKE_SLEEP", "30")
    m = box.model("slowjob", seed=9)
    shutil.copy(m, box.inbox / "slowjob.xml")
    shutil.copy(m.with_suffix(".bin"), box.inbox / "slowjob.bin")
    with Running(box.watcher()) as drop:
        wait_until(lambda: len(box.calls_made()) == 1, 20, "job started")
    assert box.entries() == []
    monkeypatch.setenv("FAKE_SLEEP", "0")
    drop = box.watcher()
    assert drop.run(once=True, timeout=30) == 0
    drop.close()
    assert box.entries() == ["slowjob"] and len(box.calls_made()) == 2


def test_a_second_watcher_on_one_inbox_is_refused_until_the_first_stops(box):
    first = box.watcher().start(watch=False)
    try:
        second = box.watcher()
        with pytest.raises(CalibrationError) as refused:
            second.start(watch=False)
        problem = refused.value.problems[0]
        assert problem.rule == "inbox-busy" and f"pid {os.getpid()}" in problem.message and problem.fix
    finally:
        first.close()
    third = box.watcher().start(watch=False)  # the lock went with the first watcher
    third.close()


def test_its_own_state_changing_does_not_wake_the_watcher(box):
    """Job progress lands in .int8wb/ many times a second; only the user's files should wake a scan."""
    drop = box.watcher(settle=4.0)   # idle, it scans every 2 s
    scans = []
    real_scan = drop.scan
    drop.scan = lambda: (scans.append(time.monotonic()), real_scan())[1]
    with Running(drop, timeout=3.0):
        wait_until(lambda: scans, 5, what="first scan")
        noise = box.inbox / ".int8wb" / "noise.txt"
        stop = time.monotonic() + 1.5
        while time.monotonic() < stop:
            noise.write_text(str(time.monotonic()))
            time.sleep(0.02)
        quiet = len(scans)
        (box.inbox / "note.txt").write_text("a user's file")   # this one does wake it
        wait_until(lambda: len(scans) > quiet, 1.5, what="a scan woken by the user's file")
    assert quiet <= 2, f"{quiet} scans while only our own state changed"


def test_the_daemon_serves_a_workspace_folder_that_holds_a_policy(box):
    from int8wb.calibration.jobs import Runner
    from int8wb.daemon.server import Int8Server

    m = box.model("served", seed=11)
    shutil.copy(m, box.inbox / "served.xml")
    shutil.copy(m.with_suffix(".bin"), box.inbox / "served.bin")
    store = JobStore(box.inbox)
    runner = Runner(store, python=str(box.python)).start()
    server = Int8Server()
    server.start_inbox(box.inbox, entry := {"store": store, "runner": runner, "drop": None, "trusted": False})
    assert entry["drop"] is None and not box.calls_made()  # an untrusted folder's policy is not run
    entry["trusted"] = True
    server.start_inbox(box.inbox, entry)
    try:
        assert entry["drop"] is not None
        wait_until(lambda: (box.outbox / "served" / "drop.json").is_file(), 20, "the daemon's inbox result")
    finally:
        entry["drop"].stop()
        runner.stop()
    assert len(box.calls_made()) == 1
    server.start_inbox(box.root, entry := {"store": store, "runner": runner, "drop": None, "trusted": True})  # no policy
    assert entry["drop"] is None


# -- the real worker -----------------------------------------------------------------------------

def test_digits_example_end_to_end_and_int8wb_jobs(tmp_path):
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    inbox.mkdir()
    shutil.copytree(EXAMPLE / "data", tmp_path / "data")
    (inbox / "calibration.toml").write_text(
        '[dataset]\nkind = "imagenet"\npath = "../data/calibration"\nsubset = 100\n'
        '[validation]\nkind = "imagenet"\npath = "../data/test"\nsubset = 200\n'
        '[preprocessing]\nresize = [32, 32]\ncolor = "GRAY"\nscale = [255.0]\n'
        '[calibration]\nonly_if_faster = false\n[inference]\nduration = 0.2\n[drop]\nsettle = 0.2\n')
    shutil.copy(EXAMPLE / "model.xml", inbox / "digits.xml")
    shutil.copy(EXAMPLE / "model.bin", inbox / "digits.bin")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, "-m", "int8wb.editor_client.cli", "watch", str(inbox), "--once",
                          "--timeout", "90"], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "digits: done" in run.stderr and "1 calibrated, 0 refused or failed" in run.stderr
    entry = outbox / "digits"
    assert complete_entry(entry, "digits")
    result = json.loads((entry / "digits.int8.json").read_text())
    assert result["drop"] < 0.02 and result["int8_layer_count"] > 0
    manifest = json.loads((entry / "drop.json").read_text())
    assert manifest["outputs"]["model"] == str(entry / "digits.int8.xml") and manifest["state"] == "done"
    rows = json.loads(subprocess.run([sys.executable, "-m", "int8wb.editor_client.cli", "jobs", str(inbox), "--json"],
                                     capture_output=True, text=True, env=env, check=True).stdout)
    assert [(r["name"], r["state"], r["job_state"]) for r in rows] == [("digits", "done", "done")]
    text = subprocess.run([sys.executable, "-m", "int8wb.editor_client.cli", "jobs", str(inbox)],
                          capture_output=True, text=True, env=env, check=True).stdout
    assert "digits" in text and "done" in text


def test_kill_9_of_the_watcher_mid_calibration_then_restart(box):
    for seed, name in ((10, "victim"),):
        m = box.model(name, seed=seed)
        shutil.copy(m, box.inbox / m.name)
        shutil.copy(m.with_suffix(".bin"), box.inbox / m.with_suffix(".bin").name)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    watcher = subprocess.Popen([sys.executable, "-m", "int8wb.editor_client.cli", "watch", str(box.inbox), "-q"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        store = wait_until(lambda: (box.inbox / ".int8wb" / "jobs.sqlite").exists() and JobStore(box.inbox), 20,
                      "the store")
        job = wait_until(lambda: next((j for j in store.list() if j["state"] == "running" and j["percent"] >= 2), None),
                    40, "a calibration in progress")
    finally:
        watcher.send_signal(signal.SIGKILL)
        watcher.wait(10)
    worker_pid = job["pid"]
    assert box.entries() == []

    seen_partial: list[str] = []
    stop = threading.Event()

    def monitor():  # every entry that ever appears in the outbox is complete
        while not stop.is_set():
            for entry in list(box.outbox.glob("*")) if box.outbox.is_dir() else []:
                if not entry.name.startswith(".") and not (entry / "drop.json").exists():
                    seen_partial.append(entry.name)
            time.sleep(0.01)

    t = threading.Thread(target=monitor, daemon=True)
    t.start()
    drop = box.watcher(real=True)
    try:
        status = drop.run(once=True, timeout=60)
    finally:
        stop.set()
        t.join(5)
        drop.close()
    assert status == 0 and not seen_partial
    assert box.entries() == ["victim"] and complete_entry(box.outbox / "victim", "victim")
    with pytest.raises(ProcessLookupError):
        os.kill(worker_pid, 0)   # the orphaned worker was stopped, not left to finish twice
    rows = sorted(store.list(), key=lambda r: r["created"])
    assert [r["state"] for r in rows] == ["failed", "done"]
    assert "runner" in rows[0]["error"]
    log = (box.inbox / ".int8wb" / "dropfolder.log").read_text()
    assert "victim: re-queued" in log and log.count("victim: done") == 1
    store.close()
    no_staging_left(box)
