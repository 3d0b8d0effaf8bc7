"""The runner: its own queued jobs of one store run in worker processes, at most `max_concurrent` at a time.

Each job runs in its own worker process (`protocol.command`), which answers in protocol messages on
its stdout; a crash, an OOM kill or a cancel ends that process, never the caller. Where that
process runs is the back end's choice (backend.py: a child process here, or a Ray task). A job belongs to
the runner that submitted it. Several runners on one store (two editors, a daemon and `int8wb
watch`) each run, cancel and report their own jobs. A runner renews its lease while it lives and
adopts only the jobs of a runner that is gone (store.py, lease.py). The engine commits a job's
outputs as one unit and journals the commit, so a worker killed at any point leaves either nothing
or a whole new set, and the row says which (ending.py). `compare_in_worker` runs a two-model
comparison the same way, for a caller (the language server) that must never load OpenVINO itself.

This module imports neither openvino nor nncf (only the worker does, in its own process).
"""
from __future__ import annotations

import os
import signal
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Callable

from ..problems import CalibrationError, Problem
from . import protocol
from .backend import Backend, Ended, Handle, LocalBackend, spawn
from .ending import NOTHING, conclude, exit_reason, forget_journal, tail
from .lease import LEASE_SECONDS, Lease, kill_group
from .protocol import Compare, Failure, Progress, Result
from ..private import private_file, private_folder
from .store import FINAL, JobStore

Listener = Callable[[dict], None]


