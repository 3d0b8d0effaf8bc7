"""Throughput, latency and the per-layer runtime table of a model variant.

Throughput follows benchmark_app: warm up, then keep every infer request busy for a
fixed time. The per-layer table comes from a separate PERF_COUNT compile so that
profiling overhead never leaks into the speed figures.
"""
from __future__ import annotations

import time
from collections import defaultdict
from typing import Callable

import numpy as np
import openvino as ov

from .spec import InferenceSpec

WARMUP_S = 0.3
PROFILE_RUNS = 10


def batched(model: ov.Model, sample: dict[str, np.ndarray], batch: int) -> tuple[ov.Model, dict]:
    """A copy of the model reshaped to `batch` (when its batch dim allows) and a matching input."""
    model = model.clone()
    if batch != 1:
        shapes = {}
        for inp in model.inputs:
            ps = inp.get_partial_shape()
            if ps.rank.is_static and ps.rank.get_length() > 0:
                ps[0] = batch
                shapes[inp.get_any_name()] = ps
        model.reshape(shapes)
    data = {k: np.ascontiguousarray(np.repeat(v, batch, axis=0)) for k, v in sample.items()}
    return model, data


def measure(core: ov.Core, model: ov.Model, device: str, config: dict, settings: InferenceSpec,
            sample: dict[str, np.ndarray], duration: float | None = None,
            cancel: Callable[[], bool] | None = None) -> dict:
    """Throughput (samples/s) and latency (ms) with the spec's batch, streams and requests."""
    model, data = batched(model, sample, settings.batch)
    cfg = dict(config)
    if settings.streams == "auto":
        cfg["PERFORMANCE_HINT"] = "THROUGHPUT"
    else:
        cfg["NUM_STREAMS"] = str(settings.streams)
    compiled = core.compile_model(model, device, cfg)
    jobs = (compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
            if settings.requests == "auto" else settings.requests)
    queue = ov.AsyncInferQueue(compiled, jobs)
    latencies: list[float] = []
    queue.set_callback(lambda req, started: latencies.append(time.perf_counter() - started))
    for req in queue:  # data set once per request; the loop below only re-runs them
        for name, value in data.items():
            req.set_tensor(name, ov.Tensor(value))

    def run(seconds: float) -> tuple[int, float]:
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            if cancel and cancel():
                break
            queue.start_async(userdata=time.perf_counter())
            count += 1
        queue.wait_all()
        return count, time.perf_counter() - start

    run(WARMUP_S)
    latencies.clear()
    count, elapsed = run(duration or settings.duration)
    lat = np.asarray(latencies) * 1000.0
    return {
        "throughput": count * settings.batch / elapsed,
        "latency_ms": {"median": float(np.median(lat)), "mean": float(lat.mean()),
                       "min": float(lat.min()), "max": float(lat.max())},
        "requests": int(jobs),
        "streams": int(compiled.get_property("NUM_STREAMS")),
        "batch": settings.batch,
        "iterations": count,
    }


def profile(core: ov.Core, model: ov.Model, device: str, config: dict,
            sample: dict[str, np.ndarray]) -> list[dict]:
    """Per-layer rows of the compiled (runtime) model, times averaged over a few runs."""
    compiled = core.compile_model(model, device, {**config, "PERF_COUNT": True})
    request = compiled.create_infer_request()
    request.infer(sample, share_inputs=False)
    totals: dict[str, float] = defaultdict(float)
    for _ in range(PROFILE_RUNS):
        request.infer(sample, share_inputs=False)
        for info in request.profiling_info:
            totals[info.node_name] += info.real_time.total_seconds() * 1e6
    rows = []
    for op in compiled.get_runtime_model().get_ordered_ops():
        rt = op.get_rt_info()
        get = lambda key: str(rt[key].value) if key in rt else ""  # noqa: E731
        if get("layerType") in ("Input", "Output", "Const", "Parameter", "Result"):
            continue
        name = op.get_friendly_name()
        rows.append({
            "name": name,
            "type": get("layerType"),
            "outputPrecisions": get("outputPrecisions"),
            "runtimePrecision": get("runtimePrecision"),
            "kernel": get("primitiveType"),
            "originalLayers": [n for n in get("originalLayersNames").split(",") if n],
            "time_us": round(totals.get(name, 0.0) / PROFILE_RUNS, 2),
        })
    return rows


def summarise(rows: list[dict]) -> dict:
    """Time by layer type and layer count by runtime precision."""
    by_type: dict[str, float] = defaultdict(float)
    by_precision: dict[str, int] = defaultdict(int)
    for row in rows:
        by_type[row["type"]] += row["time_us"]
        by_precision[row["runtimePrecision"] or "n/a"] += 1
    return {"time_us_by_type": dict(sorted(by_type.items(), key=lambda kv: -kv[1])),
            "layers_by_precision": dict(sorted(by_precision.items())),
            "total_time_us": round(sum(by_type.values()), 2)}
