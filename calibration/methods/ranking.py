"""AccuracyAware's ranking: how much of the INT8 model's output error each group of quantized layers
removes when it alone goes back to float. One probe per group (a compile and a few inferences), and
the probes are independent of each other: on a Ray cluster they fan out as tasks (`probes.py`).

Measured at the output, because a layer's own error says little about what it does downstream
(depthwise convolutions with near-zero outputs have huge relative errors and no effect)."""
from __future__ import annotations

import os
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Callable

import numpy as np
import openvino as ov

from ..datasets import Dataset
from ..problems import Cancelled
from ..runtime import config_for

# (the FakeQuantize model, the layer names to put back in float) -> the model to measure
Candidate = Callable[[ov.Model, set], ov.Model]


def outputs(compiled: ov.CompiledModel, inputs: list[dict]) -> list[np.ndarray]:
    request = compiled.create_infer_request()
    return [np.array(request.infer(x, share_inputs=False)[0], dtype=np.float64) for x in inputs]


def distance(core: ov.Core, model: ov.Model, device: str, config: dict, inputs: list[dict],
             reference: list[np.ndarray]) -> float:
    """Mean relative squared error of the model's first output against the FP32 reference."""
    got = outputs(core.compile_model(model, device, config), inputs)
    return float(np.mean([np.sum((g - r) ** 2) / (np.sum(r ** 2) + 1e-12) for g, r in zip(got, reference)]))


class InProcess:
    """The probes in this process, `at_once` at a time. A probe's compile runs mostly on one core and
    its few inferences are short, so two probes overlap well on two cores; each is its own compiled
    model, so the distances are those of probes run one by one."""

    def __init__(self, at_once: int | None = None):
        self.at_once = max(1, at_once or min(2, len(os.sched_getaffinity(0))))

    def distances(self, core: ov.Core, quantized: ov.Model, groups: list[list[str]], candidate: Candidate,
                  device: str, config: dict, inputs: list[dict], reference: list[np.ndarray],
                  progress: Callable[[float], None], cancel: Callable[[], bool] | None) -> list[float]:
        def probe(group: list[str]) -> float:
            return distance(core, candidate(quantized, set(group)), device, config, inputs, reference)

        got: dict[int, float] = {}
        with ThreadPoolExecutor(self.at_once, thread_name_prefix="int8wb-probe") as pool:
            flying: dict = {}
            for n, group in enumerate(groups):
                if cancel and cancel():
                    raise Cancelled()
                flying[pool.submit(probe, group)] = n
                while len(flying) >= self.at_once or (n == len(groups) - 1 and flying):
                    done, _ = wait(flying, return_when=FIRST_COMPLETED)
                    for future in done:
                        got[flying.pop(future)] = future.result()
                    progress(len(got) / len(groups))
        return [got[n] for n in range(len(groups))]


def rank(core: ov.Core, fp32: ov.Model, quantized: ov.Model, groups: list[list[str]], candidate: Candidate,
         device: str, int8_config: dict, dataset: Dataset, samples: list[int],
         progress: Callable[[float], None] | None = None, cancel: Callable[[], bool] | None = None,
         where=None) -> list[tuple[int, float]]:
    """(group index, sensitivity) of every group, most sensitive first. Sensitivity = the share of
    the all-INT8 output error that goes when only this group returns to float, on `samples`.
    `where` runs the probes (`InProcess` unless a cluster is given); the answer is the same."""
    loaded = {i: dataset.load(i) for i in sorted(samples)}  # in file order: a compressed npz streams forward
    inputs = [loaded[i] for i in samples]
    reference = outputs(core.compile_model(fp32, device, config_for("fp32_f32", device)), inputs)
    # the all-INT8 model first: probe 0 has no layer in float
    got = (where or InProcess()).distances(core, quantized, [[], *groups], candidate, device, int8_config, inputs,
                                           reference, progress or (lambda f: None), cancel)
    start = got[0]
    scored = [(g, (start - d) / (start + 1e-12)) for g, d in enumerate(got[1:])]
    return sorted(scored, key=lambda s: -s[1])
