"""Weights only: INT8 weight constants, activations and computation left in floating point.

For models whose activations must stay float (or when no representative data exists): the model
shrinks about 4x and memory-bound layers speed up, with no calibration statistics at all.
"""
from __future__ import annotations

import nncf
import openvino as ov

from ..spec import Spec
from .nncf import ignored_scope, quiet


def compress_weights(model: ov.Model, spec: Spec) -> ov.Model:
    mode = {"int8_asym": nncf.CompressWeightsMode.INT8_ASYM, "int8_sym": nncf.CompressWeightsMode.INT8_SYM}
    scope = ignored_scope(spec)
    return quiet(nncf.compress_weights, model, mode=mode[spec.calibration.weights_mode],
                 **({"ignored_scope": scope} if scope is not None else {}))
