"""One calibration as a job, waited for: how a front end that wants a result runs it on a back end.

`int8wb calibrate --ray` and the pytest gate's `--int8-ray` both call `calibrate_as_job`: the
calibration is a row of the spec folder's job store (`int8wb jobs FOLDER` lists it), its worker is
started by the back end (ray_backend.py: a Ray task), and the result is the one the worker
committed. One code path, so the command line and the gate cannot drift apart on the cluster.
"""
from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Callable

from ..problems import CalibrationError, Cancelled, Problem
from .backend import Backend
from .runner import Runner
from .store import FINAL, JobStore

if TYPE_CHECKING:
    from ..spec import Spec


def calibrate_as_job(spec: Spec, on: Backend, trust: bool, progress: Callable[[float, str], None],
                     deadline: float | None, label: str = "int8wb calibrate") -> dict:
    """One calibration as a job of the spec folder's store, its worker run by the back end `on`;
    returns its result. Past `deadline` (monotonic) or on Ctrl-C the job is cancelled (Cancelled,
    KeyboardInterrupt); a failed job raises CalibrationError with its problems. `label`: who ran it,
    in the store."""
    store = JobStore(spec.path.parent)
    report = lambda job: job["state"] == "running" and progress(job["percent"], job["phase"] or "")  # noqa: E731
    runner = Runner(store, backend=on, trust_custom_metrics=trust, on_change=report, label=label).start()
    job_id = None
    try:
        job_id = runner.submit(spec.path)
        while (job := store.get(job_id))["state"] not in FINAL:
            if deadline is not None and time.monotonic() > deadline:
                raise Cancelled()
            time.sleep(0.1)
    except (Cancelled, KeyboardInterrupt):
        if job_id is not None:
            runner.cancel(job_id)
            runner.wait(job_id, 30)
        raise
    finally:
        runner.stop()
        store.close()
    if job["state"] == "done":
        with open(job["summary"]["output"]["result"], encoding="utf-8") as fh:
            return json.load(fh)
    if job["state"] == "cancelled":
        raise Cancelled()
    problems = [Problem(**p) for p in (job["summary"] or {}).get("problems") or ()]
    raise CalibrationError(problems or Problem(job["error"] or "the job failed", path=str(spec.path),
                                               rule="worker-failed"))
