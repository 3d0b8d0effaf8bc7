"""Several runners on one folder: each runs, cancels and reports its own jobs.

Reproduces issue #15, point 8. Two daemons on one workspace ran each other's jobs (6 of 10), and
the submitting editor's progress never ended. With `int8wb watch` and a daemon on one folder,
closing the editor cancelled the watcher's job and sent a good model to FAILED. Each runner here
stands for one process (a daemon, a watcher), with its own connection to the store. Point 13:
`.int8wb/` is private whatever the umask.
"""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from int8wb.calibration.jobs import JobStore, Runner
from int8wb.calibration.jobs.lease import alive
from int8wb.calibration.jobs.protocol import WORKER_MODULE, Progress, Result, encode
from conftest import copy_example, wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "calibration" / "dropfolder"))
from drop_helpers import Running, new_box  # noqa: E402


@pytest.fixture
def spec(tmp_path) -> Path:
    return copy_example(tmp_path)


def fake_python(folder: Path, linger: float) -> str:
    """A stand-in worker: progress, `linger` seconds of work, a result."""
    script = folder / f"fake-python-{linger:g}"
    lines = encode(Progress(5, "calibrating")) + encode(Result({"drop": 0.01}))
    first, last = lines.splitlines(keepends=True)
    script.write_text(f"#!/bin/sh\nprintf '%s' '{first}'\nsleep {linger}\nprintf '%s' '{last}'\n")
    script.chmod(0o755)
    return str(script)


class Editor:
    """One editor's daemon on the folder: its own store connection and runner, and what it was told."""

    def __init__(self, folder: Path, python: str, **kw):
        self.store = JobStore(folder)
        self.events: list[dict] = []
        self.runner = Runner(self.store, python=python, on_change=self.events.append, **kw)

    def told(self, job_id: str) -> list[str]:
        return [e["state"] for e in self.events if e["id"] == job_id]


def test_two_daemons_on_one_folder_each_run_and_report_their_own_jobs(tmp_path, spec):
    python = fake_python(tmp_path, 0.3)
    a, b = Editor(tmp_path, python), Editor(tmp_path, python)  # one job at a time each: queues wait
    a.runner.start()
    try:
        mine = {a: [a.runner.submit(spec) for _ in range(5)]}
        wait_until(lambda: a.runner.running(), 10, "a's first job running")
        b.runner.start()  # the second editor opens the folder while a's jobs wait in the queue
        mine[b] = [b.runner.submit(spec) for _ in range(5)]
        for editor, ids in mine.items():
            for job_id in ids:
                editor.runner.wait(job_id, 30)
    finally:
        a.runner.stop()
        b.runner.stop()
    for editor, other in ((a, b), (b, a)):
        for job_id in mine[editor]:
            assert editor.told(job_id)[-1] == "done"  # the progress ended in the editor that asked
            assert other.told(job_id) == []           # the other never ran it
            assert editor.store.get(job_id)["runner"] == editor.runner.id


def test_a_daemon_on_a_watched_inbox_never_takes_nor_cancels_the_watchers_jobs(tmp_path, monkeypatch):
    """`int8wb watch INBOX`, then an editor opens INBOX (the daemon leaves the inbox to the watcher but
    runs a runner on its store), then the editor closes while the watcher's jobs are queued and running."""
    box = new_box(tmp_path, monkeypatch)
    monkeypatch.setenv("FAKE_SLEEP", "1.0")
    for name, seed in (("first", 1), ("second", 2)):
        m = box.model(name, seed=seed)
        shutil.copy(m.with_suffix(".bin"), box.inbox / f"{name}.bin")
        shutil.copy(m, box.inbox / f"{name}.xml")
    with Running(box.watcher(jobs=1), timeout=60) as drop:
        editor = Editor(box.inbox, str(box.python))
        editor.runner.start()
        wait_until(lambda: len(drop.store.queued()) == 1 and len(box.calls_made()) == 1, 20,
                   "one job running, one queued")
        time.sleep(1.5)  # the editor's runner comes round at least once meanwhile
        editor.runner.stop()  # closing the editor
        wait_until(lambda: box.entries() == ["first", "second"], 30, "both models published")
    assert box.entries(box.failed) == [] and editor.events == []
    assert len(box.calls_made()) == 2


