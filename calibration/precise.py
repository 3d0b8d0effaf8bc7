"""Layers kept in strict f32 while the device runs the rest of the model in its default float precision.

On CPUs with bf16 (AMX) OpenVINO runs float layers in bf16 unless told otherwise, so a layer that
AccuracyAware puts back in float is not restored to FP32 at the device default: its weights and
arithmetic are rounded to bf16 on top of the INT8 errors around it. OpenVINO keeps a node in its
original precision when it carries the typed runtime attribute behind `ov::disable_fp16_compression`.
Python's rt_info only stores strings and integers, so the one route (benchmarks/probe_precise.py) is
the IR: the layer's `<rt_info><attribute name="precise" version="0"/></rt_info>`, which the IR reader
turns into the typed attribute `DisablePrecisionConversion`; `save_model` writes that back under its own
name, which the reader takes too. A user who compiles the saved model with default settings then gets
the precisions that were measured.
"""
from __future__ import annotations

import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import openvino as ov

from . import devices
from .runtime import default_precision

ATTRIBUTE = "precise"  # what ov::disable_fp16_compression serializes to (version 0)
MARKS = (ATTRIBUTE, "DisablePrecisionConversion")  # ... and what save_model writes after reading it
RT_KEY = "DisablePrecisionConversion_0"  # the typed attribute's key in a node's Python rt_info


def keep_precise(model: ov.Model, names: set[str] | list[str]) -> ov.Model:
    """A copy of `model` whose layers named `names` (friendly names) run in strict f32 whatever the
    device default. Raises KeyError naming the layers the model does not have (a misspelt name would
    otherwise silently run in bf16)."""
    wanted = set(names)
    with tempfile.TemporaryDirectory(prefix="int8wb-precise-") as tmp:
        xml = Path(tmp) / "model.xml"
        ov.serialize(model, str(xml))  # as is: save_model would drop rt_info such as fused_names
        root = ET.parse(xml).getroot()
        found = set()
        for layer in root.iter("layer"):
            if layer.get("name") in wanted:
                found.add(layer.get("name"))
                _mark(layer)
        missing = wanted - found
        if missing:
            raise KeyError(f"no layer named {', '.join(sorted(missing))} in the model")
        weights = np.fromfile(xml.with_suffix(".bin"), dtype=np.uint8)
        # Read from memory, not the temporary files: the weights must outlive the folder.
        return ov.Core().read_model(ET.tostring(root, encoding="unicode"), ov.Tensor(weights))


def _mark(layer: ET.Element) -> None:
    """Add the attribute to the layer's own <rt_info> (created after <data> when absent), keeping
    what it holds already (fused names, dequantization marks)."""
    info = layer.find("rt_info")
    if info is None:
        info = ET.Element("rt_info")
        data = layer.find("data")
        layer.insert(list(layer).index(data) + 1 if data is not None else 0, info)
    if not any(a.get("name") in MARKS for a in info.findall("attribute")):
        ET.SubElement(info, "attribute", {"name": ATTRIBUTE, "version": "0"})


def precise_layers(model: ov.Model | str | Path) -> list[str]:
    """Names of the layers kept in strict f32, of a model in memory (graph order) or an IR file
    (file order)."""
    if isinstance(model, ov.Model):
        return [op.get_friendly_name() for op in model.get_ordered_ops() if RT_KEY in op.get_rt_info()]
    return [layer.get("name") for layer in ET.parse(model).getroot().iter("layer")
            if any(a.get("name") in MARKS for a in layer.findall("rt_info/attribute"))]


def lowered(core: ov.Core, device: str, int8_float: str) -> bool:
    """Whether float layers of an INT8 model compiled as the spec says run below f32 (bf16 on AMX
    CPUs, f16 on GPUs): then layers put back in float must be marked to be float in earnest."""
    if int8_float == "f32" and devices.is_cpu(device):
        return False
    return default_precision(core, device) in ("bf16", "f16")
