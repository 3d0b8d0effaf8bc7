"""calibration.jobs.lease: when a runner renews its lease, when it may judge others', who is gone."""
from __future__ import annotations

import os
import subprocess
import sys

from int8wb.calibration.jobs.lease import HOST, Lease, gone


def test_a_lease_is_renewed_four_times_per_period():
    now = [0.0]
    lease = Lease(8.0, clock=lambda: now[0])
    renewed = []
    for t in range(0, 9):
        now[0] = float(t)
        lease.tick()
        renewed.append(lease.due())
    assert [t for t, r in enumerate(renewed) if r] == [0, 2, 4, 6, 8]
    assert lease.interval == 1.0 and Lease(2.0).interval == 0.5


def test_a_runner_that_was_suspended_waits_a_whole_lease_before_judging_others():
    """After a laptop sleeps every lease looks expired; the others have not had a turn to renew."""
    now = [0.0]
    lease = Lease(10.0, clock=lambda: now[0])
    assert lease.tick()
    now[0] = 1.0
    assert lease.tick()
    now[0] = 100.0  # asleep meanwhile
    assert not lease.tick()
    for t in range(101, 110):
        now[0] = float(t)
        assert not lease.tick()
    now[0] = 110.0
    assert lease.tick()


def test_who_is_gone():
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    here_alive = {"host": HOST, "pid": os.getpid(), "expires": 100.0}
    here_dead = {"host": HOST, "pid": dead.pid, "expires": 100.0}
    elsewhere = {"host": "other-machine:1", "pid": dead.pid, "expires": 100.0}
    assert gone(here_dead, 50.0, judge_leases=False)  # its process ended: no need to wait
    assert not gone(here_alive, 50.0, True) and not gone(elsewhere, 50.0, True)
    assert gone(here_alive, 150.0, True) and gone(elsewhere, 150.0, True)  # hung, or a pid reused
    assert not gone(elsewhere, 150.0, judge_leases=False)
