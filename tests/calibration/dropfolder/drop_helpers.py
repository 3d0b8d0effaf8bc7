"""Shared by the drop folder's tests: an inbox with its policy, a stand-in worker, a running watcher.

Most tests run the watcher in-process with a stand-in worker (`FAKE_WORKER`, the worker protocol in
a few lines: it copies the model to `<stem>.int8.*` and reports a result) so that what is under test,
when a pair is taken and what lands where, is fast. A few tests run the real worker: the end-to-end
calibration of the digits example and the `kill -9` of the watcher in the middle of a calibration.
"""
from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np

from int8wb.calibration.dropfolder import DropFolder
from conftest import conv_net, save, wait_until

ROOT = Path(__file__).resolve().parents[3]

FAKE_WORKER = r'''
import json, os, shutil, sys, time
from pathlib import Path
from int8wb.calibration.jobs.protocol import WORKER_MODULE, Progress, Result, encode, parse_request
spec = Path(parse_request(sys.argv[sys.argv.index(WORKER_MODULE) + 1:]).spec)
data = json.loads(spec.read_text())
model, out = Path(data["model"]), Path(data["output"]["dir"])
with open(os.environ["FAKE_CALLS"], "a") as fh:
    fh.write(f"{model} {os.getpid()}\n")
print(encode(Progress(5.0, "calibrating")), end="", flush=True)
time.sleep(float(os.environ.get("FAKE_SLEEP", "0")))
out.mkdir(parents=True, exist_ok=True)
stem = model.name[:-4]
outputs = {"model": out / f"{stem}.int8.xml", "weights": out / f"{stem}.int8.bin",
           "result": out / f"{stem}.int8.json", "report": out / f"{stem}.int8.report.html"}
shutil.copyfile(model, outputs["model"]); shutil.copyfile(model.with_suffix(".bin"), outputs["weights"])
result = {"drop": 0.001, "speedup": {"vs_default": 1.5}, "output": {k: str(v) for k, v in outputs.items()}}
outputs["result"].write_text(json.dumps(result)); outputs["report"].write_text("<html></html>")
print(encode(Result(result)), end="", flush=True)
'''

POLICY = """\
# every model dropped here is calibrated with this
[dataset]
kind = "npz"
path = "../data.npz"

[calibration]
only_if_faster = false

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


def new_box(tmp_path: Path, monkeypatch, **kw) -> Box:
    """A Box whose stand-in worker records its calls (the `box` fixture of each test module)."""
    b = Box(tmp_path, **kw)
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
        wait_until(lambda: self.drop.started, 10, "watcher started")
        return self.drop

    def __exit__(self, *exc):
        self.drop.stop()
        self.thread.join(15)
        self.drop.close()


def complete_entry(entry: Path, stem: str) -> bool:
    names = {p.name for p in entry.iterdir()}
    return {f"{stem}.int8.xml", f"{stem}.int8.bin", f"{stem}.int8.json", f"{stem}.int8.report.html",
            "drop.json"} <= names


def no_staging_left(b: Box) -> None:
    leftovers = [p for p in b.root.glob(".*staging/*")]
    assert not leftovers, leftovers
    assert not list((b.inbox / ".int8wb" / "work").glob("*"))
