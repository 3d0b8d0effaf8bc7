"""int8-workbench's engine: INT8 calibration of OpenVINO models, with no editor protocol in sight.

Heavy modules (openvino, nncf) load on first use, so front ends that only check specs stay light.
"""
from .inspection import ModelInfo, inspect_model
from .problems import CalibrationError, Cancelled, Problem
from .spec import Spec, load_spec

__all__ = ["CalibrationError", "Cancelled", "ModelInfo", "Problem", "Spec", "inspect_model", "load_spec"]
