"""Speed, per-layer runtime tables and sizes of any two IR models, side by side.

`compare_models(a, b)` answers "which of these two runs faster on this device, and where does the
time go": FP32 vs INT8, or two INT8 variants. No dataset is needed: both models get the same
random tensors, shaped like the model inputs (dynamic dimensions become 1). Each model is measured
as the device runs it by default; a model that is not quantized is also measured with
`INFERENCE_PRECISION_HINT: f32` (the true FP32 reference), because on AMX CPUs the default is bf16.
The result is plain data; `calibration.report.render_html` renders it as a page.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

from . import devices, machine
from .inspection import inspect_model
from .problems import CalibrationError, Cancelled, Problem
from .spec import InferenceSpec

A, B = "a", "b"
A_F32, B_F32 = "a_f32", "b_f32"
SIDES = (A, B)
# Variant key -> (model side, compile variant of calibration.runtime)
LABELS = {A: "A", B: "B", A_F32: "A (strict f32)", B_F32: "B (strict f32)"}
KIND = "comparison"  # result["kind"]: tells the report it is not a calibration result


def _settings(settings: InferenceSpec | dict | None) -> InferenceSpec:
    if isinstance(settings, InferenceSpec):
        return settings
    return InferenceSpec(**(settings or {}))


def _model_facts(path: Path) -> dict:
    info = inspect_model(path)
    problems = [p for p in _blocking(info)]
    if problems:
        raise CalibrationError(problems)
    return {
        "path": str(path),
        "name": path.name,
        "weights": str(info.bin_path),
        "size": os.path.getsize(path) + (info.bin_size or 0),
        "ir_version": info.ir_version,
        "precision": info.precision,
        "quantized": bool(info.quantized),
        "quantized_evidence": info.quantized_evidence or None,
        "derived_from": (info.derived or {}).get("source"),
        "inputs": [{"name": t.name, "shape": list(t.shape), "element_type": t.element_type} for t in info.inputs],
    }


def _blocking(info) -> list[Problem]:
    """What makes a model unreadable: missing or truncated weights (eligibility for INT8 does not matter)."""
    out = []
    if info.bin_size is None:
        out.append(Problem(f"weights not found: {info.bin_path}", path=str(info.path), rule="missing-weights",
                           fix="copy the .bin beside the .xml"))
    elif info.bin_expected_size and info.bin_size < info.bin_expected_size:
        out.append(Problem(f"weights are truncated: {info.bin_size} of {info.bin_expected_size} bytes",
                           path=str(info.path), rule="truncated-weights", fix="copy the .bin again"))
    return out


def random_inputs(model, seed: int = 0) -> dict[str, np.ndarray]:
    """One sample per model input: random data of the input's type, dynamic dimensions set to 1."""
    rng = np.random.default_rng(seed)
    data = {}
    for inp in model.inputs:
        ps = inp.get_partial_shape()
        shape = [1 if d.is_dynamic else d.get_length() for d in ps] if ps.rank.is_static else [1]
        dtype = inp.get_element_type().to_dtype()
        if np.issubdtype(dtype, np.floating):
            value = rng.standard_normal(shape).astype(dtype)
        elif dtype == np.bool_:
            value = rng.integers(0, 2, shape).astype(np.bool_)
        else:
            value = rng.integers(0, 10, shape).astype(dtype)
        data[inp.get_any_name()] = value
    return data


def _inputs_for(model, reference: dict[str, np.ndarray], path: Path) -> dict[str, np.ndarray]:
    """The reference data under this model's input names: by name, else by position (same shapes)."""
    names = [inp.get_any_name() for inp in model.inputs]
    if set(names) == set(reference):
        return {n: reference[n] for n in names}
    if len(names) == len(reference):
        return dict(zip(names, reference.values()))
    raise CalibrationError(Problem(
        f"the models' inputs differ: {', '.join(names)} vs {', '.join(reference)}", path=str(path),
        rule="input-mismatch", fix="compare two variants of the same model"))


def _static(model, data: dict[str, np.ndarray]):
    """A copy reshaped to the data's shapes, so both models run exactly the same static shapes."""
    import openvino as ov

    model = model.clone()
    if any(inp.get_partial_shape().is_dynamic for inp in model.inputs):
        model.reshape({inp.get_any_name(): ov.PartialShape(list(data[inp.get_any_name()].shape))
                       for inp in model.inputs})
    return model


