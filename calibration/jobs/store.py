"""The job store: rows of `<workspace>/.int8wb/jobs.sqlite`, who owns each job, and who is still alive.

The language-server daemon, `int8wb jobs` and a drop-folder watcher all read and write the same
store, and several runners (two editors, a daemon and `int8wb watch`) may serve one folder. A job
belongs to the runner that submitted it: only that runner starts it, cancels it and reports on it.
Each runner holds a lease (`runners`, see lease.py). A job of a runner that is gone is taken over:
a queued one is adopted and run, a running one is ended by `reconcile`.

`.int8wb/` holds logs and results of the user's models: it is private (see private.py).
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import threading
import time
import uuid
from pathlib import Path

from ..commit import resolve
from ..private import STATE_DIR, private_file, private_folder
from .ending import conclude, forget_journal, journal_path, journals
from .lease import HOST, alive, gone, kill_group, wait_gone
from .protocol import WORKER_MODULE

STORE_DIR = STATE_DIR
STORE_NAME = "jobs.sqlite"
STATES = ("queued", "running", "done", "failed", "cancelled")
FINAL = frozenset({"done", "failed", "cancelled"})
COLUMNS = ("id", "spec", "model", "method", "output_dir", "state", "percent", "phase", "created", "started",
           "finished", "summary", "error", "pid", "owner", "runner", "cancel_requested")

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
CREATE TABLE IF NOT EXISTS runners (
    id TEXT PRIMARY KEY,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    label TEXT,
    started REAL NOT NULL,
    expires REAL NOT NULL
);
"""
# Columns added since the first stores (an older store gains them when a runner opens it):
# `runner` owns the job (NULL: nobody yet, any runner may adopt it); `owner` stays the pid of the
# process that ran it (the drop folder reads it); `cancel_requested`: a cancel its owner carries out.
_ADDED = {"runner": "TEXT", "cancel_requested": "REAL"}


def store_path(workspace: str | os.PathLike) -> Path:
    return Path(workspace) / STORE_DIR / STORE_NAME


