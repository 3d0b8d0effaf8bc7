"""AccuracyAware's ranking probes as Ray tasks, when the job itself runs on a Ray cluster.

The Ray back end asks the worker to calibrate with the cluster's address (`Calibrate.probes`,
jobs/ray_backend.py); the worker `join`s it before calibrating. Each probe is one
task of one CPU: it reads the FakeQuantize model from IR bytes, builds the candidate the same way
the local search does, compiles it and measures the same distance, so the ranking (and everything
after it) is the local run's. The model and the samples go through the object store once (`ray.put`)
and every task reads them from there: unlike a job's dataset, a few MB of IR plus 16 samples, and the
tasks may run on nodes that do not share the workspace.

Only the ranking fans out: its probes are independent of each other. The full validations of the
search are not: each one decides which layer set is measured next.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import openvino as ov

from ..problems import Cancelled
from .ranking import Candidate, distance

_joined: dict = {}


def join(address: str) -> None:
    """From now on this process's ranking probes run on the Ray cluster at `address` (joined at the
    first ranking: most jobs never rank, and joining takes a second or two)."""
    _joined["address"] = address


def where_to_probe():
    """`OnRay` when this process was asked to `join` a cluster, else None (the probes run in process)."""
    if "address" not in _joined:
        return None
    if "ray" not in _joined:
        import ray

        if not ray.is_initialized():
            # The worker runs in the job store's private folder, which holds no code: Ray's workers
            # (which get the driver's folder on their sys.path) import nothing from the workspace.
            ray.init(address=_joined["address"], include_dashboard=False, log_to_driver=False)
        _joined["ray"] = OnRay(ray)
    return _joined["ray"]


def ir_bytes(model: ov.Model) -> tuple[bytes, bytes]:
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "m.xml"
        ov.save_model(model, xml, compress_to_fp16=False)
        return xml.read_bytes(), xml.with_suffix(".bin").read_bytes()


def probe(ir: tuple[bytes, bytes], names: list[str], candidate: Candidate, device: str, config: dict,
          data: tuple[list[dict], list[np.ndarray]]) -> float:
    """One ranking probe, in a Ray task."""
    core = ov.Core()
    model = core.read_model(ir[0], ov.Tensor(np.frombuffer(ir[1], dtype=np.uint8)))
    return distance(core, candidate(model, set(names)), device, config, *data)


class OnRay:
    def __init__(self, ray):
        self.ray = ray
        self.task = ray.remote(probe).options(num_cpus=1, max_retries=2)

    def distances(self, core: ov.Core, quantized: ov.Model, groups: list[list[str]], candidate: Candidate,
                  device: str, config: dict, inputs: list[dict], reference: list[np.ndarray],
                  progress: Callable[[float], None], cancel: Callable[[], bool] | None) -> list[float]:
        ray = self.ray
        ir, data = ray.put(ir_bytes(quantized)), ray.put((inputs, reference))
        refs = [self.task.remote(ir, group, candidate, device, config, data) for group in groups]
        index = {ref: n for n, ref in enumerate(refs)}
        got: dict[int, float] = {}
        waiting = list(refs)
        try:
            while waiting:
                if cancel and cancel():
                    raise Cancelled()
                done, waiting = ray.wait(waiting, num_returns=1, timeout=0.5)
                for ref in done:
                    got[index[ref]] = ray.get(ref)
                progress(len(got) / len(refs))
        finally:
            for ref in waiting:
                ray.cancel(ref, force=True)
        return [got[n] for n in range(len(refs))]
