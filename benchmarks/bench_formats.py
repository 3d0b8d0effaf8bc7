"""Issue #16: the two conversion routes on every non-ONNX format. The digits classifier of
tests/fixtures/formats/ (TFLite, SavedModel, Paddle .pdmodel) turned into IR by `ov.convert_model` (what the
product does) and by `core.read_model` + `save_model`, each calibrated by Default on 100 held-out digits
and measured on the other 100.

Run: .venv/bin/python benchmarks/bench_formats.py
"""
from __future__ import annotations

import contextlib
import sys
import tempfile
from pathlib import Path

import numpy as np
import openvino as ov

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import load_average, machine_facts  # noqa: E402
from int8wb.calibration import load_spec  # noqa: E402
from int8wb.calibration.workflow import calibrate  # noqa: E402

FORMATS = ROOT / "tests" / "fixtures" / "formats"
MODELS = {"digits.tflite": "nhwc", "digits_savedmodel": "nhwc", "digits.pdmodel": "nchw"}
SPEC = """model = "{model}"
[dataset]
kind = "npz"
path = "{layout}-calibration.npz"
[validation]
kind = "npz"
path = "{layout}-validation.npz"
[accuracy]
metric = "top1"
[calibration]
only_if_faster = false
[inference]
duration = 0.2
rounds = 2
"""


def main() -> None:
    print(f"{machine_facts()}; load average {load_average()}")
    with np.load(FORMATS / "digits.npz") as data:
        x, labels = (data["pixels"] / 16.0).astype(np.float32), data["labels"].astype(np.int64)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for layout, xs in (("nhwc", x[:, :, :, None]), ("nchw", x[:, None])):
            np.savez(work / f"{layout}-calibration.npz", inputs=xs[:100], labels=labels[:100])
            np.savez(work / f"{layout}-validation.npz", inputs=xs[100:], labels=labels[100:])
        for name, layout in MODELS.items():
            for route in ("ov.convert_model", "core.read_model"):
                read = ov.convert_model if route == "ov.convert_model" else ov.Core().read_model
                xml = work / f"{name}-{route}.xml"
                ov.save_model(read(str(FORMATS / name)), str(xml), compress_to_fp16=False)
                spec = work / f"{xml.stem}.calibration.toml"
                spec.write_text(SPEC.format(model=xml.name, layout=layout))
                with contextlib.redirect_stdout(sys.stderr):
                    r = calibrate(load_spec(spec))
                ops = sum(1 for _ in ov.Core().read_model(str(xml)).get_ops())
                rows.append((name, route, ops, r))
    print("\n| model | route | IR operations | FP32 top-1 | INT8 (Default) | drop | quantize ops |")
    print("|---|---|---|---|---|---|---|")
    for name, route, ops, r in rows:
        print(f"| {name} | {route} | {ops} | {r['fp32']['accuracy']:.3f} | {r['int8']['accuracy']:.3f} | "
              f"{r['drop'] * 100:+.1f} pp | {r['quantize_ops']} |")


if __name__ == "__main__":
    main()
