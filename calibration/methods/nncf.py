"""What every method shares with NNCF: the calibration data as NNCF iterates it, NNCF's settings for
a spec, and NNCF calls with their own progress output silenced."""
from __future__ import annotations

import logging
from typing import Iterator

import nncf
import rich

from .. import devices
from ..datasets import Dataset
from ..problems import Cancelled
from ..spec import Spec

nncf.set_log_level(logging.WARNING)  # NNCF's INFO lines would drown our own progress


class Feed:
    """The calibration subset as NNCF iterates it, reporting progress and honouring cancel.

    NNCF may walk the data more than once (statistics, then bias correction), so the
    progress is the share of samples served modulo one pass.
    """

    def __init__(self, dataset: Dataset, indices: list[int], progress, cancel):
        self.dataset, self.indices = dataset, indices
        self.progress, self.cancel = progress, cancel
        self.served = 0

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[dict]:
        for i in self.indices:
            if self.cancel and self.cancel():
                raise Cancelled()
            self.served += 1
            if self.progress:
                self.progress(min(0.99, self.served / (2 * len(self.indices))))
            yield self.dataset.load(i)


def nncf_settings(spec: Spec, samples: int, **backend_params) -> dict:
    """Every control of the spec's [calibration] as nncf.quantize's arguments, for `samples` subset samples.
    `backend_params`: what a method needs of the OpenVINO backend (AccuracyAware keeps float weights)."""
    from nncf.quantization.advanced_parameters import (AdvancedQuantizationParameters, AdvancedSmoothQuantParameters,
                                                       QuantizationParameters)
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    c = spec.calibration
    preset = {"performance": nncf.QuantizationPreset.PERFORMANCE, "mixed": nncf.QuantizationPreset.MIXED}[c.preset]
    device = nncf.TargetDevice.CPU if devices.is_cpu(spec.device) else nncf.TargetDevice.ANY
    advanced = {"backend_params": backend_params, "disable_bias_correction": c.bias_correction == "off"}
    if c.model_type == "transformer":
        advanced["smooth_quant_alphas"] = AdvancedSmoothQuantParameters(
            matmul=c.smooth_quant.matmul, convolution=c.smooth_quant.convolution)
    for kind in ("activations", "weights"):
        q = getattr(c, kind)
        if q.range_estimator:
            advanced[f"{kind}_range_estimator_params"] = getattr(RangeEstimatorParametersSet, q.range_estimator.upper())
        if q.per_channel is not None:
            advanced[f"{kind}_quantization_params"] = QuantizationParameters(per_channel=q.per_channel)
    settings = {"preset": preset, "target_device": device, "fast_bias_correction": c.bias_correction != "full",
                "subset_size": min(samples, c.statistics_samples or samples),
                "advanced_parameters": AdvancedQuantizationParameters(**advanced)}
    if c.model_type == "transformer":
        settings["model_type"] = nncf.ModelType.TRANSFORMER
    scope = ignored_scope(spec)
    if scope is not None:
        settings["ignored_scope"] = scope
    return settings


def ignored_scope(spec: Spec):
    """The spec's ignored scope as NNCF's (None when empty). Unmatched entries were reported by the
    checker and before the run (`calibration.ignored_scope`): NNCF need not refuse them again."""
    s = spec.calibration.ignored_scope
    if s.empty():
        return None
    return nncf.IgnoredScope(names=list(s.names), types=list(s.types), patterns=list(s.patterns),
                             subgraphs=[nncf.Subgraph(inputs=g.inputs, outputs=g.outputs) for g in s.subgraphs],
                             validate=False)


def quantize(model, feed: Feed, **settings):
    """nncf.quantize over `feed`, silenced, its statistics collected with requests in flight."""
    from .statistics import in_flight

    with in_flight():
        return quiet(nncf.quantize, model, nncf.Dataset(feed), **settings)


def quiet(fn, *args, **kwargs):
    """Runs an NNCF call with its progress bars (drawn on rich's global console) silenced:
    callers get our progress instead, and stdout stays clean for --json."""
    console = rich.get_console()
    was, console.quiet = console.quiet, True
    try:
        return fn(*args, **kwargs)
    finally:
        console.quiet = was
