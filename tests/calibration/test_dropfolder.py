"""calibration.dropfolder: models dropped in an inbox come out calibrated, exactly once, nothing lost.

Most tests run the watcher in-process with a stand-in worker (`FAKE_WORKER`, the worker protocol in
a few lines: it copies the model to `<stem>.int8.*` and reports a result) so that what is under test,
when a pair is taken and what lands where, is fast. Two tests run the real worker: the end-to-end
calibration of the digits example and the `kill -9` of the watcher in the middle of a calibration.
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
from pathlib import Path

import numpy as np
import pytest

from int8wb.calibration.dropfolder import DropFolder, content_hash, inbox_rows, load_policy, spec_text
from int8wb.calibration.jobs import JobStore
from int8wb.calibration.problems import CalibrationError
from conftest import EXAMPLE, conv_net, save, tree, wait_until

ROOT = Path(__file__).resolve().parents[2]

FAKE_WORKER = r'''
import json, os, shutil, sys, time, tomllib
from pathlib import Path
spec = Path(sys.argv[sys.argv.index("worker") + 1])
data = tomllib.loads(spec.read_text())
model, out = Path(data["model"]), Path(data["output"]["dir"])
with open(os.environ["FAKE_CALLS"], "a") as fh:
    fh.write(f"{model} {os.getpid()}\n")
print(json.dumps({"progress": 5.0, "phase": "calibrating"}), flush=True)
time.sleep(float(os.environ.get("FAKE_SLEEP", "0")))
out.mkdir(parents=True, exist_ok=True)
stem = model.name[:-4]
outputs = {"model": out / f"{stem}.int8.xml", "weights": out / f"{stem}.int8.bin",
           "result": out / f"{stem}.int8.json", "report": out / f"{stem}.int8.report.html"}
shutil.copyfile(model, outputs["model"]); shutil.copyfile(model.with_suffix(".bin"), outputs["weights"])
result = {"drop": 0.001, "speedup": {"vs_default": 1.5}, "output": {k: str(v) for k, v in outputs.items()}}
outputs["result"].write_text(json.dumps(result)); outputs["report"].write_text("<html></html>")
print(json.dumps({"result": result}), flush=True)
'''

POLICY = """\
# every model dropped here is calibrated with this
[dataset]
kind = "npz"
path = "../data.npz"

[inference]
duration = 0.05

