"""Issue #20: a calibration control on a real model. The PP-OCRv5 recogniser (a CNN backbone with an
SVTR transformer neck) quantized by Default as a CNN, and with `model_type = "transformer"` (NNCF's
transformer rules and SmoothQuant): accuracy on validation and held-out words, and speed of both INT8
models against FP32, measured in the same interleaved rounds.

Run: python examples/ocr/prepare.py && .venv/bin/python benchmarks/bench_controls.py [--rounds 10]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

import openvino as ov

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import load_average, machine_facts  # noqa: E402
from int8wb.calibration import deployment, load_spec, performance  # noqa: E402
from int8wb.calibration.inspection import inspect_model  # noqa: E402
from int8wb.calibration.runtime import DEFAULT, F32, INT8, config_for, read_model  # noqa: E402
from int8wb.calibration.spec import InferenceSpec  # noqa: E402
from int8wb.calibration.workflow import calibrate  # noqa: E402

SPEC = ROOT / "examples" / "ocr" / "ocr.calibration.toml"
OUT = ROOT / "benchmarks" / ".data" / "controls"  # the figures; the models go below the example (its own folder)
VARIANTS = {"cnn": {}, "transformer": {"model_type": "transformer"},
            "transformer, SmoothQuant off": {"model_type": "transformer", "matmul": -1.0}}


def run(name: str, controls: dict) -> dict:
    spec = load_spec(SPEC)
    spec.calibration.method = "default"
    spec.calibration.model_type = controls.get("model_type", "cnn")
    if "matmul" in controls:
        spec.calibration.smooth_quant.matmul = controls["matmul"]
    spec.output.dir = "calibrated/controls-" + name.replace(", ", "-").replace(" ", "-")
    spec.inference.duration, spec.inference.rounds = 1.0, 2  # speed is measured below, all together
    with contextlib.redirect_stdout(sys.stderr):
        return calibrate(spec, trust_custom_metrics=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per variant, over all rounds")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"{machine_facts()}; load average {load_average()}")
    results = {name: run(name, controls) for name, controls in VARIANTS.items()}
    spec = load_spec(SPEC)
    info = inspect_model(spec.model_path)
    fixed = deployment.shapes(spec, info)
    core = ov.Core()
    fp32 = deployment.reshape(read_model(core, str(spec.model_path)), fixed, spec)
    import numpy as np
    sample = {info.inputs[0].name: np.random.default_rng(0).standard_normal(fixed[info.inputs[0].name]).astype(np.float32)}
    int8_float = spec.inference.int8_float_precision
    variants = {"FP32 (strict f32)": (fp32, config_for(F32, spec.device), sample),
                "FP32 (device default)": (fp32, config_for(DEFAULT, spec.device), sample)}
    for name, res in results.items():
        variants[f"INT8 {name}"] = (read_model(core, res["output"]["model"]), config_for(INT8, spec.device, int8_float),
                                    sample)
    speed = performance.measure_interleaved(core, variants, spec.device,
                                            InferenceSpec(duration=args.duration, rounds=args.rounds))
    print(f"\nload average after: {load_average()}")
    print("\n| variant | validation exact match (drop [95 %]) | held-out (drop [95 %]) | quantize ops | "
          "layers that run INT8 | throughput median (min–max) | vs FP32 f32 [95 %] | vs FP32 default [95 %] |")
    print("|---|---|---|---|---|---|---|---|")
    for name in variants:
        s = speed[name]
        tp = f"{s['throughput']:.0f}/s ({min(s['rounds']):.0f}–{max(s['rounds']):.0f})"
        if not name.startswith("INT8"):
            print(f"| {name} | | | | | {tp} | | |")
            continue
        res = results[name.removeprefix("INT8 ")]
        h = res["heldout"]
        ratios = [performance.speedup(speed, name, base) for base in ("FP32 (strict f32)", "FP32 (device default)")]
        cells = [f"{r['value']:.2f}x [{r['ci'][0]:.2f}, {r['ci'][1]:.2f}]" for r in ratios]
        print(f"| {name} | {res['int8']['accuracy']:.4f} ({res['drop'] * 100:+.2f} pp [{res['drop_ci'][0] * 100:+.2f}, "
              f"{res['drop_ci'][1] * 100:+.2f}]) | {h['int8']:.4f} ({h['drop'] * 100:+.2f} pp [{h['drop_ci'][0] * 100:+.2f}, "
              f"{h['drop_ci'][1] * 100:+.2f}]) | {res['quantize_ops']} | {res['int8_layer_count']} | {tp} | "
              f"{cells[0]} | {cells[1]} |")
    fp = next(iter(results.values()))
    print(f"\nFP32: validation {fp['fp32']['accuracy']:.4f}, held-out {fp['heldout']['fp32']:.4f}; "
          f"calibration s: " + ", ".join(f"{n} {r['timing_s']['calibration']:.0f}" for n, r in results.items()))
    (OUT / "results.json").write_text(json.dumps({n: {k: r[k] for k in ("drop", "drop_ci", "heldout", "controls")}
                                                  for n, r in results.items()}, indent=2))


if __name__ == "__main__":
    main()