def test_a_hung_runners_queued_job_is_adopted_only_once_its_lease_expires(tmp_path, spec):
    store = JobStore(tmp_path)
    store.register("hung", lease=2.0, label="a daemon that stopped answering")  # our pid: it looks alive
    expires = store.runners()[0]["expires"]
    job_id = store.add(str(spec), runner="hung")
    b = Editor(tmp_path, fake_python(tmp_path, 0))
    b.runner.start()
    try:
        time.sleep(1.0)
        assert store.get(job_id)["state"] == "queued"
        row = b.runner.wait(job_id, 15)
    finally:
        b.runner.stop()
    assert row["state"] == "done" and row["runner"] == b.runner.id and row["started"] >= expires
    assert b.told(job_id)[-1] == "done"


CHILD = """
import sys, time
from int8wb.calibration.jobs import JobStore, Runner
runner = Runner(JobStore(sys.argv[1]), python=sys.argv[2]).start()
print(runner.submit(sys.argv[3]), runner.submit(sys.argv[3]), flush=True)
time.sleep(120)
"""


def test_a_killed_runners_jobs_are_ended_and_adopted_by_the_next_runner(tmp_path, spec):
    """A daemon killed with -9: its running worker is stopped and its row says so; its queued job is
    adopted at once (its process is gone: no need to wait for the lease)."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), fake_python(tmp_path, 60), str(spec)],
                             stdout=subprocess.PIPE, text=True)
    try:
        running, queued = child.stdout.readline().split()
        store = JobStore(tmp_path)
        worker = wait_until(lambda: (j := store.get(running))["state"] == "running" and j["pid"], 20, "worker")
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    b = Editor(tmp_path, fake_python(tmp_path, 0))
    b.runner.start()
    try:
        ended = b.runner.wait(running, 10)
        adopted = b.runner.wait(queued, 10)
    finally:
        b.runner.stop()
    assert ended["state"] == "failed" and not alive(worker, WORKER_MODULE)  # (a zombie, if nobody reaps it)
    assert ended["error"] == (f"the runner that started it is gone; worker pid {worker} was stopped; "
                              "nothing was written")
    assert adopted["state"] == "done" and adopted["runner"] == b.runner.id and b.told(queued)[-1] == "done"


def two_editors(folder: Path) -> tuple[Editor, Editor]:
    """Two started runners on `folder`: a's workers take a minute, b's none."""
    a, b = Editor(folder, fake_python(folder, 60)), Editor(folder, fake_python(folder, 0))
    a.runner.start()
    b.runner.start()
    return a, b


def test_a_runner_never_cancels_another_runners_job_it_asks_its_owner(tmp_path, spec):
    a, b = two_editors(tmp_path)
    try:
        job_id = a.runner.submit(spec)
        worker = wait_until(lambda: (j := a.store.get(job_id))["state"] == "running" and j["pid"], 10, "worker")
        b.runner.stop()  # the other editor closes
        time.sleep(0.5)
        assert a.store.get(job_id)["state"] == "running" and alive(worker, WORKER_MODULE)
        other = Editor(tmp_path, fake_python(tmp_path, 0))
        assert other.runner.cancel(job_id)  # the user cancels it from another editor: a request
        row = a.runner.wait(job_id, 10)
    finally:
        a.runner.stop()
    assert row["state"] == "cancelled" and a.told(job_id)[-1] == "cancelled" and b.told(job_id) == []
    assert row["error"] == "cancelled; the worker was stopped and nothing was written"


def test_a_runner_that_stops_leaves_its_queued_jobs_to_the_next(tmp_path, spec):
    a, b = two_editors(tmp_path)
    try:
        first, second = a.runner.submit(spec), a.runner.submit(spec)
        wait_until(lambda: a.store.get(first)["state"] == "running", 10, "first running")
        a.runner.stop()  # cancels its own running job; its queued one goes to whoever runs next
        assert a.store.get(first)["state"] == "cancelled"
        row = b.runner.wait(second, 10)
    finally:
        b.runner.stop()
    assert row["state"] == "done" and row["runner"] == b.runner.id and b.told(second)[-1] == "done"


def test_a_runner_judged_gone_loses_its_jobs_but_its_editor_still_hears_their_end(tmp_path, spec):
    """A daemon that stopped answering (a debugger, a swap storm) past its lease: another runner ends
    its running job and adopts its queued one. When it comes back, its late record of the first must
    not replace the taker's, and its editor still hears how both ended."""
    a = Editor(tmp_path, fake_python(tmp_path, 60))
    a.runner.start()
    try:
        running, queued = a.runner.submit(spec), a.runner.submit(spec)
        worker = wait_until(lambda: (j := a.store.get(running))["state"] == "running" and j["pid"], 10, "worker")
        a.store.unregister(a.runner.id)  # what another runner does to a lease that expired
        b = Editor(tmp_path, fake_python(tmp_path, 0))
        b.runner.start()
        try:
            wait_until(lambda: a.told(running)[-1:] == ["failed"] and a.told(queued)[-1:] == ["done"], 10,
                       "the ends told to a's editor")
        finally:
            b.runner.stop()
    finally:
        a.runner.stop()
    row = a.store.get(running)
    assert row["state"] == "failed" and row["runner"] == b.runner.id and "SIGKILL" not in row["error"]
    assert row["error"].startswith(f"the runner that started it is gone; worker pid {worker} was stopped")
    assert a.store.get(queued)["runner"] == b.runner.id and b.told(queued)[-1] == "done"


