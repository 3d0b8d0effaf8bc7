"""Calibration jobs: a SQLite store, a runner with a concurrency limit, and the worker subprocess.

No editor protocol here: the language-server daemon, `int8wb jobs` and a drop-folder watcher all
use the same store and runner. Each job runs in its own worker process
(`python -m int8wb.calibration.jobs worker SPEC`), which calls `workflow.calibrate` and streams JSON lines
on its stdout; a crash, an OOM kill or a cancel ends that process, never the caller. The engine
stages its outputs under temporary names, so a killed worker leaves nothing visible; the runner also
removes the dead worker's temporaries.

This module imports neither openvino nor nncf (only the worker does, in its own process).
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Callable

from .trust import trusted

STORE_DIR = ".int8wb"
STORE_NAME = "jobs.sqlite"
STATES = ("queued", "running", "done", "failed", "cancelled")
FINAL = frozenset({"done", "failed", "cancelled"})
COLUMNS = ("id", "spec", "model", "method", "output_dir", "state", "percent", "phase", "created", "started",
           "finished", "summary", "error", "pid", "owner")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    model TEXT,
    method TEXT,
    output_dir TEXT,
    state TEXT NOT NULL DEFAULT 'queued',
    percent REAL NOT NULL DEFAULT 0,
    phase TEXT,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    summary TEXT,
    error TEXT,
    pid INTEGER,
    owner INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_spec ON jobs (spec, finished);
"""


def store_path(workspace: str | os.PathLike) -> Path:
    return Path(workspace) / STORE_DIR / STORE_NAME


