"""The watcher of one inbox: one per inbox (an advisory lock), watchdog events plus polling, and
the loop that calls `scan()` until stopped.

After a crash or `kill -9` of the watcher a restart re-queues the jobs it had started (the orphaned
worker is stopped) and finishes publishing whatever was complete; a job whose worker died is retried
`retries` times (default once).
"""
from __future__ import annotations

import os
import shutil
import sqlite3
import threading
import time
from typing import Callable

try:
    import fcntl
except ImportError:  # Windows: no advisory lock, one watcher per inbox is then up to the user
    fcntl = None

from ..jobs import STORE_DIR, JobStore, Runner, alive
from ..jobs.backend import Backend
from ..private import private_file
from ..problems import CalibrationError, Problem
from . import publish
from .inbox import Inbox

LOCK_NAME = "watch.lock"


class DropFolder(Inbox):
    """Watches one inbox. `scan()` is one bounded pass; `run()` loops (watchdog events + polling).

    `store`/`runner` may be shared with a caller (the daemon); otherwise they are created here, the
    runner's workers run by `backend` (default: the policy's `[drop] ray`, else child processes).
    `echo(line)` receives every log line (the command line prints them to stderr)."""

    def __init__(self, inbox: str | os.PathLike, *, policy: str | os.PathLike | None = None,
                 jobs: int | None = None, settle: float | None = None, trust_custom_metrics: bool = False,
                 python: str | None = None, echo: Callable[[str], None] | None = None,
                 store: JobStore | None = None, runner: Runner | None = None, poll: float = 0.25,
                 backend: Backend | None = None):
        super().__init__(inbox, policy=policy, jobs=jobs, settle=settle, echo=echo, store=store)
        if backend is None and runner is None and self.policy.drop.ray:
            from ..jobs.ray_backend import RayBackend  # only a policy or a caller that asks for Ray loads it

            # retries=0: a job whose Ray worker died is re-run by the inbox, `[drop] retries` times
            backend = RayBackend(self.policy.drop.ray, num_cpus=self.policy.drop.ray_cpus, retries=0)
        self.poll = poll
        self.own_runner = runner is None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._observer = None
        self.runner = runner or Runner(self.store, self.max_jobs, on_change=lambda job: self._wake.set(),
                                       trust_custom_metrics=trust_custom_metrics, python=python,
                                       backend=backend)
        self.where = f" on {self.runner.backend}" if backend is not None else ""
        self.started = False
        self._claim_file = None

    # -- lifecycle ------------------------------------------------------------------------------
    def _claim(self) -> None:
        """One watcher per inbox: two would take the same files and publish each model twice.
        An advisory lock the kernel drops with the process, so a crash never leaves it held."""
        if fcntl is None:
            return
        claim = os.fdopen(private_file(self.state_dir / LOCK_NAME, append=True, read=True), "a+", encoding="utf-8")
        try:
            fcntl.flock(claim, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            claim.seek(0)
            owner = claim.read().strip()
            claim.close()
            self.close()
            raise CalibrationError(Problem(
                f"another watcher{f' (pid {owner})' if owner else ''} is already processing this inbox",
                path=str(self.inbox), rule="inbox-busy",
                fix="stop that watcher first, or leave the inbox to it: it picks up every model dropped here"))
        claim.seek(0)
        claim.truncate()
        claim.write(str(os.getpid()))
        claim.flush()
        self._claim_file = claim

    def start(self, watch: bool = True) -> "DropFolder":
        """Claims the inbox (CalibrationError `inbox-busy` when another watcher has it), then watches."""
        if self.started:
            return self
        self._claim()
        self.started = True
        if self.own_runner:
            # Rows left running by a watcher that died: its workers are stopped by reconcile() and
            # the models re-queued (a dead watcher is not the model's fault).
            for job in self.store.list(limit=10_000, states=("running",)):
                if job["owner"] and not alive(job["owner"]):
                    self.orphaned.add(job["id"])
            self.runner.start()
        self._recover()
        if watch:
            self._watch()
        self.log("inbox", "watching", f"{self.inbox}; outbox {self.policy.outbox}; failed {self.policy.failed}; "
                 f"{self.max_jobs} job(s) at a time{self.where}")
        return self

    def _recover(self) -> None:
        """Staging and work folders of models that are not being processed are leftovers of a crash."""
        active = {r["hash"][:16] for r in self.state.active_models()}
        publish.clear_leftovers(self.policy, active)
        for child in (self.work.iterdir() if self.work.is_dir() else []):
            if child.name not in active:
                shutil.rmtree(child, ignore_errors=True)

    def _watch(self) -> None:
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:  # polling still works
            return
        wake = self._wake
        own = os.sep + STORE_DIR  # our own state (job database, logs, work folders) changes all the time

        class _Handler(FileSystemEventHandler):
            def on_any_event(self, event):  # noqa: N802 - watchdog's name
                if event.event_type in ("opened", "closed_no_write"):
                    return
                paths = [str(event.src_path), str(getattr(event, "dest_path", "") or "")]
                if all(own + os.sep in p or p.endswith(own) or not p for p in paths):
                    return
                wake.set()

        self._observer = Observer()
        self._observer.daemon = True
        self._observer.schedule(_Handler(), str(self.inbox), recursive=True)
        if self.policy_file.parent != self.inbox:
            self._observer.schedule(_Handler(), str(self.policy_file.parent), recursive=False)
        self._observer.start()

    def close(self, cancel_running: bool = True) -> None:
        """Stops watching; running jobs are cancelled and re-queued for the next start."""
        self._stop.set()
        self._wake.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(2)
            self._observer = None
        if self.own_runner and self.started:
            active = {r["job"]: r["hash"] for r in self.state.active_models() if r["job"]}
            self.runner.stop(cancel_running=cancel_running)
            for job_id, digest in active.items():
                job = self.store.get(job_id)
                if job and job["state"] == "cancelled":  # our own shutdown: run it again next time
                    self.state.set_model(digest, state="queued", job=None)
                    self.log(self.state.model(digest)["name"], "interrupted", "re-queued for the next start")
        self.started = False
        if self._claim_file is not None:
            self._claim_file.close()  # closing releases the lock
            self._claim_file = None
        self.state.close()
        if self.own_runner:
            self.store.close()
        self.close_log()

    def stop(self) -> None:
        """Asks `run()` to return (thread-safe; also what SIGTERM does under the command line)."""
        self._stop.set()
        self._wake.set()

    # -- the loop -------------------------------------------------------------------------------
    def run(self, once: bool = False, timeout: float | None = None, watch: bool | None = None) -> int:
        """Processes the inbox; with `once`, what is there, then returns. 0 when nothing failed, else 1.

        Bounded: returns at `timeout` seconds (raising TimeoutError with `once`)."""
        self.start(watch=not once if watch is None else watch)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stop.is_set():
            try:
                self.scan()
            except (OSError, sqlite3.Error) as exc:  # a full disk or a locked store: say so, try again
                self.log("inbox", "error", f"{type(exc).__name__}: {exc}; retrying")
                time.sleep(1.0)
            if once and self.idle():
                break
            if deadline is not None and time.monotonic() >= deadline:
                if once:
                    raise TimeoutError(f"inbox {self.inbox} not processed after {timeout} s")
                break
            woke = self._wake.wait(self.poll if once else max(self.poll, min(self.settle / 2, 2.0)))
            if woke and not self._stop.is_set():
                time.sleep(0.1)  # debounce a burst of events into one pass
            self._wake.clear()
        return 1 if self.failures else 0

    def idle(self) -> bool:
        """Nothing settling, queued or running (incomplete pairs are left for a later run)."""
        return bool(self.policy_problems) or self.state.idle()