[drop]
outbox = "../outbox"
failed = "../failed"
settle = 0.3
incomplete_after = {incomplete_after}
{extra}
"""


class Box:
    def __init__(self, root: Path, incomplete_after: float = 30.0, extra: str = ""):
        self.root = root
        self.inbox, self.outbox, self.failed = root / "inbox", root / "outbox", root / "failed"
        self.inbox.mkdir()
        rng = np.random.default_rng(0)
        np.savez(root / "data.npz", image=rng.standard_normal((8, 3, 16, 16)).astype(np.float32),
                 labels=rng.integers(0, 4, 8))
        (self.inbox / "calibration.toml").write_text(POLICY.format(incomplete_after=incomplete_after, extra=extra))
        self.calls = root / "calls.log"
        self.calls.touch()
        worker = root / "fake_worker.py"
        worker.write_text(FAKE_WORKER)
        self.python = root / "fake_python"
        self.python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{worker}" "$@"\n')
        self.python.chmod(0o755)
        self.models = root / "models"   # models are built here, outside the inbox

    def model(self, name: str, seed: int = 0, **kw) -> Path:
        return save(conv_net(seed=seed, **kw), self.models / f"{name}.xml")

    def calls_made(self) -> list[str]:
        return [line.split()[0] for line in self.calls.read_text().splitlines()]

    def watcher(self, real: bool = False, **kw) -> DropFolder:
        return DropFolder(self.inbox, python=None if real else str(self.python), **kw)

    def entries(self, box: Path | None = None) -> list[str]:
        box = box or self.outbox
        return sorted(p.name for p in box.iterdir() if not p.name.startswith(".")) if box.is_dir() else []


@pytest.fixture
def box(tmp_path, monkeypatch) -> Box:
    b = Box(tmp_path)
    monkeypatch.setenv("FAKE_CALLS", str(b.calls))
    return b



class Running:
    """The watcher in a thread (watchdog + polling), bounded by a timeout."""

    def __init__(self, drop: DropFolder, timeout: float = 60.0):
        self.drop = drop
        self.status = None
        self.thread = threading.Thread(target=self._run, args=(timeout,), daemon=True)

    def _run(self, timeout):
        self.status = self.drop.run(timeout=timeout)

    def __enter__(self):
        self.thread.start()
        wait_until(lambda: self.drop._started, 10, "watcher started")
        return self.drop

    def __exit__(self, *exc):
        self.drop.stop()
        self.thread.join(15)
        self.drop.close()


def _complete_entry(entry: Path, stem: str) -> bool:
    names = {p.name for p in entry.iterdir()}
    return {f"{stem}.int8.xml", f"{stem}.int8.bin", f"{stem}.int8.json", f"{stem}.int8.report.html",
            "drop.json"} <= names


def _no_staging_left(b: Box) -> None:
    leftovers = [p for p in b.root.glob(".*staging/*")]
    assert not leftovers, leftovers
    assert not list((b.inbox / ".int8wb" / "work").glob("*"))


# -- the policy ---------------------------------------------------------------------------------

def test_policy_errors_name_file_line_and_key(box):
    policy = box.inbox / "calibration.toml"
    policy.write_text('model = "x.xml"\n[dataset]\nkind = "npz"\npath = "../nope.npz"\n[inference]\n'
                      'duration = -1\n[drop]\noutbx = "../o"\nsettle = "soon"\n')
    with pytest.raises(CalibrationError) as info:
        load_policy(policy)
    found = {p.key: p for p in info.value.problems}
    assert found["model"].line == 1 and found["model"].path == str(policy)
    assert found["drop.outbx"].line == 8 and "did you mean 'outbox'" in found["drop.outbx"].message
    assert found["drop.settle"].line == 9
    assert found["inference.duration"].line == 6
    with pytest.raises(CalibrationError) as info:   # the spec's own checks, then the dataset path
        load_policy(policy, text='[dataset]\nkind = "npz"\npath = "../nope.npz"\n')
    (p,) = info.value.problems
    assert (p.key, p.line, p.rule) == ("dataset.path", 3, "dataset-missing")
    assert str(p).startswith(f"{policy}:3: dataset.path: dataset not found")
    with pytest.raises(CalibrationError) as info:
        load_policy(policy, text='[dataset]\nkind = "generated"\n[drop]\noutbox = "."\n')
    assert info.value.problems[0].key == "drop.outbox" and info.value.problems[0].line == 4


def test_generated_spec_makes_every_path_absolute(box):
    policy = load_policy(box.inbox / "calibration.toml")
    text = spec_text(policy, Path("/snap/m.xml"), Path("/stage/x"))
    from int8wb.calibration.spec import load_spec
    spec = load_spec(box.root / "elsewhere" / "s.toml", text)
    assert spec.model_path == Path("/snap/m.xml") and spec.output_dir == Path("/stage/x")
    assert spec.resolve(spec.dataset.path) == box.root / "data.npz"
    assert spec.inference.duration == 0.05


# -- when a pair is taken ----------------------------------------------------------------------

def test_slow_copy_is_taken_once_complete(box):
    src = box.model("slow")
    with Running(box.watcher()) as drop:
        dst = box.inbox / "slow.xml"
        # the .bin first, then the .xml, each written in pieces over about a second
        for path in (src.with_suffix(".bin"), src):
            data = path.read_bytes()
            with open(box.inbox / path.name, "wb") as fh:
                for i in range(5):
                    fh.write(data[i * len(data) // 5:(i + 1) * len(data) // 5])
                    fh.flush()
                    time.sleep(0.12)
        wait_until(lambda: (box.outbox / "slow" / "drop.json").is_file(), 20, "the calibrated model")
        assert drop.failures == []
    assert box.calls_made() == [str(box.inbox / ".int8wb" / "work" /
                                    json.loads((box.outbox / "slow" / "drop.json").read_text())["sha256"][:16]
                                    / "slow.xml")]
    assert _complete_entry(box.outbox / "slow", "slow")
    assert (box.outbox / "slow" / "slow.int8.bin").read_bytes() == src.with_suffix(".bin").read_bytes()
    assert dst.read_bytes() == src.read_bytes()  # the original is untouched
    _no_staging_left(box)


@pytest.mark.parametrize("first", [".xml", ".bin"])
def test_one_file_of_the_pair_long_before_the_other(box, first):
    src = box.model("pair")
    second = ".bin" if first == ".xml" else ".xml"
    with Running(box.watcher()) as drop:
        shutil.copy(src.with_suffix(first), box.inbox / f"pair{first}")
        time.sleep(1.0)  # well past settle: the lone file must not be taken
        assert box.calls_made() == [] and box.entries() == [] and box.entries(box.failed) == []
        shutil.copy(src.with_suffix(second), box.inbox / f"pair{second}")
        wait_until(lambda: (box.outbox / "pair" / "drop.json").is_file(), 20, "the calibrated model")
    assert len(box.calls_made()) == 1 and drop.failures == []
    log = (box.inbox / ".int8wb" / "dropfolder.log").read_text()
    if first == ".xml":
        assert "pair: waiting (incomplete" in log


def test_atomic_rename_and_whole_folder_moved_in(box):
    a, b = box.model("a", seed=1), box.model("b", seed=2)
    folder = box.root / "batch"
    folder.mkdir()
    for m in (a, b):
        shutil.copy(m, folder / m.name)
        shutil.copy(m.with_suffix(".bin"), folder / m.with_suffix(".bin").name)
    single = box.model("single", seed=3)
    with Running(box.watcher()) as drop:
        os.rename(folder, box.inbox / "batch")              # a whole folder
        os.rename(single.with_suffix(".bin"), box.inbox / "single.bin")  # a pair, one rename each
        os.rename(single, box.inbox / "single.xml")
        wait_until(lambda: len(box.entries()) == 3, 20, "three entries")
    assert box.entries() == ["batch__a", "batch__b", "single"]
    assert len(box.calls_made()) == 3 and drop.failures == []
    assert all(_complete_entry(box.outbox / n, n.split("__")[-1]) for n in box.entries())


# -- exactly once, by content ------------------------------------------------------------------

def test_duplicate_content_under_two_names_and_changed_content_under_one(box):
    m = box.model("m", seed=4)
    for name in ("first", "second"):
        shutil.copy(m, box.inbox / f"{name}.xml")
        shutil.copy(m.with_suffix(".bin"), box.inbox / f"{name}.bin")
    drop = box.watcher()
    assert drop.run(once=True, timeout=30) == 0
    drop.close()
    assert len(box.calls_made()) == 1
    assert box.entries() == ["first", "second"]
    dup = box.outbox / "second"
    assert "same content" in (dup / "duplicate.txt").read_text()
    assert json.loads((dup / "drop.json").read_text())["duplicate_of"] == "first"
    assert (dup / "first.int8.xml").read_bytes() == (box.outbox / "first" / "first.int8.xml").read_bytes()
    first_hash = json.loads((box.outbox / "first" / "drop.json").read_text())["sha256"]
    assert first_hash == content_hash(box.inbox / "first.xml")

    # the same name again, unchanged (even touched): nothing to do; changed: processed again
    os.utime(box.inbox / "first.xml")
    changed = box.model("changed", seed=5)
    shutil.copy(changed.with_suffix(".bin"), box.inbox / "second.bin")
    shutil.copy(changed, box.inbox / "second.xml")
    drop = box.watcher()
    assert drop.run(once=True, timeout=30) == 0
    drop.close()
    assert len(box.calls_made()) == 2
    manifest = json.loads((box.outbox / "second" / "drop.json").read_text())
    assert manifest["state"] == "done" and manifest["sha256"] == content_hash(box.inbox / "second.xml")
    assert not (box.outbox / "second" / "duplicate.txt").exists()
    assert json.loads((box.outbox / "first" / "drop.json").read_text())["sha256"] == first_hash

    rows = inbox_rows(box.inbox)
    assert {r["xml"]: r["state"] for r in rows} == {"first.xml": "done", "second.xml": "done"}
    _no_staging_left(box)


def test_corrupt_and_ineligible_models_land_in_failed_with_a_reason(tmp_path, monkeypatch):
    box = Box(tmp_path, incomplete_after=0.2)
    monkeypatch.setenv("FAKE_CALLS", str(box.calls))
    good = box.model("good", seed=6)
    fp16 = box.model("half", seed=7, fp16=True)
    for m in (good, fp16):
        shutil.copy(m, box.inbox / m.name)
        shutil.copy(m.with_suffix(".bin"), box.inbox / m.with_suffix(".bin").name)
    text = good.read_text()
    (box.inbox / "broken.xml").write_text(text[: len(text) // 2])   # an IR cut in half
    shutil.copy(good.with_suffix(".bin"), box.inbox / "broken.bin")
    (box.inbox / "notes.xml").write_text("<?xml version='1.0'?><notes>" + "x" * 2000 + "</notes>")
    before = tree(box.inbox)
    drop = box.watcher()
    assert drop.run(once=True, timeout=30) == 1   # something failed
    drop.close()
    assert box.entries() == ["good"]
    assert box.entries(box.failed) == ["broken", "half"]
    reason = (box.failed / "broken" / "reason.txt").read_text()
    line = next(l for l in reason.splitlines() if l.startswith(f"{box.inbox / 'broken.xml'}:"))
    assert "malformed XML" in line and "(fix: " in line
    half = (box.failed / "half" / "reason.txt").read_text()
    line = next(l for l in half.splitlines() if l.startswith(str(box.inbox / "half.xml")))
    assert "FP16" in line and "(fix: " in line
    assert len(box.calls_made()) == 1   # only the good one reached a worker
    after = tree(box.inbox)
    assert {k: v for k, v in after.items() if not k.startswith(".int8wb")} == \
        {k: v for k, v in before.items() if not k.startswith(".int8wb")}   # originals untouched


def test_move_policy_moves_originals_into_the_entry(tmp_path, monkeypatch):
    box = Box(tmp_path, extra="move = true")
    monkeypatch.setenv("FAKE_CALLS", str(box.calls))
    m = box.model("mv", seed=8)
    shutil.copy(m, box.inbox / "mv.xml")
    shutil.copy(m.with_suffix(".bin"), box.inbox / "mv.bin")
    drop = box.watcher()
    assert drop.run(once=True, timeout=30) == 0
    drop.close()
    assert not (box.inbox / "mv.xml").exists() and not (box.inbox / "mv.bin").exists()
    assert (box.outbox / "mv" / "source" / "mv.bin").read_bytes() == m.with_suffix(".bin").read_bytes()


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


# -- the real worker -----------------------------------------------------------------------------

def test_digits_example_end_to_end_and_int8wb_jobs(tmp_path):
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    inbox.mkdir()
    shutil.copytree(EXAMPLE / "data", tmp_path / "data")
    (inbox / "calibration.toml").write_text(
        '[dataset]\nkind = "imagenet"\npath = "../data/calibration"\nsubset = 100\n'
        '[validation]\nkind = "imagenet"\npath = "../data/test"\nsubset = 200\n'
        '[preprocessing]\nresize = [32, 32]\ncolor = "GRAY"\nscale = [255.0]\n'
        '[inference]\nduration = 0.2\n[drop]\nsettle = 0.2\n')
    shutil.copy(EXAMPLE / "model.xml", inbox / "digits.xml")
    shutil.copy(EXAMPLE / "model.bin", inbox / "digits.bin")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, "-m", "int8wb.editor_client.cli", "watch", str(inbox), "--once",
                          "--timeout", "90"], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "digits: done" in run.stderr and "1 calibrated, 0 refused or failed" in run.stderr
    entry = outbox / "digits"
    assert _complete_entry(entry, "digits")
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
    watcher = subprocess.Popen([sys.executable, "-m", "int8wb.calibration.dropfolder", str(box.inbox), "-q"], env=env,
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
    assert box.entries() == ["victim"] and _complete_entry(box.outbox / "victim", "victim")
    with pytest.raises(ProcessLookupError):
        os.kill(worker_pid, 0)   # the orphaned worker was stopped, not left to finish twice
    rows = sorted(store.list(), key=lambda r: r["created"])
    assert [r["state"] for r in rows] == ["failed", "done"]
    assert "runner" in rows[0]["error"]
    log = (box.inbox / ".int8wb" / "dropfolder.log").read_text()
    assert "victim: re-queued" in log and log.count("victim: done") == 1
    store.close()
    _no_staging_left(box)


def test_the_daemon_serves_a_workspace_folder_that_holds_a_policy(box):
    from int8wb.calibration.jobs import Runner
    from int8wb.daemon.server import Int8Server

    m = box.model("served", seed=11)
    shutil.copy(m, box.inbox / "served.xml")
    shutil.copy(m.with_suffix(".bin"), box.inbox / "served.bin")
    store = JobStore(box.inbox)
    runner = Runner(store, python=str(box.python)).start()
    entry = {"store": store, "runner": runner, "watch": None, "drop": None}
    server = Int8Server()
    server.start_inbox(box.inbox, entry)
    try:
        assert entry["drop"] is not None
        wait_until(lambda: (box.outbox / "served" / "drop.json").is_file(), 20, "the daemon's inbox result")
    finally:
        entry["drop"].stop()
        runner.stop()
    assert len(box.calls_made()) == 1
    server.start_inbox(box.root, entry := {"store": store, "runner": runner, "drop": None})   # no policy: no inbox
    assert entry["drop"] is None


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


def test_a_whole_but_malformed_xml_is_refused_without_waiting(box):
    good = box.model("good", seed=8)
    text = good.read_text()
    cut = text.index("<layers>") + len("<layers>")
    (box.inbox / "bad.xml").write_text(text[:cut] + "<layer id='0' <<>" + text[cut:])  # ends with </net>
    shutil.copy(good.with_suffix(".bin"), box.inbox / "bad.bin")
    drop = box.watcher()
    started = time.monotonic()
    assert drop.run(once=True, timeout=20) == 1   # incomplete_after is 30 s: it did not wait for that
    drop.close()
    assert time.monotonic() - started < 20
    reason = (box.failed / "bad" / "reason.txt").read_text()
    assert "malformed XML" in reason and "(fix: " in reason


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