def compare_models(a: str | os.PathLike, b: str | os.PathLike, device: str = "CPU",
                   settings: InferenceSpec | dict | None = None, *, strict_f32: bool = True, seed: int = 0,
                   progress: Callable[[float, str], None] | None = None,
                   cancel: Callable[[], bool] | None = None) -> dict:
    """Measures models `a` and `b` on `device` with the same random inputs and returns the comparison.

    `settings` is an `InferenceSpec` (or a dict of its fields: batch, streams, requests, duration).
    Keys of the speed figures: "a", "b" (as the device runs each by default) and, for a model that is
    not quantized and when `strict_f32`, "a_f32"/"b_f32". `speedup.b_vs_a` is B's throughput over A's.
    Raises CalibrationError for unreadable models or inputs that do not match."""
    import openvino as ov

    from . import performance
    from .runtime import DEFAULT, F32, config_for, default_precision, read_model

    started = time.time()
    settings = _settings(settings)
    paths = {A: Path(a).resolve(), B: Path(b).resolve()}
    for side, path in paths.items():
        if not path.is_file():
            raise CalibrationError(Problem(f"model not found: {path}", path=str(path), rule="model-missing",
                                           fix="fix the model path"))
    facts = {side: _model_facts(path) for side, path in paths.items()}
    core = ov.Core()
    if not devices.is_available(device, core.available_devices):
        raise CalibrationError(Problem(f"device {device} is not available here (available: "
                                       f"{', '.join(core.available_devices)})", rule="device-missing",
                                       fix="--device CPU"))
    models = {side: read_model(core, str(path)) for side, path in paths.items()}
    sample = random_inputs(models[A], seed)
    samples = {A: sample, B: _inputs_for(models[B], sample, paths[B])}
    try:
        models = {side: _static(m, samples[side]) for side, m in models.items()}
    except RuntimeError as exc:
        raise CalibrationError(Problem(f"the models' inputs do not match: {str(exc).strip().splitlines()[0]}",
                                       path=str(paths[B]), rule="input-mismatch",
                                       fix="compare two variants of the same model")) from None

    variants = {A: (A, DEFAULT), B: (B, DEFAULT)}
    if strict_f32 and devices.is_cpu(device):
        for side, key in ((A, A_F32), (B, B_F32)):
            if not facts[side]["quantized"]:
                variants[key] = (side, F32)
    order = [k for k in (A_F32, A, B_F32, B) if k in variants]
    steps = 3
    done = 0

    def step(phase: str) -> None:
        nonlocal done
        if cancel and cancel():
            raise Cancelled()
        if progress:
            progress(100.0 * done / steps, phase)
        done += 1

    step("speed (interleaved rounds)")
    speed = performance.measure_interleaved(
        core, {key: (models[variants[key][0]], config_for(variants[key][1], device), samples[variants[key][0]])
               for key in order}, device, settings, cancel=cancel)
    for key in order:
        speed[key]["config"] = config_for(variants[key][1], device)
    layers = {}
    for side in SIDES:
        step(f"per-layer profile: {LABELS[side]}")
        layers[side] = performance.profile(core, models[side], device, config_for(DEFAULT, device), samples[side])
    if progress:
        progress(100.0, "done")

    throughput = {k: round(v["throughput"], 2) for k, v in speed.items()}
    int8_count = {s: sum(r["runtimePrecision"] in ("u8", "i8") for r in layers[s]) for s in SIDES}
    ratios = {"b_vs_a": performance.speedup(speed, B, A)}
    if A_F32 in throughput:
        ratios["b_vs_a_f32"] = performance.speedup(speed, B, A_F32)
    speedup = {k: r["value"] for k, r in ratios.items()}
    notes = []
    if ratios["b_vs_a"]["verdict"] == "slower":
        notes.append(f"B is slower than A on {device}: {speedup['b_vs_a']:.2f}x its throughput (95 % interval "
                     f"{ratios['b_vs_a']['ci'][0]:.2f}-{ratios['b_vs_a']['ci'][1]:.2f}x over interleaved rounds).")
    for s in SIDES:
        if facts[s]["quantized"] and not int8_count[s]:
            notes.append(f"{LABELS[s]} is quantized but no layer runs in INT8 on {device}.")
    return {
        "kind": KIND,
        "device": device,
        "device_default_precision": default_precision(core, device),
        "models": facts,
        "labels": {k: LABELS[k] for k in order},
        "variants": order,
        "inputs": {name: {"shape": list(v.shape), "dtype": str(v.dtype)} for name, v in sample.items()},
        "seed": seed,
        "throughput": throughput,
        "latency_ms": {k: round(v["latency_ms"]["median"], 3) for k, v in speed.items()},
        "speed": speed,
        "speedup": speedup,
        "speedup_ci": ratios,
        "machine": machine.describe(),
        "model_size": {s: facts[s]["size"] for s in SIDES},
        "layers": layers,
        "layer_summary": {s: performance.summarise(rows) for s, rows in layers.items()},
        "int8_layer_count": int8_count,
        "settings": settings.model_dump(),
        "timing_s": {"total": round(time.time() - started, 3)},
        "versions": _versions(),
        "notes": notes,
    }


def _versions() -> dict:
    from .workflow import versions

    return versions()
