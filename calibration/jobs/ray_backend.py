"""Calibration jobs on a Ray cluster: the worker of each job runs as one Ray task.

`RayBackend.start` submits `run_worker`, a Ray generator task with declared resources (`num_cpus`).
On its node the task starts the very worker a local runner starts (`python -I -m
int8wb.calibration.jobs.worker calibrate --journal=… -- SPEC`, in that node's Python) and yields its
stdout lines as they come. The runner's thread for the job reads the task's ObjectRefGenerator
(`ray.get` on each ref), so progress and the answer reach the same job store, listeners and
`ending.conclude` as a local worker's. The worker stays its own `-I` process: the Ray process
that hosts the task lives on between tasks, has the driver's folder on its sys.path (Ray puts it
there), and must not keep OpenVINO's memory and threads after a job.

Inputs travel by shared path, not through Ray's object store. The request names the spec, the spec
names the model and data, and the worker writes its outputs, commit journal and log into the
workspace's folders. The engine reads and commits those files where they are, and the editor and
`int8wb jobs` read them there too. Data sets run to hundreds of megabytes; sending them through the
object store would copy them once more and put one output set in two places. So every node must
see the workspace at the same path: one machine, or a shared filesystem (docs/scale.md).

Cancel is `ray.cancel(ref, force=True)`: Ray kills the process that hosts the task, and the worker
gets SIGKILL with it (PR_SET_PDEATHSIG, set before the worker is exec'd). A worker that never
reached its commit point committed nothing, so the row says nothing was written.

A dead Ray worker process or node (WorkerCrashedError, NodeDiedError, OutOfMemoryError, …) is
tried again `retries` times, then its job is failed with the reason. The retries are the
back end's, not Ray's `max_retries`: Ray replays a generator task expecting the same items
(StreamingGeneratorReplayInconsistentError otherwise), and progress lines differ from run to run.
No retry once the job's commit journal exists: that worker passed its commit point, its new set
is whole, and the job ends done (ending.py). A worker that dies itself (the OOM killer, a crash)
ends its job as on a local runner: failed, with its exit status.

Nothing imports ray until a `RayBackend` is made (the `int8-workbench[ray]` extra).
"""
from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

from ..problems import CalibrationError, Problem
from . import protocol
from .backend import Ended, OnProgress, OnStarted, log_tail
from .ending import exit_reason, remove_temporaries
from .lease import HOST, kill_group, wait_gone
from .protocol import Request

# `python -I -c DIE_WITH_PARENT PPID WORKER…`: the worker is to die with the Ray process that started
# it (Linux: PR_SET_PDEATHSIG), then it becomes the worker (exec: same pid, the worker's command line).
DIE_WITH_PARENT = (
    "import ctypes, os, signal, sys\n"
    "if sys.platform == 'linux':\n"
    "    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(1)  # the parent died before prctl\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n")

# A dead Ray worker process or node: the job is tried again (ray.exceptions names, as Ray defines them).
LOST = ("WorkerCrashedError", "NodeDiedError", "OutOfMemoryError", "ObjectLostError", "LocalRayletDiedError",
        "RaySystemError")


def run_worker(request: Request, log: str, cwd: str) -> Iterator[tuple | bytes]:
    """The Ray task, on its node: starts the worker, yields ("started", host, pid), each line of its
    stdout, then ("exit", status)."""
    python = sys.executable  # the node's, where int8-workbench is installed beside ray
    with open(log, "ab") as stderr:
        proc = subprocess.Popen([python, "-I", "-c", DIE_WITH_PARENT, str(os.getpid()),
                                 *protocol.command(python, request)], stdout=subprocess.PIPE, stderr=stderr,
                                stdin=subprocess.DEVNULL, cwd=cwd, start_new_session=True)
    try:
        yield ("started", HOST, proc.pid)
        assert proc.stdout is not None
        for line in proc.stdout:  # (Ray drives this generator with send(): no `yield from` a file)
            yield line
        yield ("exit", proc.wait())
    finally:
        if proc.poll() is None:  # the generator was closed early
            kill_group(proc.pid, signal.SIGKILL)
            proc.wait()


