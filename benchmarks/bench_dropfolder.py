"""A burst of small models dropped in an inbox at once: each is calibrated exactly once.

A watcher (`python -m int8wb.editor_client.cli watch INBOX`, i.e. `int8wb watch`) is started on an
empty inbox; then N small conv models (distinct weights, so distinct content) are renamed into it
within a fraction of a second. The policy uses a tiny npz dataset (8 samples) and a short speed
measurement so each job is quick. Measured: wall time from the burst to the last published entry,
models per minute, and peak RSS of the watcher and of the worker processes (sampled every 50 ms).
Checked: N jobs, all done, N distinct content hashes, N complete outbox entries, nothing failed.

With `--ray ADDRESS` the watcher runs its jobs on Ray (`int8wb watch --ray`; `local`: a cluster of
this machine, started before the burst): the same burst measures the Ray back end's overhead. The
Ray workers are not the watcher's children, so their RSS is not sampled then.

Run: .venv/bin/python benchmarks/bench_dropfolder.py [--models 100] [--jobs 2] [--ray local]
Prints a markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import psutil  # noqa: E402

POLICY = """\
[dataset]
kind = "npz"
path = "../data.npz"

[inference]
duration = 0.05

[drop]
outbox = "../outbox"
failed = "../failed"
jobs = {jobs}
settle = 0.5
"""


class Peaks(threading.Thread):
    """Peak RSS of the watcher, of one worker, and of all workers together."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.watcher = self.worker = self.workers_total = 0
        self.max_workers = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.watcher = max(self.watcher, self.proc.memory_info().rss)
                # workers run in their own session: find them by parent
                rss = []  # per worker: the worker and whatever it spawned
                for child in self.proc.children():
                    try:
                        tree = [child] + child.children(recursive=True)
                        rss.append(sum(p.memory_info().rss for p in tree))
                    except psutil.Error:
                        pass
                if rss:
                    self.worker = max(self.worker, max(rss))
                    self.workers_total = max(self.workers_total, sum(rss))
                    self.max_workers = max(self.max_workers, len(rss))
            except psutil.Error:
                return
            time.sleep(0.05)


def build_models(folder: Path, n: int) -> None:
    from conftest import conv_net, save
    for i in range(n):
        save(conv_net(seed=1000 + i), folder / f"m{i:03d}.xml")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="calibrations at a time")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--ray", metavar="ADDRESS", help="run the jobs on Ray (int8wb watch --ray ADDRESS)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="int8wb-bench-drop-") as tmp:
        root = Path(tmp)
        inbox, outbox, staged = root / "inbox", root / "outbox", root / "staged"
        inbox.mkdir()
        staged.mkdir()
        rng = np.random.default_rng(0)
        np.savez(root / "data.npz", image=rng.standard_normal((8, 3, 16, 16)).astype(np.float32),
                 labels=rng.integers(0, 4, 8))
        (inbox / "calibration.toml").write_text(POLICY.format(jobs=args.jobs))
        build_models(staged, args.models)

        env = dict(os.environ, PYTHONPATH=str(ROOT))
        ray = ["--ray", args.ray] if args.ray else []
        watcher = subprocess.Popen([sys.executable, "-m", "int8wb.editor_client.cli", "watch", str(inbox), "-q", *ray],
                                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        peaks = Peaks(watcher.pid)
        peaks.start()
        log = inbox / ".int8wb" / "dropfolder.log"
        deadline = time.monotonic() + 90  # (a local Ray cluster starts in seconds)
        while not (log.exists() and "watching" in log.read_text()):
            if time.monotonic() > deadline or watcher.poll() is not None:
                raise SystemExit(f"watcher did not start: {watcher.stderr.read() if watcher.poll() is not None else ''}")
            time.sleep(0.05)

        t0 = time.monotonic()
        for xml in sorted(staged.glob("*.xml")):  # the burst: .bin then .xml, by rename
            os.rename(xml.with_suffix(".bin"), inbox / xml.with_suffix(".bin").name)
            os.rename(xml, inbox / xml.name)
        burst_s = time.monotonic() - t0
        first = None
        deadline = t0 + args.timeout
        while True:
            done = [p for p in outbox.glob("*/drop.json")] if outbox.is_dir() else []
            if done and first is None:
                first = time.monotonic() - t0
            if len(done) >= args.models or time.monotonic() > deadline or watcher.poll() is not None:
                break
            time.sleep(0.1)
        wall = time.monotonic() - t0
        time.sleep(1.0)  # anything processed twice would show up now
        watcher.send_signal(signal.SIGTERM)
        try:
            watcher.wait(30)
        except subprocess.TimeoutExpired:
            watcher.kill()
        peaks.stop.set()
        peaks.join(2)

        db = sqlite3.connect(inbox / ".int8wb" / "jobs.sqlite")
        jobs = db.execute("SELECT state, started, finished FROM jobs").fetchall()
        models = db.execute("SELECT hash, state FROM drop_models").fetchall()
        db.close()
        entries = sorted(p.name for p in outbox.iterdir() if not p.name.startswith(".")) if outbox.is_dir() else []
        hashes = {json.loads((outbox / e / "drop.json").read_text())["sha256"] for e in entries}
        failed = sorted(p.name for p in (root / "failed").iterdir()) if (root / "failed").is_dir() else []
        job_s = [f - s for state, s, f in jobs if state == "done" and s and f]
        checks = {
            "jobs == models": len(jobs) == args.models,
            "all jobs done": all(state == "done" for state, _, _ in jobs),
            "distinct hashes": len({h for h, _ in models}) == args.models == len(hashes),
            "complete entries": len(entries) == args.models,
            "nothing failed": not failed,
            "no staging left": not any((root / ".outbox.int8wb-staging").glob("*")),
        }

    mb = lambda b: f"{b / 2**20:.0f} MB"  # noqa: E731
    where = f", on Ray ({args.ray})" if args.ray else ""
    print(f"## Drop folder: a burst of {args.models} models, {args.jobs} job(s) at a time{where}\n")
    print("| figure | value |\n|---|---|")
    rows = [
        ("models dropped (renamed in)", f"{args.models} in {burst_s:.2f} s"),
        ("first entry published after", f"{first:.1f} s" if first is not None else "-"),
        ("all published after", f"{wall:.1f} s"),
        ("models per minute", f"{len(entries) / wall * 60:.1f}"),
        ("job time (worker start to end), median", f"{sorted(job_s)[len(job_s) // 2]:.2f} s" if job_s else "-"),
    ] + ([] if args.ray else [
        ("peak RSS, watcher", mb(peaks.watcher)),
        ("peak RSS, one worker (with its children)", mb(peaks.worker)),
        (f"peak RSS, all workers (max {peaks.max_workers} at once)", mb(peaks.workers_total)),
    ]) + [
        ("CPU cores", str(os.cpu_count())),
    ] + [(f"check: {k}", "ok" if v else "FAIL") for k, v in checks.items()]
    for k, v in rows:
        print(f"| {k} | {v} |")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
