"""Calibration jobs: a SQLite store, runners that each run their own jobs, and the worker process.

No editor protocol here: the language-server daemon, `int8wb jobs` and a drop-folder watcher all use
the same store and runner. Rooms: store.py (rows, who owns each job), lease.py (who is alive),
runner.py (launching and watching workers), backend.py (where a worker runs: a child process),
ray_backend.py (or a Ray task; imports ray only when used), as_job.py (one calibration as a job,
waited for: `int8wb calibrate --ray`, `pytest --int8-ray`), ending.py (what a job's row says when
it ends), worker.py (the process that runs one job), protocol.py (the only runner<->worker contract).
The worker module is not imported here: `python -m …jobs.worker` must find it unloaded.
"""
from .ending import summarise
from .lease import alive
from .protocol import Calibrate, Compare, Failure, Progress, ProtocolError, Result
from .runner import Listener, ProgressGate, Runner, Slots, compare_in_worker
from .store import COLUMNS, FINAL, STATES, STORE_DIR, STORE_NAME, JobStore, store_path

__all__ = ["COLUMNS", "FINAL", "STATES", "STORE_DIR", "STORE_NAME", "Calibrate", "Compare", "Failure", "JobStore",
           "Listener", "Progress", "ProgressGate", "ProtocolError", "Result", "Runner", "Slots", "alive",
           "compare_in_worker", "store_path", "summarise"]
