"""The job store: rows of `<workspace>/.int8wb/jobs.sqlite`, and who is still alive to run them.

The language-server daemon, `int8wb jobs` and a drop-folder watcher all read and write the same
store. `reconcile` fails the rows whose worker or runner is gone (after a crash or a restart) and
removes what a killed worker left staged.
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time
import uuid
from pathlib import Path

from .protocol import WORKER_MODULE

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


def kill_group(pid: int, sig: int) -> None:
    """Signals a worker and everything it started (it leads its own session), else just the pid."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


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
            worker_alive = alive(job["pid"], WORKER_MODULE)
            owner_alive = job["owner"] not in (None, os.getpid()) and alive(job["owner"])
            if worker_alive and owner_alive:
                continue  # another live runner (a second editor on the same folder) owns it
            if worker_alive:  # nobody reads it any more: stop it
                kill_group(job["pid"], signal.SIGKILL)
                reason = f"the runner that started it exited; worker pid {job['pid']} was stopped"
            elif job["pid"]:
                reason = f"worker process {job['pid']} is gone (it died or the machine restarted)"
            else:
                reason = "the runner exited before the worker started"
            remove_temporaries(job.get("output_dir"), job["pid"])
            self.update(job["id"], state="failed", error=reason, finished=time.time())
            failed.append(job["id"])
        return failed


def remove_temporaries(output_dir: str | None, pid: int | None) -> None:
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
