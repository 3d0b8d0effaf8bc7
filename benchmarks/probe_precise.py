"""Which route keeps one layer in strict f32 while the CPU runs the rest of the model in bf16?

    .venv/bin/python benchmarks/probe_precise.py

A two-convolution model is compiled with INFERENCE_PRECISION_HINT bf16 and the runtime precision of
each convolution is read from the compiled model, for four ways of marking `conv2`:
- none;
- a plain string in the node's rt_info from Python (`precise_0`, `DisablePrecisionConversion_0`):
  Python's RTMap only takes strings and integers, and the plugin reads a typed attribute, so the
  first is ignored and the second makes compilation fail;
- the IR attribute `<attribute name="precise" version="0"/>` in the layer's `<rt_info>` (what
  `ov::disable_fp16_compression` serializes to): the IR reader builds the typed attribute.
Prints one line per route; the last one is the route that works (measured in BENCHMARKS.md).
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np
import openvino as ov
from openvino import opset13 as ops


def model() -> ov.Model:
    rng = np.random.default_rng(0)
    x = ops.parameter([1, 64, 32, 32], np.float32, name="x")
    out = x
    for name in ("conv1", "conv2"):
        w = ops.constant((rng.random((64, 64, 3, 3)) * 0.1).astype(np.float32))
        out = ops.convolution(out, w, [1, 1], [1, 1], [1, 1], [1, 1])
        out.set_friendly_name(name)
        out = ops.relu(out)
    return ov.Model([out], [x])


def precisions(core: ov.Core, m) -> dict[str, str]:
    compiled = core.compile_model(m, "CPU", {"INFERENCE_PRECISION_HINT": "bf16"})
    return {op.get_friendly_name(): op.get_rt_info()["runtimePrecision"].astype(str)
            for op in compiled.get_runtime_model().get_ops() if op.get_friendly_name() in ("conv1", "conv2")}


def main() -> None:
    core = ov.Core()
    print("no mark:", precisions(core, model()))
    for key in ("precise_0", "DisablePrecisionConversion_0"):
        m = model()
        next(op for op in m.get_ops() if op.get_friendly_name() == "conv2").get_rt_info()[key] = ""
        try:
            got = precisions(core, m)
        except RuntimeError as exc:  # the plugin casts the value to its typed attribute
            got = "compile fails: " + str(exc).strip().splitlines()[-1]
        print(f"Python rt_info[{key!r}] = '':", got)
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "m.xml"
        ov.save_model(model(), str(xml), compress_to_fp16=False)
        text = xml.read_text()
        layer = re.search(r'<layer id="\d+" name="conv2" type="Convolution"[^>]*>', text).group(0)
        xml.write_text(text.replace(layer, layer + '\n<rt_info><attribute name="precise" version="0" /></rt_info>'))
        print('IR <attribute name="precise" version="0"/>:', precisions(core, core.read_model(str(xml))))


if __name__ == "__main__":
    main()
