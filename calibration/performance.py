"""Throughput, batch-1 latency and the per-layer runtime table of model variants.

Throughput follows benchmark_app: warm up, then keep every infer request busy. Latency is batch 1
with one request in flight. On a shared machine one run of each variant can be off by half, so the
variants are measured in interleaved rounds and every ratio comes with an interval over rounds.
The per-layer table comes from a separate PERF_COUNT compile so that profiling overhead never
leaks into the speed figures.
"""
from __future__ import annotations

import time
from collections import defaultdict
from typing import Callable

import numpy as np
import openvino as ov

from . import stats
from .problems import Cancelled
from .spec import InferenceSpec

WARMUP_S = 0.3
PROFILE_RUNS = 10
LATENCY_MODE = "batch 1, one request in flight (PERFORMANCE_HINT LATENCY)"


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


class _Bench:
    """One variant compiled twice: for throughput (the spec's batch, streams and requests, every
    request kept busy, as benchmark_app) and for batch-1 latency (one request in flight, the
    LATENCY hint, as `benchmark_app -hint latency`)."""

    def __init__(self, core: ov.Core, model: ov.Model, device: str, config: dict, settings: InferenceSpec,
                 sample: dict[str, np.ndarray]):
        self.batch = settings.batch
        tp_model, data = batched(model, sample, settings.batch)
        cfg = dict(config)
        if settings.streams == "auto":
            cfg["PERFORMANCE_HINT"] = "THROUGHPUT"
        else:
            cfg["NUM_STREAMS"] = str(settings.streams)
        self.compiled = core.compile_model(tp_model, device, cfg)
        self.requests = int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
                            if settings.requests == "auto" else settings.requests)
        self.queue = ov.AsyncInferQueue(self.compiled, self.requests)
        for req in self.queue:  # data set once per request; the runs only re-start them
            for name, value in data.items():
                req.set_tensor(name, ov.Tensor(value))
        one_model, one = batched(model, sample, 1)
        self.single = core.compile_model(one_model, device, {**config, "PERFORMANCE_HINT": "LATENCY"})
        self.request = self.single.create_infer_request()
        for name, value in one.items():
            self.request.set_tensor(name, ov.Tensor(np.ascontiguousarray(value)))
        self.iterations, self.latencies, self.rounds, self.latency_rounds = 0, [], [], []

    def throughput(self, seconds: float, cancel) -> float:
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds and not (cancel and cancel()):
            self.queue.start_async()
            count += 1
        self.queue.wait_all()
        self.iterations += count
        return count * self.batch / (time.perf_counter() - start)

    def latency(self, seconds: float, cancel) -> list[float]:
        times, start = [], time.perf_counter()
        while not times or (time.perf_counter() - start < seconds and not (cancel and cancel())):
            t0 = time.perf_counter()
            self.request.infer()
            times.append((time.perf_counter() - t0) * 1000.0)
        return times

    def record(self) -> dict:
        lat = np.asarray(self.latencies)
        return {
            "throughput": float(np.median(self.rounds)),
            "latency_ms": {"median": float(np.median(lat)), "mean": float(lat.mean()), "min": float(lat.min()),
                           "max": float(lat.max()), "p90": float(np.percentile(lat, 90))},
            "requests": self.requests,
            "streams": int(self.compiled.get_property("NUM_STREAMS")),
            "batch": self.batch,
            "iterations": self.iterations,
            "rounds": [round(x, 3) for x in self.rounds],
            "spread": [round(min(self.rounds), 3), round(max(self.rounds), 3)],
            "latency_rounds": [round(x, 4) for x in self.latency_rounds],
            "latency_mode": LATENCY_MODE,
        }


def measure_interleaved(core: ov.Core, variants: dict[str, tuple[ov.Model, dict, dict[str, np.ndarray]]],
                        device: str, settings: InferenceSpec, progress: Callable[[float], None] | None = None,
                        cancel: Callable[[], bool] | None = None,
                        undecided: Callable[[dict[str, dict]], bool] | None = None) -> dict[str, dict]:
    """Speed of each variant (name -> (model, config, sample)), measured in interleaved rounds: every
    round runs each variant once, in rotating order (`round_order`), so a busy spell on a shared machine hits
    them alike; ratios are then taken per round. `throughput` is the median over rounds.
    `undecided(records)`: when it says the first rounds decide nothing, `settings.more_rounds` more run
    (one second look, never more: each look adds its chance of a false verdict)."""
    benches = {name: _Bench(core, model, device, config, settings, sample)
               for name, (model, config, sample) in variants.items()}
    for bench in benches.values():
        bench.throughput(WARMUP_S, cancel)
        bench.latency(WARMUP_S / 2, cancel)
    seconds = settings.duration / settings.rounds
    second = settings.more_rounds if undecided else 0
    total = settings.rounds + second  # progress runs to the first look's share, then on if it looks again

    def run(first: int, count: int) -> None:
        for r in range(first, first + count):
            for name in round_order(list(benches), r):
                if cancel and cancel():
                    raise Cancelled()
                bench = benches[name]
                bench.rounds.append(bench.throughput(seconds, cancel))
                times = bench.latency(seconds / 2, cancel)
                bench.latencies += times
                bench.latency_rounds.append(float(np.median(times)))
            if progress:
                progress((r + 1) / total)

    run(0, settings.rounds)
    looks = 1
    if second and not (cancel and cancel()) and undecided({n: b.record() for n, b in benches.items()}):
        run(settings.rounds, second)
        looks = 2
    if cancel and cancel():
        raise Cancelled()
    if progress:
        progress(1.0)
    return {name: {**bench.record(), "looks": looks} for name, bench in benches.items()}


def round_order(names: list[str], r: int) -> list[str]:
    """The order of round `r`: rotated by one each round, so every variant runs in every position
    alike, and reversed every other cycle, so it follows each of the others too. Merely alternating
    A B C with C B A kept B in the middle of every round: two bit-identical models measured 1.024x
    [1.004-1.044] apart that way (BENCHMARKS.md, "The model we ship")."""
    k = r % len(names)
    order = names[k:] + names[:k]
    return order[::-1] if (r // len(names)) % 2 else order


def _ratio(numerator: list[float], denominator: list[float]) -> dict:
    """The geometric mean of per-round ratios, its 95 % interval (Student t over rounds) and a
    verdict only when the interval excludes 1."""
    value, ci = stats.ratio_ci(numerator, denominator)
    return {"value": round(value, 4), "ci": [round(ci[0], 4), round(ci[1], 4)], "verdict": stats.speed_verdict(ci),
            "rounds": len(numerator)}


def speedup(speed: dict[str, dict], variant: str, baseline: str) -> dict:
    """`variant`'s throughput over `baseline`'s, round by round (`_ratio`)."""
    return _ratio(speed[variant]["rounds"], speed[baseline]["rounds"])


def latency_speedup(speed: dict[str, dict], variant: str, baseline: str) -> dict | None:
    """How many times lower `variant`'s batch-1 latency is than `baseline`'s (> 1: faster), round by
    round; None for figures without per-round latencies."""
    if not (speed[variant].get("latency_rounds") and speed[baseline].get("latency_rounds")):
        return None
    return _ratio(speed[baseline]["latency_rounds"], speed[variant]["latency_rounds"])


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
