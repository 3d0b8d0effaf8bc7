"""AccuracyAware at the device's default float precision, reverted layers marked strict f32 (issue #17),
against the same spec with every float layer in strict f32.

    python examples/ocr/prepare.py && .venv/bin/python benchmarks/bench_precise_aa.py

Calibrates the spec twice through the product's workflow (`int8_float_precision` "default", then "f32"),
prints what each search ended with (layers left in float, validations, drops, layers the saved IR marks
strict f32, runtime precisions), then measures the speed of FP32-as-run (device default) and both INT8
models in interleaved rounds: batch-1 latency and throughput, each compiled as its spec says.
`--reuse` skips the calibrations and measures the models already in `--out`.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import openvino as ov

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from int8wb.calibration import load_spec  # noqa: E402
from int8wb.calibration.methods import accuracy_aware  # noqa: E402
from int8wb.calibration.performance import measure_interleaved, speedup  # noqa: E402
from int8wb.calibration.precise import precise_layers  # noqa: E402
from int8wb.calibration.problems import CalibrationError  # noqa: E402
from int8wb.calibration.runtime import DEFAULT, INT8, config_for  # noqa: E402
from int8wb.calibration.workflow import calibrate  # noqa: E402

SPEC = ROOT / "examples" / "ocr" / "ocr.calibration.toml"
PRECISIONS = ("default", "f32")


def run(spec_path: Path, precision: str, out: Path, confidence: float | None, validation: int | None = None) -> dict:
    spec = load_spec(spec_path)
    spec.inference.int8_float_precision = precision
    if confidence is not None:
        spec.calibration.confidence = confidence
    if validation:
        spec.validation.subset = validation
    spec.output.dir = str(out / precision)  # below the spec's folder, or the workflow refuses it
    t0 = time.perf_counter()
    try:
        result = calibrate(spec, trust_custom_metrics=True)
    except CalibrationError as exc:  # over budget: the attempt is kept aside, its result beside it
        if exc.problems[0].rule not in ("budget-unreachable", "budget-not-confirmed"):
            raise
        print(f"{precision}: {exc.problems[0].message}")
        kept = next((out / precision).glob("*.over-budget.json"))
        result = json.loads(kept.read_text())
    result["wall_s"] = time.perf_counter() - t0
    tmp = out / f".{precision}.summary.json.tmp"
    tmp.write_text(json.dumps(summary(result), indent=1))
    tmp.replace(out / f"{precision}.summary.json")  # a run cut short leaves no half-written summary
    return result


def summary(result: dict) -> dict:
    aa = result.get("accuracy_aware") or {}
    return {"fp32_layers": len(result.get("fp32_layers") or []), "quantized_layers": aa.get("quantized_layers"),
            "validations": (result.get("search") or {}).get("validations"),
            "fp32_accuracy": result["fp32"]["accuracy"], "int8_accuracy": result["int8"]["accuracy"],
            "drop": result["drop"], "drop_ci": result.get("drop_ci"),
            "heldout_drop": (result.get("heldout") or {}).get("drop"),
            "heldout_drop_ci": (result.get("heldout") or {}).get("drop_ci"),
            "precise_in_ir": len(precise_layers(result["output"]["model"])),
            "runtime_precisions": dict(Counter(r["runtimePrecision"] for r in result["layers"][INT8])),
            "fp32_macs": sum(layer.get("macs", 0) for layer in result.get("fp32_layers") or []),
            "quantized_macs": max((p["macs"] for p in aa.get("probes") or []), default=0),
            "cut_short": (result.get("search") or {}).get("cut_short"),
            "float_precision": result["deployment"]["float_precision"],
            "confidence": result["controls"].get("confidence"),
            "calibration_s": result["timing_s"]["calibration"], "wall_s": result.get("wall_s"),
            "model": result["output"]["model"]}


def speed(spec_path: Path, out: Path, rounds: int, seconds: float) -> None:
    spec = load_spec(spec_path)
    spec.inference.duration, spec.inference.rounds = rounds * seconds, rounds
    core = ov.Core()
    fp32 = core.read_model(str(spec.model_path))
    if spec.deployment.shape:
        fp32.reshape({fp32.input(0): spec.deployment.shape})
    # Speed does not depend on the values: a zero input of the deployment shape.
    sample = {fp32.input(0).get_any_name(): np.zeros(list(fp32.input(0).get_shape()), np.float32)}
    variants = {DEFAULT: (fp32, config_for(DEFAULT, spec.device), sample)}
    for precision in PRECISIONS:
        if not (out / f"{precision}.summary.json").exists():  # --only the other one
            continue
        model = json.loads((out / f"{precision}.summary.json").read_text())["model"]
        variants[f"int8 ({precision})"] = (core.read_model(model), config_for(INT8, spec.device, precision), sample)
    got = measure_interleaved(core, variants, spec.device, spec.inference)
    for name, record in got.items():
        ratio = speedup(got, name, DEFAULT) if name != DEFAULT else None
        print(f"{name:16} batch-1 latency {record['latency_ms']['median']:.2f} ms  throughput "
              f"{record['throughput']:.1f}/s  rounds {record['rounds']}"
              + (f"  vs FP32 default {ratio['value']:.2f}x {ratio['ci']}" if ratio else ""))


def one_at_a_time(order, without, exhausted) -> int:
    """The give-back pass before chunks (commit 2fc2dea): one group per validation."""
    for i, group in enumerate(order):
        if exhausted():
            return len(order) - i
        without([group])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=SPEC)
    parser.add_argument("--out", type=Path, default=SPEC.parent / ".cache" / "precise")
    parser.add_argument("--only", choices=PRECISIONS, help="calibrate at this precision only")
    parser.add_argument("--reuse", action="store_true", help="measure the models already calibrated in --out")
    parser.add_argument("--confidence", type=float, help="override [calibration] confidence (0: the drop alone)")
    parser.add_argument("--validation", type=int, help="validate on this many of the spec's validation samples")
    parser.add_argument("--one-at-a-time", action="store_true",
                        help="the give-back pass as before chunks: one group per validation")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--speed-seconds", type=float, default=2.0)
    args = parser.parse_args()
    args.out = args.out.resolve()  # the workflow resolves a relative output dir against the spec
    args.out.mkdir(parents=True, exist_ok=True)
    if args.one_at_a_time:
        accuracy_aware.give_back = one_at_a_time
    if not args.reuse:
        for precision in PRECISIONS:
            if args.only in (None, precision):
                run(args.spec.resolve(), precision, args.out, args.confidence, args.validation)
    for precision in PRECISIONS:
        if (args.out / f"{precision}.summary.json").exists():
            print(precision, (args.out / f"{precision}.summary.json").read_text())
    speed(args.spec.resolve(), args.out, args.rounds, args.speed_seconds)


if __name__ == "__main__":
    main()