def mode(path: Path) -> str:
    return oct(stat.S_IMODE(path.stat().st_mode))


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_the_job_store_is_private_whatever_the_umask(tmp_path, spec, umask):
    (tmp_path / ".int8wb").mkdir(mode=0o755)  # as an older version (or the pytest plugin's cache) made it
    os.chmod(tmp_path / ".int8wb", 0o755)
    previous = os.umask(umask)
    try:
        store = JobStore(tmp_path)
        runner = Runner(store, python=fake_python(tmp_path, 0)).start()
        try:
            job_id = runner.wait(runner.submit(spec), 10)["id"]
        finally:
            runner.stop()
    finally:
        os.umask(previous)
    folder = tmp_path / ".int8wb"
    assert {p.name: mode(p) for p in [folder, folder / "logs", folder / "commits"]} == \
        {".int8wb": "0o700", "logs": "0o700", "commits": "0o700"}
    files = [folder / n for n in ("jobs.sqlite", "jobs.sqlite-wal", "jobs.sqlite-shm", ".gitignore")]
    files.append(folder / "logs" / f"{job_id}.log")
    assert {p.name: mode(p) for p in files} == {p.name: "0o600" for p in files}


def test_an_older_store_gains_the_ownership_columns(tmp_path, spec):
    import sqlite3

    (tmp_path / ".int8wb").mkdir()
    db = sqlite3.connect(tmp_path / ".int8wb" / "jobs.sqlite")
    db.execute("CREATE TABLE jobs (id TEXT PRIMARY KEY, spec TEXT NOT NULL, model TEXT, method TEXT, output_dir TEXT, "
               "state TEXT NOT NULL DEFAULT 'queued', percent REAL NOT NULL DEFAULT 0, phase TEXT, created REAL NOT "
               "NULL, started REAL, finished REAL, summary TEXT, error TEXT, pid INTEGER, owner INTEGER)")
    db.execute("INSERT INTO jobs (id, spec, state, created) VALUES ('old1', ?, 'queued', 0)", (str(spec),))
    db.commit()
    db.close()
    b = Editor(tmp_path, fake_python(tmp_path, 0))
    b.runner.start()
    try:
        row = b.runner.wait("old1", 10)  # nobody's job: the first runner adopts it
    finally:
        b.runner.stop()
    assert row["state"] == "done" and row["runner"] == b.runner.id