class JobStore:
    """The rows of `<workspace>/.int8wb/jobs.sqlite` (WAL: readers never block the writer)."""

    def __init__(self, workspace: str | os.PathLike, *, create: bool = True):
        self.workspace = Path(workspace).resolve()
        self.path = store_path(self.workspace)
        if create:
            private_folder(self.path.parent)
            gitignore = self.path.parent / ".gitignore"
            if not gitignore.exists():
                with os.fdopen(private_file(gitignore), "w") as fh:
                    fh.write("*\n")
            os.close(private_file(self.path))  # sqlite gives its -wal and -shm files the same mode
        elif not self.path.exists():
            raise FileNotFoundError(f"no job store at {self.path}")
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, timeout=10, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            if not create:
                # The file exists but its maker may not have written the tables yet (a reader opening the
                # store in that instant); the schema is idempotent, so make sure it is there.
                with contextlib.suppress(sqlite3.OperationalError):  # a store this process may not write
                    self._db.executescript(_SCHEMA)
            if create:
                self._db.executescript(_SCHEMA)
                have = {r[1] for r in self._db.execute("PRAGMA table_info(jobs)")}
                for column, kind in _ADDED.items():
                    if column not in have:
                        with contextlib.suppress(sqlite3.OperationalError):  # another process added it
                            self._db.execute(f"ALTER TABLE jobs ADD COLUMN {column} {kind}")
                for extra in ("-wal", "-shm"):
                    with contextlib.suppress(OSError):
                        os.chmod(f"{self.path}{extra}", 0o600)

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

    # The statement runs and its rows are read under the lock. A statement still open on this
    # connection would hold a read snapshot, and another thread's write would then fail at once
    # ("database is locked") rather than wait.
    def _write(self, sql: str, args: tuple = ()) -> int:
        with self._lock:
            return self._db.execute(sql, args).rowcount

    def _read(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _one(self, sql: str, args: tuple = ()) -> dict | None:
        rows = self._read(sql, args)
        return self._row(rows[0]) if rows else None

    # -- rows -----------------------------------------------------------------------------------
    def add(self, spec: str, model: str | None = None, method: str | None = None,
            output_dir: str | None = None, runner: str | None = None) -> str:
        """Queues a job for `runner` (None: for whichever runner comes first)."""
        job_id = uuid.uuid4().hex[:10]
        self._write("INSERT INTO jobs (id, spec, model, method, output_dir, state, created, runner) "
                   "VALUES (?, ?, ?, ?, ?, 'queued', ?, ?)",
                   (job_id, str(spec), model, method, output_dir, time.time(), runner))
        return job_id

    def get(self, job_id: str) -> dict | None:
        return self._one("SELECT * FROM jobs WHERE id = ?", (job_id,))

    def list(self, limit: int = 100, states: tuple[str, ...] | None = None) -> list[dict]:
        sql, args = "SELECT * FROM jobs", []
        if states:
            sql += f" WHERE state IN ({','.join('?' * len(states))})"
            args += list(states)
        sql += " ORDER BY created DESC LIMIT ?"
        return [self._row(r) for r in self._read(sql, (*args, limit))]

    def update(self, job_id: str, *, by: str | None = None, when: str | None = None, **fields) -> bool:
        """Sets `fields`; with `by`, only while that runner owns the job, with `when`, only while it
        is in that state (so a runner that lost a job never writes over its new owner's record)."""
        if not fields:
            return False
        bad = set(fields) - set(COLUMNS)
        if bad:
            raise ValueError(f"unknown job fields: {sorted(bad)}")
        if isinstance(fields.get("summary"), (dict, list)):
            fields["summary"] = json.dumps(fields["summary"])
        sql = f"UPDATE jobs SET {', '.join(f'{k} = ?' for k in fields)} WHERE id = ?"
        args = [*fields.values(), job_id]
        for column, value in (("runner", by), ("state", when)):
            if value is not None:
                sql += f" AND {column} = ?"
                args.append(value)
        return self._write(sql, tuple(args)) == 1

    def last_result(self, spec: str) -> dict | None:
        """The newest finished job of `spec` that produced a result."""
        return self._one("SELECT * FROM jobs WHERE spec = ? AND state = 'done' ORDER BY finished DESC LIMIT 1",
                         (str(spec),))

    def active_for(self, spec: str) -> dict | None:
        return self._one("SELECT * FROM jobs WHERE spec = ? AND state IN ('queued', 'running') "
                         "ORDER BY created DESC LIMIT 1", (str(spec),))

    def journal(self, job_id: str) -> Path:
        """Where the job's worker journals its commit (see ending.py)."""
        return journal_path(self.path.parent, job_id)

    # -- ownership ------------------------------------------------------------------------------
    def queued(self, runner: str | None = None) -> list[dict]:
        """The queued jobs of `runner` (None: all), oldest first."""
        sql, args = "SELECT * FROM jobs WHERE state = 'queued'", ()
        if runner is not None:
            sql, args = sql + " AND runner = ?", (runner,)
        return [self._row(r) for r in self._read(sql + " ORDER BY created", args)]

    def claim(self, job_id: str, runner: str) -> bool:
        """Atomically moves `runner`'s queued job to running, in this process (`owner`), while the
        runner holds its lease (one judged gone starts nothing until it has renewed it)."""
        return self._write("UPDATE jobs SET state = 'running', owner = ?, started = ?, percent = 0 "
                           "WHERE id = ? AND state = 'queued' AND runner = ? AND EXISTS "
                           "(SELECT 1 FROM runners WHERE id = ?)",
                           (os.getpid(), time.time(), job_id, runner, runner)) == 1

    def adopt(self, runner: str) -> int:
        """Gives `runner` the queued jobs that nobody owns or whose runner is gone (call `prune`
        first); one statement, so two runners never both adopt a job."""
        orphans = "state = 'queued' AND (runner IS NULL OR runner NOT IN (SELECT id FROM runners))"
        if not self._read(f"SELECT 1 FROM jobs WHERE {orphans} LIMIT 1"):
            return 0  # (every runner asks every second: a read, not a write)
        return self._write(f"UPDATE jobs SET runner = ? WHERE {orphans}", (runner,))

    def request_cancel(self, job_id: str) -> bool:
        """Asks the job's owner to cancel it (it alone runs it and reports on it)."""
        return self._write("UPDATE jobs SET cancel_requested = ? WHERE id = ? AND state IN ('queued', 'running')",
                           (time.time(), job_id)) == 1

    def cancel_requests(self, runner: str) -> list[str]:
        return [r[0] for r in self._read("SELECT id FROM jobs WHERE runner = ? AND cancel_requested IS NOT NULL "
                                         "AND state IN ('queued', 'running')", (runner,))]

    # -- runners and their leases ---------------------------------------------------------------
    def register(self, runner: str, lease: float, label: str | None = None) -> None:
        now = time.time()
        self._write("INSERT OR REPLACE INTO runners (id, pid, host, label, started, expires) VALUES (?, ?, ?, ?, ?, ?)",
                   (runner, os.getpid(), HOST, label, now, now + lease))

    def renew(self, runner: str, lease: float, label: str | None = None) -> bool:
        """Extends the lease; False (and registered again) when another runner had judged it gone,
        in which case its jobs are no longer its own."""
        if self._write("UPDATE runners SET expires = ? WHERE id = ?", (time.time() + lease, runner)):
            return True
        self.register(runner, lease, label)
        return False

    def unregister(self, runner: str) -> None:
        """A runner that stops: its queued jobs may be adopted at once."""
        self._write("DELETE FROM runners WHERE id = ?", (runner,))

    def runners(self) -> list[dict]:
        return [dict(r) for r in self._read("SELECT * FROM runners ORDER BY started")]

    def prune(self, judge_leases: bool = True) -> list[str]:
        """Forgets the runners that are gone (lease.gone); returns their ids."""
        now, dead = time.time(), []
        for row in self.runners():
            if gone(row, now, judge_leases) and self._write(
                    "DELETE FROM runners WHERE id = ? AND expires = ?", (row["id"], row["expires"])):
                dead.append(row["id"])  # (a lease renewed meanwhile keeps its runner)
        return dead

    def reconcile(self, by: str | None = None, judge_leases: bool = True, sweep: bool = True) -> list[str]:
        """Ends the running jobs whose runner is gone (a crash, a restart, an expired lease): the
        worker is stopped, a commit it left half done is finished, and the row says what was written.
        A live runner's jobs are never touched. `sweep`: also the journals of recorded jobs (a runner
        starting). Returns the ids it ended."""
        self.prune(judge_leases)
        running = self.list(limit=10_000, states=("running",))
        # Read after the jobs: a runner registers before it claims, so every runner of those rows that
        # still lives is in here (read the other way round, a runner that just started could be missed).
        live = {r["id"] for r in self.runners()}
        taker = by or f"reconcile-{uuid.uuid4().hex[:8]}"
        ended = []
        for job in running:
            if job["runner"] in live or (by is not None and job["runner"] == by) or self._legacy_alive(job):
                continue  # (a runner whose lease was taken for expired keeps watching its own: it renews)
            took = self._write("UPDATE jobs SET runner = ? WHERE id = ? AND state = 'running' AND runner IS ?",
                               (taker, job["id"], job["runner"]))
            if not took:
                continue  # another runner got there first
            self._end_orphan(job, taker)
            ended.append(job["id"])
        for job_id in journals(self.path.parent) if sweep else []:  # recorded, then its runner died or could not finish
            row = self.get(job_id)
            if row is None or row["state"] in FINAL:
                with contextlib.suppress(OSError, TimeoutError):
                    resolve(self.journal(job_id))  # safe: never over a newer set
                    forget_journal(self.path.parent, job_id)
        return ended

    @staticmethod
    def _legacy_alive(job: dict) -> bool:
        """A row of a runner from before leases: alive while both its worker and its process are."""
        return (job["runner"] is None and alive(job["pid"], WORKER_MODULE)
                and job["owner"] not in (None, os.getpid()) and alive(job["owner"]))

    def _end_orphan(self, job: dict, taker: str) -> None:
        pid = job["pid"]
        if alive(pid, WORKER_MODULE):  # nobody reads it any more: stop it before judging its outputs
            kill_group(pid, signal.SIGKILL)
            wait_gone(pid, WORKER_MODULE)
            why = f"the runner that started it is gone; worker pid {pid} was stopped"
        elif pid:
            why = f"worker process {pid} is gone (it died or the machine restarted)"
        else:
            why = "the runner exited before the worker started"
        fields, settled = conclude(job, pid, None, False, job.get("cancel_requested") is not None, why,
                                   self.journal(job["id"]))
        self.update(job["id"], by=taker, **fields)
        if settled:
            forget_journal(self.path.parent, job["id"])
