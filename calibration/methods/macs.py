"""Multiply-adds per layer: what a layer left in float costs, roughly (AccuracyAware's speed order)."""
from __future__ import annotations

import numpy as np
import openvino as ov

from .. import devices
from ..runtime import config_for


def layer_macs(core: ov.Core, fp32: ov.Model, sample: dict, names: set[str] | None = None) -> dict[str, int]:
    """Multiply-adds of every layer (or the named ones) on one real sample: what an FP32 layer
    costs, roughly. Shapes come from running the sample (models with dynamic shapes leave them
    unknown in the graph); a layer without weights counts its output size. Only the tensors
    needed are kept as extra outputs, so memory stays that of one inference."""
    model = fp32.clone()
    ops = [op for op in model.get_ordered_ops() if op.get_type_name() not in ("Constant", "Parameter", "Result")
           and op.get_output_size() == 1 and op.get_output_element_type(0).is_real()]
    if names is not None:
        wanted = {op.get_friendly_name() for op in ops if op.get_friendly_name() in names}
        wanted |= {op.input_value(0).get_node().get_friendly_name() for op in ops
                   if op.get_friendly_name() in wanted and op.get_type_name() == "MatMul"}
        ops = [op for op in ops if op.get_friendly_name() in wanted]
    model.add_outputs([op.output(0) for op in ops])
    values = core.compile_model(model, devices.REFERENCE, config_for("fp32_f32", devices.REFERENCE)).create_infer_request().infer(sample)
    # Result i reads the op whose shape values[i] has (add_outputs skips ops already read by one).
    shape = {port.get_node().input_value(0).get_node().get_friendly_name(): value.shape
             for port, value in zip(model.outputs, values.to_tuple())}
    macs = {}
    for op in ops:
        name, kind = op.get_friendly_name(), op.get_type_name()
        out = int(np.prod(shape.get(name, ())))
        if kind in ("Convolution", "GroupConvolution") and op.input(1).get_partial_shape().is_static:
            weights = list(op.input(1).get_shape())
            macs[name] = out * int(np.prod(weights[1:] if kind == "Convolution" else weights[2:]))
        elif kind == "MatMul":
            src = op.input_value(0)
            a = shape.get(src.get_node().get_friendly_name()) if src.get_node().get_output_size() == 1 else None
            k = (a[-2] if op.get_attributes().get("transpose_a") else a[-1]) if a is not None and len(a) >= 2 else 1
            macs[name] = out * int(k)
        else:
            macs[name] = out
    return macs if names is None else {k: v for k, v in macs.items() if k in names}
