"""OpenVINO compile settings, named, so every figure says which variant it measures.

On CPUs with AMX (or AVX512-BF16) OpenVINO runs an FP32 model in bf16 unless told
otherwise, so "FP32" is ambiguous: we measure both and name them.
"""
from __future__ import annotations

import openvino as ov

from . import devices
from .problems import CalibrationError, Problem

F32 = "fp32_f32"          # FP32 model, INFERENCE_PRECISION_HINT f32: the true FP32 reference
DEFAULT = "fp32_default"  # FP32 model as the device runs it by default (bf16 on AMX CPUs)
INT8 = "int8"             # calibrated model as the device runs it by default
VARIANT_LABELS = {F32: "FP32 (strict f32)", DEFAULT: "FP32 (device default)", INT8: "INT8"}


def config_for(variant: str, device: str, int8_float: str = "default") -> dict:
    """Compile settings of a variant; `int8_float` = "f32" runs the INT8 model's float layers in
    strict f32 instead of the device default (the spec's [inference] int8_float_precision)."""
    strict = variant == F32 or (variant == INT8 and int8_float == "f32")
    if strict and devices.is_cpu(device):
        return {"INFERENCE_PRECISION_HINT": "f32"}
    return {}


def read_model(core: ov.Core, xml_path: str) -> ov.Model:
    try:
        return core.read_model(xml_path)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unknown error"
        raise CalibrationError(Problem(f"OpenVINO cannot read the model: {first}", path=xml_path,
                                       rule="corrupt-model")) from None


def default_precision(core: ov.Core, device: str) -> str:
    """What the device computes an FP32 model in by default (e.g. bf16 on AMX CPUs)."""
    try:
        hint = core.get_property(device, "INFERENCE_PRECISION_HINT")
    except RuntimeError:  # devices without the property
        return "unknown"
    return hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
