"""The comparison of a calibration result as plain rows, for any front end to render."""
from __future__ import annotations

from .runtime import DEFAULT, F32, INT8, VARIANT_LABELS


def _mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB"


def summary_rows(result: dict) -> list[tuple[str, str, str, str]]:
    """(what, FP32, INT8, change) rows of the headline comparison."""
    fp32, int8 = result["fp32"]["accuracy"], result["int8"]["accuracy"]
    size = result["model_size"]
    return [
        (f"accuracy ({result['metric']})", f"{fp32:.4f}", f"{int8:.4f}", f"drop {result['drop'] * 100:+.2f} pp"),
        ("model size", _mib(size["fp32"]), _mib(size["int8"]), f"{size['int8'] / size['fp32']:.2f}x"),
    ]


def speed_rows(result: dict) -> list[tuple[str, str, str, str]]:
    """(variant, throughput, median latency, INT8 speedup against it) rows."""
    rows = []
    for variant in (F32, DEFAULT, INT8):
        label = VARIANT_LABELS[variant]
        if variant == DEFAULT:
            label += f" [{result.get('device_default_precision', '?')}]"
        ratio = {F32: result["speedup"]["vs_f32"], DEFAULT: result["speedup"]["vs_default"]}.get(variant)
        rows.append((label, f"{result['throughput'][variant]:.1f}/s", f"{result['latency_ms'][variant]:.3f} ms",
                     f"{ratio:.2f}x" if ratio is not None else ""))
    return rows


def layer_rows(result: dict, variant: str = INT8) -> list[tuple[str, str, str, str, str]]:
    """(layer, type, outputPrecisions, runtimePrecision, time) of one variant's runtime model."""
    return [(r["name"], r["type"], r["outputPrecisions"], r["runtimePrecision"], f"{r['time_us']:.1f} us")
            for r in result["layers"][variant]]
