"""NNCF's statistics collection with every infer request busy.

NNCF's own loop (`StatisticsAggregator.collect_statistics`) infers one sample at a time on a model
compiled for latency, so one core idles on a 2-core machine. `in_flight()` swaps in a loop that keeps
several requests busy on a model compiled for throughput (same strict f32 precision) and hands NNCF
each sample's outputs in sample order, exactly as its own loop would: the statistics, and so the INT8
model, are bit-identical (tested). The swap relies on NNCF internals; `unsupported()` checks them
first and NNCF's own loop runs whenever they do not match (a newer NNCF), or for stateful models.
Requests take samples in turn (in_turn.py): OpenVINO gets no Python callback.
"""
from __future__ import annotations

import contextlib
import inspect
import logging
import threading
from itertools import islice
from typing import Iterator

import numpy as np
import openvino as ov

from ..in_turn import run_in_turn
from .. import in_turn

log = logging.getLogger("int8wb")

# What the loop below calls on the aggregator, each with the parameters it passes.
NEEDED = {"_get_merged_statistic_points": ["statistic_points", "model", "graph"],
          "_get_transformation_layout_extra_outputs": ["statistic_points"],
          "_register_statistics": ["outputs", "statistic_points"],
          "_process_outputs": ["outputs"],
          "_get_iterations_number": []}
_swap = threading.Lock()  # the swap is process-wide: one quantization at a time uses it


def aggregator():
    from nncf.openvino.statistics.aggregator import OVStatisticsAggregator

    return OVStatisticsAggregator


def unsupported(cls=None) -> str | None:
    """Why the in-flight loop cannot stand in for NNCF's (None: it can)."""
    cls = cls or aggregator()
    for name, params in NEEDED.items():
        fn = getattr(cls, name, None)
        if not callable(fn):
            return f"NNCF's statistics aggregator has no {name}()"
        got = [p for p in inspect.signature(fn).parameters if p != "self"]
        if got != params:
            return f"NNCF's {name}() takes ({', '.join(got)}), not ({', '.join(params)})"
    try:
        from nncf.common import factory
        from nncf.openvino.graph import model_utils
    except ImportError as exc:
        return f"NNCF moved what the in-flight loop imports: {exc}"
    if not (hasattr(factory, "ModelTransformerFactory") and hasattr(model_utils, "model_has_state")):
        return "NNCF moved its model transformer factory or model_has_state"
    return None


@contextlib.contextmanager
def in_flight() -> Iterator[bool]:
    """NNCF's statistics collection runs with requests in flight inside this block (yields True),
    or NNCF's own loop when its internals do not match (yields False)."""
    why = unsupported()
    if why is not None:
        log.info("statistics collection: NNCF's own loop (%s)", why)
        yield False
        return
    cls = aggregator()
    with _swap:
        own = cls.collect_statistics

        def collect(self, model, graph):
            return _collect(self, model, graph, lambda: own(self, model, graph))

        cls.collect_statistics = collect
        try:
            yield True
        finally:
            cls.collect_statistics = own


def _collect(self, model: ov.Model, graph, fallback) -> None:
    import nncf
    from nncf.common.factory import ModelTransformerFactory
    from nncf.openvino.graph.model_utils import model_has_state

    if model_has_state(model):  # its loop resets state between samples as the data says
        return fallback()
    self._name_to_node_mapping = {op.get_friendly_name(): op for op in model.get_ops()}  # as NNCF's own does
    if not self.statistic_points:
        return None
    merged = self._get_merged_statistic_points(self.statistic_points, model, graph)
    layout = self._get_transformation_layout_extra_outputs(merged)
    with_outputs = ModelTransformerFactory.create(model).transform(layout)
    compiled = ov.Core().compile_model(with_outputs, "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                             "PERFORMANCE_HINT": "THROUGHPUT"})
    names = [list(o.get_names()) for o in compiled.outputs]

    def take(k: int, request: ov.InferRequest) -> None:
        outputs = {}
        for i, tensor_names in enumerate(names):
            value = np.array(request.get_output_tensor(i).data, copy=True)  # the request is reused
            for name in tensor_names:
                outputs[name] = value
        self._register_statistics(self._process_outputs(outputs), merged)

    data = islice(self.dataset.get_inference_data(), self._get_iterations_number())
    if run_in_turn(compiled, data, take, max(2, in_turn.in_flight(compiled))) == 0:
        raise nncf.ValidationError("Calibration dataset must not be empty.")
    return None
