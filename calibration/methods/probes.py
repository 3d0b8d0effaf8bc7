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
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Callable

import numpy as np
import openvino as ov

from ..problems import Cancelled
from .ranking import Candidate, InProcess, distance

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
    """Probes as Ray tasks of one CPU, and this process probes too. The job's own task holds its CPUs
    while it waits, so on a busy cluster the probe tasks may wait for CPUs that never come: this
    process takes probes from the back of the list, then re-runs the newest probe still in flight,
    so the ranking never waits on the cluster and never takes longer than in process (where it
    runs as many probes at a time as the in-process ranking does).
    `here=False`: every probe on the cluster (to test the tasks alone)."""

    def __init__(self, ray, here: bool = True, at_once: int | None = None):
        self.ray, self.here = ray, here
        self.at_once = InProcess(at_once).at_once  # this process's share runs as the in-process ranking does
        self.task = ray.remote(probe).options(num_cpus=1, max_retries=2)
        self.on_cluster = 0  # probes of the last ranking that a Ray task answered

    def distances(self, core: ov.Core, quantized: ov.Model, groups: list[list[str]], candidate: Candidate,
                  device: str, config: dict, inputs: list[dict], reference: list[np.ndarray],
                  progress: Callable[[float], None], cancel: Callable[[], bool] | None) -> list[float]:
        ray, n = self.ray, len(groups)
        ir, data = ray.put(ir_bytes(quantized)), ray.put((inputs, reference))
        window = max(1, int(ray.cluster_resources().get("CPU", 1)))
        todo = deque(range(n))  # nobody's yet: the cluster takes from the left, this process from the right
        flying: dict = {}       # task -> probe index
        got: dict[int, float] = {}
        mine: dict = {}         # this process's probes in progress: future -> probe index
        self.on_cluster = 0

        def here(i: int) -> float:
            return distance(core, candidate(quantized, set(groups[i])), device, config, inputs, reference)

        pool = ThreadPoolExecutor(self.at_once, thread_name_prefix="int8wb-probe")
        try:
            while len(got) < n:
                if cancel and cancel():
                    raise Cancelled()
                while len(flying) < window and todo and (len(todo) > 1 or not self.here):
                    i = todo.popleft()
                    flying[self.task.remote(ir, groups[i], candidate, device, config, data)] = i
                for i, answer in self._finished(flying, 0 if self.here else 0.5):
                    if answer is None:
                        todo.append(i)  # the task failed: taken again
                    else:
                        got[i], self.on_cluster = answer, self.on_cluster + 1
                while self.here and len(mine) < self.at_once and (todo or flying):
                    if todo:
                        i = todo.pop()
                    else:  # every probe left is in flight: run the newest (least likely started) here
                        ref = next(reversed(flying))
                        i = flying.pop(ref)
                        ray.cancel(ref, force=True)
                    mine[pool.submit(here, i)] = i
                if mine:
                    done, _ = wait(mine, timeout=0.05, return_when=FIRST_COMPLETED)
                    for future in done:
                        got[mine.pop(future)] = future.result()
                progress(len(got) / n)
        finally:
            for ref in flying:
                ray.cancel(ref, force=True)
            pool.shutdown(wait=True, cancel_futures=True)
        return [got[i] for i in range(n)]

    def _finished(self, flying: dict, timeout: float) -> list[tuple[int, float | None]]:
        """(probe index, its distance or None when the task failed) of the tasks done by now."""
        if not flying:
            return []
        done, _ = self.ray.wait(list(flying), num_returns=1, timeout=timeout)
        if done:
            done, _ = self.ray.wait(list(flying), num_returns=len(flying), timeout=0)
        answers = []
        for ref in done:
            i = flying.pop(ref)
            try:
                answers.append((i, self.ray.get(ref)))
            except self.ray.exceptions.RayError:
                if not self.here:
                    raise
                answers.append((i, None))
        return answers