class RayHandle:
    def __init__(self, backend: "RayBackend", job: dict, request: Request, log: Path, cwd: Path):
        self.backend, self.job, self.request, self.log, self.cwd = backend, job, request, log, cwd
        self.journal = Path(request.journal) if getattr(request, "journal", None) else None
        self.pid: int | None = None  # on this machine only: a pid elsewhere says nothing here
        self._lock = threading.Lock()
        self._cancelled = False
        self._gen = None
        self._submit()

    def _submit(self) -> bool:
        with self._lock:
            if self._cancelled:
                return False
            self._gen = self.backend.task.remote(self.request, str(self.log), str(self.cwd))
            return True

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            gen = self._gen
        if gen is not None:
            self.backend.ray.cancel(gen, force=True)

    def follow(self, on_progress: OnProgress, on_started: OnStarted) -> Ended:
        exceptions = self.backend.ray.exceptions
        attempts = self.backend.retries + 1
        for attempt in range(1, attempts + 1):
            seen: dict = {}
            try:
                outcome = protocol.answer(self._lines(seen, on_started), on_progress)
                code = seen.get("exit")
                if code is None:
                    return Ended(outcome, False, "the Ray task ended without the worker's exit status", seen.get("pid"))
                return Ended(outcome, code == 0, exit_reason(code, log_tail(self.log)), seen.get("pid"))
            except exceptions.TaskCancelledError:
                self._gone(seen)
                return Ended(None, False, "cancelled on the Ray cluster", seen.get("pid"))
            except exceptions.RayTaskError as exc:  # the task itself raised (e.g. no shared folder on that node)
                return Ended(None, False, f"the Ray task failed: {last_line(exc)}", seen.get("pid"))
            except self.backend.lost as exc:
                self._gone(seen)
                why = (f"the Ray worker running it died ({type(exc).__name__}: {first_line(exc)}), "
                       f"attempt {attempt} of {attempts}")
                if attempt == attempts or (self.journal is not None and self.journal.exists()):
                    return Ended(None, False, why, seen.get("pid"))
                remove_temporaries(self.job.get("output_dir"), seen.get("pid"),
                                   *([self.journal.parent] if self.journal else []))
                on_started(None, "retrying: the Ray worker died")
                if not self._submit():
                    return Ended(None, False, "cancelled while retrying", seen.get("pid"))
            except exceptions.RayError as exc:
                return Ended(None, False, f"Ray could not run it ({type(exc).__name__}: {first_line(exc)})",
                             seen.get("pid"))
        raise AssertionError("unreachable: the last attempt returns")

    def _lines(self, seen: dict, on_started: OnStarted) -> Iterator[bytes]:
        """The worker's stdout lines, from the task's items; its start and exit go to `seen`."""
        ray = self.backend.ray
        for ref in self._gen:
            item = ray.get(ref)
            if isinstance(item, bytes):
                yield item
            elif item[0] == "started":
                seen["pid"] = item[2]
                self.pid = item[2] if item[1] == HOST else None
                on_started(self.pid, "starting")
            elif item[0] == "exit":
                seen["exit"] = item[1]

    def _gone(self, seen: dict) -> None:
        """On this machine, waits until the worker has died with its Ray process (PR_SET_PDEATHSIG),
        so its staged files are judged only once nothing writes them."""
        if self.pid is not None and self.pid == seen.get("pid"):
            wait_gone(self.pid, protocol.WORKER_MODULE)


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:300]


def last_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[-1][:300]


class RayBackend:
    """Workers as Ray tasks of `num_cpus` CPUs each, on the cluster at `address` ("auto": the one
    this machine is part of; "local": a new one on this machine only; None: the one this process
    is already connected to, else a new local one). A dead Ray worker or node: `retries` more tries.
    `connect=False` connects at the first job, on the runner's thread (a language server must not
    wait seconds for a cluster while it starts); the first job fails then if there is none."""

    def __init__(self, address: str | None = None, num_cpus: float = 1.0, retries: int = 1, connect: bool = True):
        self.address = address
        self.num_cpus = num_cpus
        self.retries = max(0, int(retries))
        self._lock = threading.Lock()
        self.ray = None
        if connect:
            self.connect()

    def connect(self) -> None:
        """Imports ray and joins the cluster, once; raises CalibrationError when it cannot."""
        with self._lock:
            if self.ray is not None:
                return
            try:
                import ray
            except ImportError:
                raise CalibrationError(Problem("Ray is not installed", rule="ray-missing",
                                               fix="pip install 'int8-workbench[ray]'")) from None
            if not ray.is_initialized():
                try:
                    ray.init(address=None if self.address in (None, "local") else self.address,
                             include_dashboard=False, log_to_driver=False)
                except (ConnectionError, RuntimeError, ValueError) as exc:
                    raise CalibrationError(Problem(f"no Ray cluster at {self.address}: {first_line(exc)}",
                                                   rule="ray-unreachable",
                                                   fix="start one with `ray start --head`, or give its address "
                                                       "(docs/scale.md)")) from None
            self.lost = tuple(getattr(ray.exceptions, name) for name in LOST if hasattr(ray.exceptions, name))
            self.task = ray.remote(run_worker).options(num_cpus=self.num_cpus, max_retries=0, retry_exceptions=False)
            self.ray = ray

    def start(self, job: dict, request: Request, log: Path, cwd: Path) -> RayHandle:
        try:
            self.connect()
        except CalibrationError as exc:  # the runner fails the job with it
            raise OSError(str(exc)) from None
        if isinstance(request, protocol.Calibrate):  # its AccuracyAware probes fan out on the same cluster
            request = dataclasses.replace(request, probes=self.ray.get_runtime_context().gcs_address)
        return RayHandle(self, job, request, log, cwd)

    def __str__(self) -> str:
        return f"Ray ({self.address or 'connected'})"


def join(address: str | None, num_cpus: float = 1.0, retries: int = 1) -> RayBackend:
    """A `RayBackend` connected now, with this process's SIGTERM handler kept: ray.init installs one
    that exits at once, and a front end's own (`int8wb calibrate`) cancels its jobs first. Raises
    CalibrationError when there is no cluster to join."""
    ours = signal.getsignal(signal.SIGTERM)
    backend = RayBackend(address, num_cpus=num_cpus, retries=retries)
    if threading.current_thread() is threading.main_thread() and callable(ours):
        signal.signal(signal.SIGTERM, ours)
    return backend
