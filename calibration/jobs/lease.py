"""Who is alive: processes (workers, runners) and the leases of runners.

A runner holds a lease in its store (a row in `runners`: pid, host, expiry) and renews it while it
runs. A job belongs to the runner that submitted it; another runner takes it over only when that
runner is gone: its process has ended (on this machine) or its lease has expired.
"""
from __future__ import annotations

import os
import socket
import time
from typing import Callable

LEASE_SECONDS = 30.0


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


def wait_gone(pid: int, needle: str, timeout: float = 5.0) -> bool:
    """Waits until `pid` (not our child) has ended; False if it still runs after `timeout` s."""
    deadline = time.monotonic() + timeout
    while alive(pid, needle):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def _host() -> str:
    """This machine and pid namespace: only here does a pid say whether a runner lives (two
    containers may share a folder and a host name, not their pids)."""
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        namespace = 0
    return f"{socket.gethostname()}:{namespace}"


HOST = _host()


def gone(row: dict, now: float, judge_leases: bool) -> bool:
    """Whether the runner of `row` (a `runners` row) is gone: its process ended here, or, when
    `judge_leases`, its lease expired (a runner elsewhere, a hung one, or a pid reused since)."""
    if row["host"] == HOST and not alive(row["pid"]):
        return True
    return judge_leases and row["expires"] < now


class Lease:
    """The timing of one runner's lease: when to renew it, and whether this runner may judge
    others' leases now. A runner that was itself suspended (a laptop asleep) must not judge at
    once: the others slept too and have not renewed theirs yet."""

    def __init__(self, seconds: float = LEASE_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.seconds = float(seconds)
        self.clock = clock
        self._tick = clock()
        self._renewed = float("-inf")
        self._judge_from = self._tick

    @property
    def interval(self) -> float:
        """How often a runner's loop must come round to renew in time."""
        return min(1.0, self.seconds / 4)

    def tick(self) -> bool:
        """Called on every turn of the runner's loop; whether it may judge others' leases."""
        now = self.clock()
        if now - self._tick > self.seconds / 2:
            self._judge_from = now + self.seconds
        self._tick = now
        return now >= self._judge_from

    def due(self) -> bool:
        """Whether to renew now (four times a lease); the caller renews when True."""
        now = self.clock()
        if now - self._renewed >= self.seconds / 4:
            self._renewed = now
            return True
        return False