def alive(pid: int | None, needle: str | None = None) -> bool:
    """Whether `pid` runs (and, with `needle`, whether its command line contains it: pids are reused)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if needle is None:
        return True
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmd = fh.read()
        with open(f"/proc/{pid}/stat", "rb") as fh:
            if fh.read().rsplit(b")", 1)[-1].split()[0] == b"Z":  # a zombie is dead
                return False
    except OSError:
        return True  # no /proc: trust kill(0)
    return needle.encode() in cmd


class JobStore:
    """The rows of `<workspace>/.int8wb/jobs.sqlite` (WAL: readers never block the writer)."""

    def __init__(self, workspace: str | os.PathLike, *, create: bool = True):
        self.workspace = Path(workspace).resolve()
        self.path = store_path(self.workspace)
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            gitignore = self.path.parent / ".gitignore"
            if not gitignore.exists():
                gitignore.write_text("*\n")
        elif not self.path.exists():
            raise FileNotFoundError(f"no job store at {self.path}")
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, timeout=10, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            if create:
                self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @staticmethod
    def _row(row: sqlite3.Row | None) -> dict | None:
        if row is None:
            return None
        d = dict(row)
        if d.get("summary"):
            try:
                d["summary"] = json.loads(d["summary"])
            except ValueError:
                pass
        return d

    def add(self, spec: str, model: str | None = None, method: str | None = None,
            output_dir: str | None = None) -> str:
        job_id = uuid.uuid4().hex[:10]
        with self._lock:
            self._db.execute("INSERT INTO jobs (id, spec, model, method, output_dir, state, created) "
                             "VALUES (?, ?, ?, ?, ?, 'queued', ?)",
                             (job_id, str(spec), model, method, output_dir, time.time()))
        return job_id

    def get(self, job_id: str) -> dict | None:
        with self._lock:
            return self._row(self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())

    def list(self, limit: int = 100, states: tuple[str, ...] | None = None) -> list[dict]:
        sql, args = "SELECT * FROM jobs", []
        if states:
            sql += f" WHERE state IN ({','.join('?' * len(states))})"
            args += list(states)
        sql += " ORDER BY created DESC LIMIT ?"
        with self._lock:
            return [self._row(r) for r in self._db.execute(sql, (*args, limit)).fetchall()]

    def update(self, job_id: str, **fields) -> None:
        if not fields:
            return
        bad = set(fields) - set(COLUMNS)
        if bad:
            raise ValueError(f"unknown job fields: {sorted(bad)}")
        if isinstance(fields.get("summary"), (dict, list)):
            fields["summary"] = json.dumps(fields["summary"])
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self._lock:
            self._db.execute(f"UPDATE jobs SET {sets} WHERE id = ?", (*fields.values(), job_id))

    def claim(self, job_id: str, owner: int) -> bool:
        """Atomically moves a queued job to running for `owner` (another runner may race for it)."""
        with self._lock:
            cur = self._db.execute("UPDATE jobs SET state = 'running', owner = ?, started = ?, percent = 0 "
                                   "WHERE id = ? AND state = 'queued'", (owner, time.time(), job_id))
            return cur.rowcount == 1

    def queued(self) -> list[dict]:
        with self._lock:
            return [self._row(r) for r in self._db.execute(
                "SELECT * FROM jobs WHERE state = 'queued' ORDER BY created").fetchall()]

    def last_result(self, spec: str) -> dict | None:
        """The newest finished job of `spec` that produced a result."""
        with self._lock:
            return self._row(self._db.execute(
                "SELECT * FROM jobs WHERE spec = ? AND state = 'done' ORDER BY finished DESC LIMIT 1",
                (str(spec),)).fetchone())

    def active_for(self, spec: str) -> dict | None:
        with self._lock:
            return self._row(self._db.execute(
                "SELECT * FROM jobs WHERE spec = ? AND state IN ('queued', 'running') ORDER BY created DESC "
                "LIMIT 1", (str(spec),)).fetchone())

    def reconcile(self) -> list[str]:
        """Marks failed every running job whose worker is gone or whose runner is gone.

        Called when a runner starts (e.g. after a daemon restart); returns the ids it failed."""
        failed = []
        for job in self.list(limit=10_000, states=("running",)):
            worker_alive = alive(job["pid"], "int8wb.calibration.jobs")
            owner_alive = job["owner"] not in (None, os.getpid()) and alive(job["owner"])
            if worker_alive and owner_alive:
                continue  # another live runner (a second editor on the same folder) owns it
            if worker_alive:  # nobody reads it any more: stop it
                _kill_group(job["pid"], signal.SIGKILL)
                reason = f"the runner that started it exited; worker pid {job['pid']} was stopped"
            elif job["pid"]:
                reason = f"worker process {job['pid']} is gone (it died or the machine restarted)"
            else:
                reason = "the runner exited before the worker started"
            _remove_temporaries(job.get("output_dir"), job["pid"])
            self.update(job["id"], state="failed", error=reason, finished=time.time())
            failed.append(job["id"])
        return failed


def _kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _remove_temporaries(output_dir: str | None, pid: int | None) -> None:
    """The engine's staged files of a worker that was killed before it could discard them."""
    if not output_dir or not pid:
        return
    folder = Path(output_dir)
    if folder.is_dir():
        for tmp in folder.glob(f".*.tmp-{pid}*"):
            tmp.unlink(missing_ok=True)


def summarise(result: dict) -> dict:
    """What the editor shows of a result: drop, speedup, outputs (including the report)."""
    return {
        "drop": result.get("drop"),
        "drop_relative": result.get("drop_relative"),
        "accuracy": {"fp32": result.get("fp32", {}).get("accuracy"), "int8": result.get("int8", {}).get("accuracy")},
        "metric": result.get("metric"),
        "speedup": result.get("speedup"),
        "speedup_vs_default": (result.get("speedup") or {}).get("vs_default"),
        "throughput": result.get("throughput"),
        "model_size": result.get("model_size"),
        "int8_layer_count": result.get("int8_layer_count"),
        "budget": result.get("budget"),
        "output": result.get("output"),
        "report": (result.get("output") or {}).get("report"),
        "notes": result.get("notes", []),
    }


Listener = Callable[[dict], None]


class Slots:
    """A limit shared by several runners (one per workspace folder in the language server): the
    machine's cores do not grow with the number of folders open."""

    def __init__(self, count: int):
        self._sem = threading.BoundedSemaphore(max(1, int(count)))
        self._waiting: set[threading.Event] = set()

    def listen(self, wake: threading.Event, on: bool = True) -> None:
        """`wake` is set whenever a slot frees (a runner's loop event); on=False forgets it."""
        (self._waiting.add if on else self._waiting.discard)(wake)

    def take(self) -> bool:
        return self._sem.acquire(blocking=False)

    def give(self) -> None:
        self._sem.release()
        for wake in list(self._waiting):  # a freed slot may serve any runner's queue
            wake.set()


