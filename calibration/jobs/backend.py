"""Where a job's worker runs: the runner's one interface to its back ends.

A back end starts the worker of one job (`Backend.start`) and hands back a `Handle`: the runner
follows it on one thread (progress in, an `Ended` out) and may cancel it from another. The worker
is always the same process, `python -I -m int8wb.calibration.jobs.worker` (protocol.py), so what it
writes and how its outputs are committed do not depend on the back end. `LocalBackend` runs it as a
child of this process; `ray_backend.RayBackend` runs it on a Ray cluster.
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Protocol

from . import protocol
from .ending import exit_reason, tail
from .lease import kill_group
from .protocol import Failure, Progress, Request, Result

OnProgress = Callable[[Progress], None]
OnStarted = Callable[[int | None, str], None]  # (the worker's pid on this machine, or None; the phase to show)


@dataclass(frozen=True)
class Ended:
    """How a worker ended: its answer (None: it gave none), whether it exited with status 0, why it
    ended without an answer (`ending.exit_reason`), and its pid wherever it ran (its staged files carry it)."""
    outcome: Result | Failure | None
    ok: bool
    why: str
    pid: int | None


class Handle(Protocol):
    pid: int | None  # the worker's pid on this machine, as soon as it is known (the row's `pid`)

    def follow(self, on_progress: OnProgress, on_started: OnStarted) -> Ended:
        """Blocks until the worker has ended; called once, on the runner's thread for this job."""

    def cancel(self) -> None:
        """Stops the worker (from any thread); `follow` then returns."""


class Backend(Protocol):
    def start(self, job: dict, request: Request, log: Path, cwd: Path) -> Handle:
        """Starts the worker of `job` (a store row): `request` for it, its stderr to `log`, in the
        folder `cwd` (one that holds no code). Raises OSError when it cannot."""


def spawn(python: str, request: Request, stderr: IO | int, cwd: str | os.PathLike) -> subprocess.Popen:
    """Starts a worker in its own session (a cancel stops it and all it started) in `cwd`, a folder
    that holds no code; `-I` in its command line keeps the workspace and PYTHON* variables off sys.path."""
    return subprocess.Popen(protocol.command(python, request), stdout=subprocess.PIPE, stderr=stderr,
                            stdin=subprocess.DEVNULL, cwd=cwd, start_new_session=True)


def log_tail(log: Path, lines: int = 3) -> str:
    try:
        return tail(log.read_text(errors="replace"), lines)
    except OSError:
        return "no log"


class LocalHandle:
    def __init__(self, proc: subprocess.Popen, log: Path):
        self.proc, self.log, self.pid = proc, log, proc.pid

    def follow(self, on_progress: OnProgress, on_started: OnStarted) -> Ended:
        assert self.proc.stdout is not None
        outcome = protocol.answer(self.proc.stdout, on_progress)
        code = self.proc.wait()
        self.proc.stdout.close()
        return Ended(outcome, code == 0, exit_reason(code, log_tail(self.log)), self.pid)

    def cancel(self) -> None:
        """SIGTERM to its session, SIGKILL two seconds later if it still runs."""
        proc = self.proc
        kill_group(proc.pid, signal.SIGTERM)
        threading.Timer(2.0, lambda: proc.poll() is None and kill_group(proc.pid, signal.SIGKILL)).start()


class LocalBackend:
    """Each worker a child process of the runner's, on this machine."""

    def __init__(self, python: str):
        self.python = python

    def start(self, job: dict, request: Request, log: Path, cwd: Path) -> LocalHandle:
        with open(log, "ab") as stderr:  # the child keeps its own descriptor
            return LocalHandle(spawn(self.python, request, stderr, cwd), log)
