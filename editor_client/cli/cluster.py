"""`--ray ADDRESS`: `int8wb calibrate` and `int8wb watch` run their calibrations on a Ray cluster.

A calibration on Ray is a job like the editor's: a row of the spec folder's job store
(`int8wb jobs FOLDER` lists it), its worker a Ray task (calibration/jobs/ray_backend.py).
"""
from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from typing import Callable

from int8wb.calibration import CalibrationError, Cancelled, Problem
from int8wb.calibration.spec import Spec


def ray_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ray", metavar="ADDRESS",
                        help="run on a Ray cluster: auto (the one this machine joined with `ray start`), local "
                             "(a new one on this machine), or its address; every node must see the files at the "
                             "same paths (docs/scale.md); needs int8-workbench[ray]")
    parser.add_argument("--ray-cpus", type=float, default=1.0, metavar="N",
                        help="CPUs each calibration reserves on the cluster (default: 1)")


def backend(args: argparse.Namespace, retries: int = 1):
    """The Ray back end `--ray` asks for, or None; raises CalibrationError when it cannot connect.
    `retries`: more tries of a job whose Ray worker or node died."""
    if not getattr(args, "ray", None):
        return None
    from int8wb.calibration.jobs.ray_backend import RayBackend

    ours = signal.getsignal(signal.SIGTERM)
    on = RayBackend(args.ray, num_cpus=args.ray_cpus, retries=retries)
    if threading.current_thread() is threading.main_thread() and callable(ours):
        signal.signal(signal.SIGTERM, ours)  # ray.init's handler exits at once; ours cancels the jobs first
    return on


def calibrate_as_job(spec: Spec, on: object, trust: bool, progress: Callable[[float, str], None],
                     deadline: float | None) -> dict:
    """One calibration as a job of the spec folder's store, its worker run by the back end `on`;
    returns its result. Past `deadline` (monotonic) or on Ctrl-C the job is cancelled (Cancelled,
    KeyboardInterrupt); a failed job raises CalibrationError with its problems."""
    from int8wb.calibration.jobs import FINAL, JobStore, Runner

    store = JobStore(spec.path.parent)
    report = lambda job: job["state"] == "running" and progress(job["percent"], job["phase"] or "")  # noqa: E731
    runner = Runner(store, backend=on, trust_custom_metrics=trust, on_change=report, label="int8wb calibrate").start()
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
