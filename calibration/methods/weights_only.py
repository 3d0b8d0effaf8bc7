"""Weights only: INT8 weight constants, activations and computation left in floating point.

For models whose activations must stay float (or when no representative data exists): the model
shrinks about 4x and memory-bound layers speed up, with no calibration statistics at all.

Some CPUs quantize the activations of layers with compressed weights on the fly, in groups of 32
(seen on AMD EPYC with AVX512-VNNI, OpenVINO 2026.4): one outlier feature then zeroes its group's
neighbours, and an MLP that keeps 97 % in float fell to 38 %. The model carries the runtime option
that turns this off (`runtime_options` in its rt_info, which OpenVINO applies at every compile), so
the activations stay float wherever it is deployed, as the method promises and as we measure it.
"""
from __future__ import annotations

import nncf
import openvino as ov

from ..spec import Spec
from .nncf import ignored_scope, quiet

FLOAT_ACTIVATIONS = ("runtime_options", "DYNAMIC_QUANTIZATION_GROUP_SIZE")  # rt_info path, "0" = off


def compress_weights(model: ov.Model, spec: Spec) -> ov.Model:
    mode = {"int8_asym": nncf.CompressWeightsMode.INT8_ASYM, "int8_sym": nncf.CompressWeightsMode.INT8_SYM}
    scope = ignored_scope(spec)
    compressed = quiet(nncf.compress_weights, model, mode=mode[spec.calibration.weights_mode],
                       **({"ignored_scope": scope} if scope is not None else {}))
    compressed.set_rt_info("0", list(FLOAT_ACTIVATIONS))
    return compressed