class ProgressGate:
    """Which progress messages are worth recording: every change of phase (a phase of 0.2 s must
    still show) and the end; repeated updates within one phase at most every `interval` seconds."""

    _NONE = object()

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic):
        self.interval = interval
        self.clock = clock
        self._phase: object = self._NONE
        self._last = 0.0

    def admit(self, msg: Progress) -> bool:
        now = self.clock()
        if msg.phase == self._phase and msg.percent < 100 and now - self._last < self.interval:
            return False
        self._phase, self._last = msg.phase, now
        return True


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
    """Runs its own queued jobs of one store in worker subprocesses, at most `max_concurrent` at a time.

    `on_change(job_row)` is called (from a runner thread) whenever one of its jobs changes state
    or progress. Thread-safe. `start()` takes a lease (`lease` seconds, renewed while it runs) and
    ends the rows left running by runners that are gone. `label` says who runs it, in the store.
    `backend`: where workers run (default: child processes of this one, of `python`)."""

    def __init__(self, store: JobStore, max_concurrent: int = 1, on_change: Listener | None = None,
                 trust_custom_metrics: bool = False, python: str | None = None,
                 progress_interval: float = 0.2, slots: Slots | None = None,
                 lease: float = LEASE_SECONDS, label: str | None = None, backend: Backend | None = None):
        self.store = store
        self.id = uuid.uuid4().hex[:12]
        self.lease = Lease(lease)
        self.label = label or " ".join(getattr(sys, "orig_argv", sys.argv))[:200]
        self.slots = slots
        self.max_concurrent = max(1, int(max_concurrent))
        self.on_change = on_change
        self.trust = trust_custom_metrics
        self.python = python or sys.executable
        self.backend = backend or LocalBackend(self.python)
        self.progress_interval = progress_interval
        self._procs: dict[str, Handle] = {}
        self._cancelled: set[str] = set()
        # Jobs it submitted, until final, with what its listeners last heard of those another runner took
        # over (this one was judged gone, e.g. hung past its lease): the editor that asked still hears the end.
        self._mine: dict[str, tuple | None] = {}
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if slots is not None:
            slots.listen(self._wake)

    # -- public -------------------------------------------------------------------------------
    def start(self) -> "Runner":
        self.store.register(self.id, self.lease.seconds, self.label)
        self.store.reconcile(by=self.id)
        self._thread = threading.Thread(target=self._loop, name="int8wb-runner", daemon=True)
        self._thread.start()
        self._wake.set()
        return self

    def submit(self, spec_path: str | os.PathLike) -> str:
        """Queues a calibration of the spec, as this runner's job; raises CalibrationError when the
        spec does not load."""
        from ..spec import load_spec  # light: pydantic + tomllib

        spec = load_spec(spec_path)
        job_id = self.store.add(str(spec.path), str(spec.model_path), spec.calibration.method, str(spec.output_dir),
                                runner=self.id)
        with self._lock:
            self._mine[job_id] = None
        self._notify(job_id)
        self._wake.set()
        return job_id

    def cancel(self, job_id: str) -> bool:
        """Cancels a queued job, or terminates a running one at once. Another runner's job is
        cancelled by that runner, on request (within a second), as it alone reports on it.
        False if unknown or finished."""
        with self._lock:
            job = self.store.get(job_id)
            if job is None or job["state"] in FINAL:
                return False
            if job["runner"] != self.id:
                return self.store.request_cancel(job_id)
            handle = self._procs.get(job_id)
            if handle is None:
                done = self.store.update(job_id, by=self.id, when="queued", state="cancelled", finished=time.time(),
                                         error="cancelled while queued")
                self._notify(job_id)
                return done
            if job_id in self._cancelled:
                return True
            self._cancelled.add(job_id)
        handle.cancel()
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
        """Starts nothing more; cancels its running jobs (only its own). Its queued jobs stay queued,
        for whichever runner comes next. Its lease lasts while a worker of its still runs."""
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
        if self._thread not in (None, threading.current_thread()) and not self.running():
            self._thread.join(2)  # it gives up the lease on its way out

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
        """Until stopped and no worker of its runs: renews the lease, ends the jobs of runners that
        are gone, adopts their queued jobs, carries out cancel requests, starts its queued jobs."""
        try:
            while not (self._stop.is_set() and not self.running()):
                self._wake.wait(self.lease.interval)
                self._wake.clear()
                try:
                    self._turn()
                except (sqlite3.Error, OSError, TimeoutError):  # a locked store, a full disk: next turn
                    time.sleep(0.2)
        finally:
            try:
                self.store.unregister(self.id)
            except sqlite3.Error:
                pass  # the lease expires by itself

    def _turn(self) -> None:
        judge = self.lease.tick()
        if self.lease.due():
            self.store.renew(self.id, self.lease.seconds, self.label)
        if self._stop.is_set():
            return
        self.store.reconcile(by=self.id, judge_leases=judge, sweep=False)
        self.store.adopt(self.id)
        for job_id in self.store.cancel_requests(self.id):
            self.cancel(job_id)
        self._follow()
        self._start_queued()

    def _follow(self) -> None:
        """Tells its listeners how its jobs that another runner took over go on (its own it tells as they go)."""
        with self._lock:
            mine = dict(self._mine)
        for job_id, heard in mine.items():
            job = self.store.get(job_id)
            if job is None or (job["runner"] == self.id and job["state"] in FINAL):
                with self._lock:
                    self._mine.pop(job_id, None)
            elif job["runner"] != self.id and (now := (job["state"], job["percent"], job["phase"])) != heard:
                with self._lock:
                    self._mine[job_id] = now
                    if job["state"] in FINAL:
                        self._mine.pop(job_id, None)
                self._notify(job_id)

    def _start_queued(self) -> None:
        for job in self.store.queued(self.id):
            with self._lock:
                if len(self._procs) >= self.max_concurrent or self._stop.is_set():
                    return
                if self.slots is not None and not self.slots.take():
                    return  # another folder's job holds the last slot: woken when it ends
                if not self.store.claim(job["id"], self.id):
                    if self.slots is not None:
                        self.slots.give()
                    continue
                self._launch(job)

    def _launch(self, job: dict) -> None:
        log_path = self._log(job["id"])
        journal = self.store.journal(job["id"])
        try:
            private_folder(log_path.parent)
            private_folder(journal.parent)
            forget_journal(self.store.path.parent, job["id"])
            os.close(private_file(log_path, truncate=True))
            # the store's folder: ours, holding only the store and its logs, never the workspace root
            request = protocol.Calibrate(job["spec"], self.trust, str(journal))
            handle = self.backend.start(job, request, log_path, self.store.path.parent)
        except OSError as exc:
            self.store.update(job["id"], by=self.id, state="failed", error=f"could not start the worker: {exc}; "
                              f"{NOTHING}", finished=time.time())
            if self.slots is not None:
                self.slots.give()
            self._notify(job["id"])
            return
        self._procs[job["id"]] = handle
        self.store.update(job["id"], by=self.id, pid=handle.pid,
                          phase="starting" if handle.pid else "waiting for the cluster")
        self._notify(job["id"])
        threading.Thread(target=self._watch, args=(job, handle), name=f"int8wb-job-{job['id']}", daemon=True).start()

    def _log(self, job_id: str) -> Path:
        return self.store.path.parent / "logs" / f"{job_id}.log"

    def _watch(self, job: dict, handle: Handle) -> None:
        job_id = job["id"]
        gate = ProgressGate(self.progress_interval)

        def record(msg: Progress) -> None:
            if gate.admit(msg):
                self.store.update(job_id, by=self.id, percent=msg.percent, phase=msg.phase)
                self._notify(job_id)

        def started(pid: int | None, phase: str) -> None:
            self.store.update(job_id, by=self.id, pid=pid, phase=phase)
            self._notify(job_id)

        try:
            ended = handle.follow(record, started)
        except Exception as exc:  # noqa: BLE001  a back end's fault must still end the row
            ended = Ended(None, False, f"the back end lost the worker ({type(exc).__name__}: {exc})", handle.pid)
        with self._lock:
            cancelled = job_id in self._cancelled
        fields, settled = conclude(job, ended.pid, ended.outcome, ended.ok, cancelled, ended.why,
                                   self.store.journal(job_id))
        if not self.store.update(job_id, by=self.id, **fields):
            self._await_final(job_id)  # taken over: its new owner records the end, our listeners still hear it
        elif settled:  # only once the row says what was written
            forget_journal(self.store.path.parent, job_id)
        # Only now is the job off the running list: stop() waits for that, so its final state is on record.
        with self._lock:
            self._procs.pop(job_id, None)
            self._cancelled.discard(job_id)
        if self.slots is not None:
            self.slots.give()
        self._notify(job_id)
        self._wake.set()

    def _await_final(self, job_id: str) -> None:
        deadline = time.monotonic() + self.lease.seconds
        while time.monotonic() < deadline and (self.store.get(job_id) or {}).get("state") not in FINAL:
            time.sleep(0.1)


