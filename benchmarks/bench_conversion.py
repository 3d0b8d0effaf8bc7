"""Issue #16: does the conversion route change the INT8 result? The PP-OCRv5 recogniser's ONNX file turned
into IR three ways, each calibrated by Default with the example's spec (its deployment shape, resize,
metric and data): `ov.convert_model` (what the product does with an .onnx `model`), `core.read_model` +
`save_model`, and the example's own prepare.py route (read_model, reshape, ConstantFolding).

Run: python examples/ocr/prepare.py && .venv/bin/python benchmarks/bench_conversion.py
"""
from __future__ import annotations

import contextlib
import shutil
import sys
from pathlib import Path

import openvino as ov

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import load_average, machine_facts  # noqa: E402
from int8wb.calibration import load_spec  # noqa: E402
from int8wb.calibration.workflow import calibrate  # noqa: E402

OCR = ROOT / "examples" / "ocr"
WORK = OCR / "calibrated" / "routes"  # below the example: its own folder, git-ignored


def routes(onnx: Path) -> dict[str, Path]:
    core = ov.Core()
    WORK.mkdir(parents=True, exist_ok=True)
    out = {}
    ov.save_model(ov.convert_model(str(onnx)), str(WORK / "convert_model.xml"), compress_to_fp16=False)
    out["ov.convert_model + save_model"] = WORK / "convert_model.xml"
    ov.save_model(core.read_model(str(onnx)), str(WORK / "read_model.xml"), compress_to_fp16=False)
    out["core.read_model + save_model"] = WORK / "read_model.xml"
    out["prepare.py (read_model, reshape, ConstantFolding)"] = OCR / "model" / "rec.xml"
    return out


def main() -> None:
    onnx = OCR / ".cache" / "rec.onnx"
    if not onnx.is_file():
        raise SystemExit("run `python examples/ocr/prepare.py` first")
    print(f"{machine_facts()}; load average {load_average()}")
    rows = []
    for name, xml in routes(onnx).items():
        spec = load_spec(OCR / "ocr.calibration.toml")
        spec.model = str(xml)
        spec.calibration.method = "default"  # the example itself runs AccuracyAware
        spec.output.dir = f"calibrated/routes/out-{xml.stem}"
        spec.inference.duration, spec.inference.rounds = 2.0, 4
        with contextlib.redirect_stdout(sys.stderr):
            r = calibrate(spec, trust_custom_metrics=True)
        ops = sum(1 for _ in ov.Core().read_model(str(xml)).get_ops())
        rows.append((name, ops, r))
    print("\n| route | IR operations | FP32 exact match | INT8 (Default) | drop [95 %] | held-out drop [95 %] | quantize ops | "
          "layers that run INT8 |")
    print("|---|---|---|---|---|---|---|---|")
    for name, ops, r in rows:
        h = r["heldout"]
        print(f"| {name} | {ops} | {r['fp32']['accuracy']:.4f} | {r['int8']['accuracy']:.4f} | {r['drop'] * 100:+.2f} pp "
              f"[{r['drop_ci'][0] * 100:+.2f}, {r['drop_ci'][1] * 100:+.2f}] | {h['drop'] * 100:+.2f} pp "
              f"[{h['drop_ci'][0] * 100:+.2f}, {h['drop_ci'][1] * 100:+.2f}] | {r['quantize_ops']} | "
              f"{r['int8_layer_count']} |")
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
