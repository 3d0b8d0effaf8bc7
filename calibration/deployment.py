"""The deployment profile: the input shape, resize code and float precision every figure is measured on.

OpenVINO compiles a fixed-shape model differently from a dynamic one (it fuses other layers), and
INT8 accuracy moves with the resize code by up to 1 pp: a promise measured under one profile does
not carry to another. The spec's `[deployment] shape` fixes the shape; the result names the profile.
No OpenVINO import at module level: the checker uses the problem rules.
"""
from __future__ import annotations

from dataclasses import replace

from .inspection import ModelInfo, pretty_shape as pretty
from .problems import CalibrationError, Problem
from .spec import Spec

RULE = "deployment-shape"


def shapes(spec: Spec, info: ModelInfo) -> dict[str, list[int]] | None:
    """Input name -> the static shape `[deployment]` gives it; None without a shape. Raises a
    located CalibrationError when the shapes do not fit the model's inputs."""
    given = spec.deployment.shapes()
    if given is None:
        return None
    if len(given) != len(info.inputs):
        raise CalibrationError(spec.problem(
            f"{len(given)} shape(s) for a model with {len(info.inputs)} input(s) "
            f"({', '.join(t.name for t in info.inputs)})", "deployment", "shape", rule=RULE,
            fix="give one shape per model input, in order"))
    for shape, tensor in zip(given, info.inputs):
        model = tensor.shape
        if len(shape) != len(model) or any(m >= 0 and m != s for m, s in zip(model, shape)):
            raise CalibrationError(spec.problem(
                f"shape {shape} does not fit input '{tensor.name}' {pretty(model)} of the model",
                "deployment", "shape", rule=RULE,
                fix=f"keep the model's {len(model)} dimensions and its fixed ones; choose only the ? ones"))
    return {t.name: list(s) for s, t in zip(given, info.inputs)}


def deployed(info: ModelInfo, fixed: dict[str, list[int]] | None) -> ModelInfo:
    """The model's facts as it runs at the deployment shape (what preprocessing sizes images to)."""
    if not fixed:
        return info
    return replace(info, inputs=[replace(t, shape=list(fixed[t.name])) for t in info.inputs])


def reshape(model, fixed: dict[str, list[int]] | None, spec: Spec):
    """`model` (an openvino Model) reshaped in place to the deployment shape, and returned."""
    if fixed:
        try:
            model.reshape({model.input(i): shape for i, shape in enumerate(fixed.values())})
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unknown error"
            raise CalibrationError(spec.problem(f"OpenVINO cannot reshape the model to {list(fixed.values())}: "
                                                f"{first}", "deployment", "shape", rule=RULE,
                                                fix="choose a shape the model supports")) from None
    return model


def profile(spec: Spec, info: ModelInfo, fixed: dict[str, list[int]] | None, image_data: bool,
            device_default: str, precise: int = 0) -> dict:
    """The result's `deployment` record; `precise`: layers the saved IR marks to run in strict f32."""
    float_precision = ("f32" if spec.inference.int8_float_precision == "f32"
                       else f"device default ({device_default})")
    if precise and spec.inference.int8_float_precision != "f32":
        float_precision += f", {precise} layer{'s' if precise > 1 else ''} marked strict f32 in the IR"
    return {"shape": list(fixed.values()) if fixed else None,
            "model_shape": [list(t.shape) for t in info.inputs],
            "interpolation": spec.preprocessing.interpolation if image_data else None,
            "float_precision": float_precision}


def describe(record: dict) -> str:
    """The profile in words, as every verdict states it."""
    shape = ("shape " + ", ".join(pretty(s) for s in record["shape"]) if record.get("shape") else
             "the model's own shape " + ", ".join(pretty(s) for s in record.get("model_shape") or []))
    parts = [shape.strip()]
    if record.get("interpolation"):
        parts.append(f"resize {record['interpolation']}")
    parts.append(f"float layers in {record.get('float_precision')}")
    return ", ".join(parts)


def dynamic_warning(spec: Spec, info: ModelInfo, sample_shapes: dict[str, tuple] | None) -> list[Problem]:
    """A model with dynamic dimensions and no `[deployment] shape`: the promise is measured at the
    dynamic shape only. The fix names the shape the data has (the quick fix inserts it)."""
    if spec.deployment.shape is not None or not any(d < 0 for t in info.inputs for d in t.shape):
        return []
    dynamic = ", ".join(f"'{t.name}' {pretty(t.shape)}" for t in info.inputs if any(d < 0 for d in t.shape))
    fix = "add a [deployment] table with the shape the model is deployed at"
    if sample_shapes and all(n in sample_shapes for n in (t.name for t in info.inputs)):
        shapes_ = [list(sample_shapes[t.name]) for t in info.inputs]
        value = shapes_[0] if len(shapes_) == 1 else shapes_
        fix += f": shape = {value} (the shape of the first sample)"
    return [spec.problem(
        f"the model has dynamic input dimensions ({dynamic}): accuracy, the drop and speed are measured at the "
        "dynamic shape only, and OpenVINO compiles a fixed shape differently (INT8 accuracy moves with it)",
        "model", rule="dynamic-shape", severity="warning", fix=fix)]
