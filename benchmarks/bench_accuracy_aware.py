"""Issue goal: our AccuracyAware vs nncf.quantize_with_accuracy_control on PP-OCRv5 rec
(300 calibration + 1,200 validation word images, exact match, max_drop 0.01), in one run:
wall-time ratio ≤ 0.5, our drop ≤ budget, our model's throughput ≥ NNCF's model's. `--spec` takes
any AccuracyAware spec, e.g. the text detector scored by voc_map50:
    .venv/bin/python benchmarks/bench_accuracy_aware.py --spec examples/ocr_det/ocr_det-aa.calibration.toml

Both get the same preloaded samples, the same FP32 model, preset, target device and budget.
Timed for both: FP32 baseline validation + the method itself (NNCF computes its own baseline).
Run: python examples/ocr/prepare.py && .venv/bin/python benchmarks/bench_accuracy_aware.py
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import nncf
import numpy as np
import openvino as ov

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from int8wb.calibration import deployment, inspect_model, load_spec  # noqa: E402
from int8wb.calibration.methods.accuracy_aware import calibrate_accuracy_aware  # noqa: E402
from int8wb.calibration.conversion import ir_of  # noqa: E402
from int8wb.calibration.custom_metrics import sample_of  # noqa: E402
from int8wb.calibration.datasets import open_dataset  # noqa: E402
from int8wb.calibration.evaluation import evaluate  # noqa: E402
from int8wb.calibration.methods.nncf import quiet  # noqa: E402
from int8wb.calibration.metrics import degradation, make_metric  # noqa: E402
from int8wb.calibration.performance import measure_interleaved, speedup  # noqa: E402
from int8wb.calibration.runtime import F32, INT8, config_for, read_model  # noqa: E402

SPEC = ROOT / "examples" / "ocr" / "ocr.calibration.toml"
SAVE = ROOT / "examples" / "ocr" / ".cache" / "bench"
TOLERANCE = 1e-9  # 0.98 - 0.97 is 0.010000000000000009 in floats: a drop at the budget meets it


def alternate_speed(core: ov.Core, models: dict, spec, sample: dict, seconds: float, rounds: int) -> dict:
    """Median throughput per model over interleaved rounds (the engine's own measurement), so that
    a busy spell on a shared machine hits both alike; prints each round and the ratio's interval."""
    config = config_for(INT8, spec.device, spec.inference.int8_float_precision)
    settings = spec.inference.model_copy(update={"duration": seconds * rounds, "rounds": rounds})
    speed = measure_interleaved(core, {name: (model, config, sample) for name, model in models.items()},
                                spec.device, settings)
    for name, figures in speed.items():
        print(f"  {name}: " + " ".join(f"{v:.1f}" for v in figures["rounds"]) + f"  median {figures['throughput']:.1f}/s")
    first, second = list(models)
    ratio = speedup(speed, first, second)
    print(f"  {first}/{second}: {ratio['value']:.2f}x, 95 % interval {ratio['ci'][0]:.2f}-{ratio['ci'][1]:.2f}x")
    return {name: figures["throughput"] for name, figures in speed.items()}


def nncf_accuracy_control(fp32: ov.Model, cal, subset: list[int], val, val_idx: list[int], metric,
                          max_drop: float, subset_size: int) -> ov.Model:
    """`nncf.quantize_with_accuracy_control` on the same samples, metric, preset, device and budget.
    Its validation items are sample indices, scored by the engine's own tally (per-sample metrics give
    NNCF their scores for its ranking; a dataset-level one, such as mAP, gives the figure alone)."""
    calibration = nncf.Dataset([cal.load(i) for i in subset])
    validation = nncf.Dataset(list(val_idx), lambda i: val.load(i))

    def validation_fn(compiled, items):
        items = list(items)
        tally = metric.tally(len(items))
        for slot, i in enumerate(items):
            tally.add(slot, np.array(compiled(val.load(i), share_inputs=False)[0]), sample_of(val, i), None)
        tallied = tally.finish()
        scores = tallied.scores
        per_sample = isinstance(scores, np.ndarray) and scores.ndim == 1  # mAP: a resampling, not scores
        return (tallied.accuracy, list(scores)) if per_sample else tallied.accuracy

    return quiet(nncf.quantize_with_accuracy_control, fp32, calibration, validation,
                 validation_fn=validation_fn, max_drop=max_drop, drop_type=nncf.DropType.ABSOLUTE,
                 preset=nncf.QuantizationPreset.PERFORMANCE, target_device=nncf.TargetDevice.CPU,
                 subset_size=subset_size)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spec", default=str(SPEC))
    parser.add_argument("--max-drop", type=float, default=0.01)
    parser.add_argument("--confidence", type=float, default=None,
                        help="override [calibration] confidence (0: accept on the measured drop, NNCF's own rule)")
    parser.add_argument("--speed-seconds", type=float, default=5.0)
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--ours-only", action="store_true", help="skip NNCF (a quick look at ours alone)")
    parser.add_argument("--int8-float", choices=["default", "f32"], default=None,
                        help="override [inference] int8_float_precision")
    parser.add_argument("--save", default=str(SAVE), help="both results are saved here (ours.xml, nncf.xml)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="speed: alternate the two models this many rounds, report medians")
    parser.add_argument("--retime", action="store_true", help="only re-measure the speed of the saved models")
    args = parser.parse_args()
    nncf.set_log_level(logging.ERROR)

    spec = load_spec(args.spec)
    spec.calibration.max_drop = args.max_drop
    if args.confidence is not None:
        spec.calibration.confidence = args.confidence
    if args.int8_float:
        spec.inference.int8_float_precision = args.int8_float
    xml = ir_of(spec)  # an ONNX model is converted (once, cached) as the engine does
    fixed = deployment.shapes(spec, inspect_model(xml))  # both methods run at the deployment shape
    info = deployment.deployed(inspect_model(xml), fixed)
    cal = open_dataset(spec, info)
    val = open_dataset(spec, info, "validation")
    held = open_dataset(spec, info, "evaluation") if spec.evaluation else None
    subset, val_idx = cal.subset_indices(), val.subset_indices()
    for ds, idx in ((cal, subset), (val, val_idx)):  # both methods get decoded samples
        for i in idx:
            ds.load(i)
    metric = make_metric(spec, trusted=True)
    core = ov.Core()
    sample = cal.load(subset[0])
    save = Path(args.save)
    if args.retime:
        models = {name: core.read_model(str(save / f"{name}.xml")) for name in ("ours", "nncf")}
        speed = alternate_speed(core, models, spec, sample, args.speed_seconds, args.rounds)
        print(f"throughput ratio ours/NNCF {speed['ours'] / speed['nncf']:.2f}")
        return
    print(f"model {info.path}: calibration {len(subset)}, validation {len(val_idx)}, max_drop {args.max_drop}, "
          f"confidence {spec.calibration.confidence}")

    # --- ours
    fp32 = deployment.reshape(read_model(core, str(xml)), fixed, spec)
    t0 = time.perf_counter()
    base = evaluate(core.compile_model(fp32, spec.device, config_for(F32, spec.device)), val, val_idx, metric)
    outcome = calibrate_accuracy_aware(core, fp32, spec, cal, subset, (val, val_idx), metric, base, 0)
    ours_s = time.perf_counter() - t0
    print(f"ours: {ours_s:.1f} s, {len(outcome.fp32_layers)} of {outcome.quantized_units} layers in FP32, "
          f"{len(outcome.probes)} validations, ranking on {outcome.search.get('ranking_samples')} samples")

    if args.ours_only:
        compiled = core.compile_model(outcome.model, spec.device, config_for(INT8, spec.device,
                                                                            spec.inference.int8_float_precision))
        acc = evaluate(compiled, val, val_idx, metric).accuracy
        print(f"ours only: validation {acc:.4f} (FP32 {base.accuracy:.4f}), drop {base.accuracy - acc:+.4f}; "
              f"FP32 layers {[layer['name'] for layer in outcome.fp32_layers]}")
        for probe in outcome.probes:
            print(f"  probe: {probe['fp32_layers']:3d} layers, {probe['macs'] / 1e6:8.1f} MMAC in FP32 -> "
                  f"{probe['accuracy']:.4f} {'ok' if probe['ok'] else ''}")
        save.mkdir(parents=True, exist_ok=True)
        ov.save_model(outcome.model, str(save / "ours.xml"), compress_to_fp16=False)
        return

    # --- NNCF
    fp32 = deployment.reshape(read_model(core, str(xml)), fixed, spec)
    t0 = time.perf_counter()
    theirs = nncf_accuracy_control(fp32, cal, subset, val, val_idx, metric, args.max_drop, len(subset))
    nncf_s = time.perf_counter() - t0
    print(f"nncf: {nncf_s:.1f} s")

    # --- independent evaluation and speed of both results, the same way
    figures = {"ours_s": ours_s, "nncf_s": nncf_s, "ratio": ours_s / nncf_s, "fp32": base.accuracy,
               "fp32_layers_ours": len(outcome.fp32_layers), "quantized_layers": outcome.quantized_units,
               "validations_ours": len(outcome.probes)}
    save.mkdir(parents=True, exist_ok=True)
    for name, model in (("ours", outcome.model), ("nncf", theirs)):
        ov.save_model(model, str(save / f"{name}.xml"), compress_to_fp16=False)
        compiled = core.compile_model(model, spec.device, config_for(INT8, spec.device, spec.inference.int8_float_precision))
        acc = evaluate(compiled, val, val_idx, metric).accuracy
        figures[f"{name}_accuracy"] = acc
        figures[f"{name}_drop"] = degradation(metric, base.accuracy, acc)[0]
        figures[f"{name}_fq"] = sum(op.get_type_name() == "FakeQuantize" for op in model.get_ops())
        if held is not None:
            h_idx = held.subset_indices()
            f_h = evaluate(core.compile_model(deployment.reshape(read_model(core, str(xml)), fixed, spec), spec.device,
                                              config_for(F32, spec.device)), held, h_idx, metric).accuracy
            figures[f"{name}_heldout_drop"] = degradation(metric, f_h, evaluate(compiled, held, h_idx, metric).accuracy)[0]
    print(f"speed: {args.rounds} alternating rounds of {args.speed_seconds:g} s each")
    speed = alternate_speed(core, {"ours": outcome.model, "nncf": theirs}, spec, sample, args.speed_seconds, args.rounds)
    figures.update({f"{name}_throughput": value for name, value in speed.items()})
    figures["throughput_ratio"] = figures["ours_throughput"] / figures["nncf_throughput"]
    print("| | ours | NNCF |\n|---|---|---|")
    print(f"| wall time (baseline + method) | {ours_s:.1f} s | {nncf_s:.1f} s |")
    print(f"| validation {metric.name} (FP32 {base.accuracy:.4f}) | {figures['ours_accuracy']:.4f} | "
          f"{figures['nncf_accuracy']:.4f} |")
    print(f"| drop (budget {args.max_drop}) | {figures['ours_drop']:+.4f} | {figures['nncf_drop']:+.4f} |")
    if held is not None:
        print(f"| held-out drop | {figures['ours_heldout_drop']:+.4f} | {figures['nncf_heldout_drop']:+.4f} |")
    print(f"| FakeQuantize layers left | {figures['ours_fq']} | {figures['nncf_fq']} |")
    print(f"| throughput, batch {spec.inference.batch}, median | {figures['ours_throughput']:.1f}/s | "
          f"{figures['nncf_throughput']:.1f}/s |")
    print(f"\nratio ours/NNCF wall time {figures['ratio']:.2f} (goal ≤ 0.5); throughput ratio "
          f"{figures['throughput_ratio']:.2f} (goal ≥ 1); our drop ≤ budget: {figures['ours_drop'] <= args.max_drop + TOLERANCE}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