def compare_in_worker(a: str | os.PathLike, b: str | os.PathLike, html: str | os.PathLike | None = None, *,
                      device: str = "CPU", batch: int = 1, duration: float = 3.0, strict_f32: bool = True,
                      progress: Callable[[float, str | None], None] | None = None,
                      python: str | None = None, started: Callable[[Callable[[], None]], None] | None = None) -> dict:
    """Measures IR models `a` and `b` side by side in a worker process and returns the comparison
    (`comparison.compare_models`' plain data); with `html`, the report is written there too and its
    path is the result's "report". Blocks until the worker ends (call it from a thread in an event
    loop); `progress(percent, phase)` is called on this thread, `started(stop)` once the worker runs
    (`stop()`, from any thread, ends it and all it started at once). Raises CalibrationError with the
    worker's problems, or with why the worker died."""
    request = Compare(str(Path(a).resolve()), str(Path(b).resolve()), str(Path(html).resolve()) if html else None,
                      device, int(batch), float(duration), strict_f32)
    with tempfile.TemporaryFile() as log:
        # no store here: the system's temporary folder, never the caller's folder or our source tree
        proc = spawn(python or sys.executable, request, log, tempfile.gettempdir())
        assert proc.stdout is not None
        if started is not None:
            started(lambda: proc.returncode is None and kill_group(proc.pid, signal.SIGKILL))
        try:
            outcome = protocol.answer(proc.stdout, lambda msg: progress and progress(msg.percent, msg.phase))
            code = proc.wait()
        finally:
            if proc.poll() is None:  # the caller gave up (its progress callback raised): stop the worker
                kill_group(proc.pid, signal.SIGKILL)
                proc.wait()
            proc.stdout.close()
        if isinstance(outcome, Result) and code == 0:
            return outcome.data
        if isinstance(outcome, Failure):
            raise CalibrationError(list(outcome.problems) or outcome.error)
        log.seek(0)
        why = exit_reason(code, tail(log.read().decode(errors="replace"), 5))
    raise CalibrationError(Problem(f"{why}; {NOTHING}" if code < 0 else why, rule="worker-failed"))