class Runner:
    """Runs queued jobs of one store in worker subprocesses, at most `max_concurrent` at a time.

    `on_change(job_row)` is called (from a runner thread) whenever a job's state or progress
    changes. Thread-safe; `start()` reconciles rows left running by a previous runner."""

    def __init__(self, store: JobStore, max_concurrent: int = 1, on_change: Listener | None = None,
                 trust_custom_metrics: bool = False, python: str | None = None,
                 progress_interval: float = 0.2, slots: Slots | None = None):
        self.store = store
        self.slots = slots
        self.max_concurrent = max(1, int(max_concurrent))
        self.on_change = on_change
        self.trust = trust_custom_metrics
        self.python = python or sys.executable
        self.progress_interval = progress_interval
        self._procs: dict[str, subprocess.Popen] = {}
        self._cancelled: set[str] = set()
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if slots is not None:
            slots.listen(self._wake)

    # -- public -------------------------------------------------------------------------------
    def start(self) -> "Runner":
        self.store.reconcile()
        self._thread = threading.Thread(target=self._loop, name="int8wb-runner", daemon=True)
        self._thread.start()
        self._wake.set()
        return self

    def submit(self, spec_path: str | os.PathLike) -> str:
        """Queues a calibration of the spec; raises CalibrationError when the spec does not load."""
        from .spec import load_spec  # light: pydantic + tomllib

        spec = load_spec(spec_path)
        job_id = self.store.add(str(spec.path), str(spec.model_path), spec.calibration.method, str(spec.output_dir))
        self._notify(job_id)
        self._wake.set()
        return job_id

    def cancel(self, job_id: str) -> bool:
        """Cancels a queued job, or terminates a running one at once. False if unknown or finished."""
        with self._lock:
            job = self.store.get(job_id)
            if job is None or job["state"] in FINAL:
                return False
            proc = self._procs.get(job_id)
            self._cancelled.add(job_id)
            if proc is None:
                if job["state"] == "queued":
                    self.store.update(job_id, state="cancelled", finished=time.time(), error="cancelled while queued")
                    self._notify(job_id)
                    return True
                return False  # running under another runner
        _kill_group(proc.pid, signal.SIGTERM)
        threading.Timer(2.0, lambda: proc.poll() is None and _kill_group(proc.pid, signal.SIGKILL)).start()
        return True

    def running(self) -> list[str]:
        with self._lock:
            return list(self._procs)

    def wait(self, job_id: str, timeout: float = 120.0) -> dict:
        """Blocks until the job is final (for the command line and tests)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.store.get(job_id)
            if job and job["state"] in FINAL:
                return job
            time.sleep(0.05)
        raise TimeoutError(f"job {job_id} not finished after {timeout} s")

    def stop(self, cancel_running: bool = True) -> None:
        self._stop.set()
        self._wake.set()
        if self.slots is not None:
            self.slots.listen(self._wake, on=False)
        if cancel_running:
            for job_id in self.running():
                self.cancel(job_id)
            deadline = time.monotonic() + 5
            while self.running() and time.monotonic() < deadline:
                time.sleep(0.05)

    # -- internals ----------------------------------------------------------------------------
    def _notify(self, job_id: str) -> None:
        if self.on_change is not None:
            job = self.store.get(job_id)
            if job is not None:
                try:
                    self.on_change(job)
                except Exception:  # a listener must not kill the runner  # noqa: BLE001
                    pass

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self._start_queued()
            except sqlite3.Error:
                time.sleep(0.2)

    def _start_queued(self) -> None:
        for job in self.store.queued():
            with self._lock:
                if len(self._procs) >= self.max_concurrent or self._stop.is_set():
                    return
                if self.slots is not None and not self.slots.take():
                    return  # another folder's job holds the last slot: woken when it ends
                if not self.store.claim(job["id"], os.getpid()):
                    if self.slots is not None:
                        self.slots.give()
                    continue
                self._launch(job)

    def _launch(self, job: dict) -> None:
        log_dir = self.store.path.parent / "logs"
        log_dir.mkdir(exist_ok=True)
        log = open(log_dir / f"{job['id']}.log", "wb")
        # -I: isolated from the workspace (no cwd or PYTHON* variables on sys.path), so a workspace
        # folder named like one of our modules is never imported in its place.
        cmd = [self.python, "-I", "-m", "int8wb.calibration.jobs", "worker", job["spec"]] + (["--trust"] if self.trust else [])
        try:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
                                    env=dict(os.environ, PYTHONUNBUFFERED="1"), cwd=self.store.path.parent,
                                    start_new_session=True)
        except OSError as exc:
            log.close()
            self.store.update(job["id"], state="failed", error=f"could not start the worker: {exc}",
                              finished=time.time())
            if self.slots is not None:
                self.slots.give()
            self._notify(job["id"])
            return
        log.close()
        self._procs[job["id"]] = proc
        self.store.update(job["id"], pid=proc.pid, phase="starting")
        self._notify(job["id"])
        threading.Thread(target=self._watch, args=(job, proc), name=f"int8wb-job-{job['id']}", daemon=True).start()

    def _watch(self, job: dict, proc: subprocess.Popen) -> None:
        job_id = job["id"]
        outcome: dict = {}
        last = 0.0
        assert proc.stdout is not None
        for raw in proc.stdout:
            try:
                msg = json.loads(raw)
            except ValueError:
                continue
            if "progress" in msg:
                now = time.monotonic()
                if now - last >= self.progress_interval or msg["progress"] >= 100:
                    last = now
                    self.store.update(job_id, percent=float(msg["progress"]), phase=msg.get("phase"))
                    self._notify(job_id)
            else:
                outcome = msg
        code = proc.wait()
        with self._lock:
            cancelled = job_id in self._cancelled
        fields: dict = {"finished": time.time()}
        if "result" in outcome and code == 0:
            fields.update(state="done", percent=100.0, phase="done", summary=summarise(outcome["result"]))
        elif cancelled:
            fields.update(state="cancelled", error="cancelled; the worker was stopped and nothing was written")
        elif "error" in outcome:
            fields.update(state="failed", error=outcome["error"],
                          summary={"problems": outcome.get("problems", [])} if outcome.get("problems") else None)
        elif code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            why = " (out of memory?)" if -code == signal.SIGKILL else ""
            fields.update(state="failed", error=f"the worker was killed by {name}{why}; nothing was written")
        else:
            fields.update(state="failed", error=f"the worker exited with code {code}: {_tail(self, job_id)}")
        if fields["state"] != "done":
            _remove_temporaries(job.get("output_dir"), proc.pid)
        self.store.update(job_id, **fields)
        # Only now is the job off the running list: stop() waits for that, so its final state is on record.
        with self._lock:
            self._procs.pop(job_id, None)
            self._cancelled.discard(job_id)
        if self.slots is not None:
            self.slots.give()
        self._notify(job_id)
        self._wake.set()


def _tail(runner: Runner, job_id: str, lines: int = 3) -> str:
    try:
        text = (runner.store.path.parent / "logs" / f"{job_id}.log").read_text(errors="replace")
    except OSError:
        return "no log"
    return " | ".join(text.strip().splitlines()[-lines:]) or "no output"


# -- the worker process -----------------------------------------------------------------------

def _worker(spec_path: str, trust: bool) -> int:
    # Our protocol owns the real stdout; everything else (OpenVINO, NNCF, print) goes to stderr.
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def send(obj: dict) -> None:
        proto.write(json.dumps(obj, default=str) + "\n")
        proto.flush()

    from .problems import CalibrationError, Cancelled
    from .spec import load_spec

    try:
        spec = load_spec(spec_path)
        from .workflow import calibrate
        result = calibrate(spec, progress=lambda pct, phase: send({"progress": pct, "phase": phase}),
                           trust_custom_metrics=trust)
    except CalibrationError as exc:
        send({"error": str(exc), "problems": [p.to_dict() for p in exc.problems]})
        return 1
    except Cancelled:
        send({"error": "cancelled"})
        return 130
    except Exception as exc:  # noqa: BLE001
        send({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    send({"result": result})
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m int8wb.calibration.jobs")
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("worker", help="run one calibration, streaming JSON lines on stdout")
    w.add_argument("spec")
    w.add_argument("--trust", action="store_true")
    args = parser.parse_args(argv)
    return _worker(args.spec, trusted(args.trust))


if __name__ == "__main__":
    sys.exit(main())
