"""`--ray ADDRESS`: `int8wb calibrate` and `int8wb watch` run their calibrations on a Ray cluster.

A calibration on Ray is a job like the editor's: a row of the spec folder's job store
(`int8wb jobs FOLDER` lists it), its worker a Ray task (calibration/jobs/ray_backend.py), waited
for by `calibration/jobs/as_job.py`.
"""
from __future__ import annotations

import argparse


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
    from int8wb.calibration.jobs.ray_backend import join

    return join(args.ray, num_cpus=args.ray_cpus, retries=retries)
