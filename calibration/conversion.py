"""Models that are not IR yet (ONNX, TensorFlow Lite, PaddlePaddle, a TensorFlow SavedModel): converted
once with `openvino.convert_model`, cached by content under `.int8wb/converted/`, then treated as the IR.

Why convert_model and not `core.read_model(file)` + `save_model`: it runs the frontend's own graph
transformations, and the other route's graph lost more in INT8 (README, "Models that are not IR yet").
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from .private import STATE_DIR, private_folder
from .problems import CalibrationError, Problem
from .source_check import RULES, a_model, source_problems, unsupported

SOURCE_SUFFIXES = {".onnx": "ONNX", ".tflite": "TensorFlow Lite", ".pdmodel": "PaddlePaddle"}
ROUTE = "openvino.convert_model"
RULE = "conversion-failed"


def source_kind(path: Path) -> str | None:
    """The framework of a model `path` that needs conversion, None for an IR (or anything else)."""
    if path.suffix.lower() in SOURCE_SUFFIXES:
        return SOURCE_SUFFIXES[path.suffix.lower()]
    if path.is_dir() and (path / "saved_model.pb").is_file():
        return "TensorFlow SavedModel"
    return None


def digest(path: Path) -> str:
    """Content hash of the model (a SavedModel folder: every file in it, by relative name)."""
    h = hashlib.sha256()
    if not (path.is_dir() or path.is_file()):  # a FIFO or a device would block the read, or never end
        raise OSError(f"not a regular file: {path}")
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode() + b"\0")
        with open(f, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:32]


def cache_folder(path: Path, root: Path | None = None) -> Path:
    """Where the converted IR of `path` lives: `<root>/.int8wb/converted/<content hash>/` (root: the
    model's folder unless given, e.g. the spec's)."""
    return (root or path.parent) / STATE_DIR / "converted" / digest(path)


def cached_ir(path: Path, root: Path | None = None) -> Path | None:
    """The IR already converted from `path`, or None (what the checker uses: it converts nothing)."""
    try:
        xml = cache_folder(path, root) / "model.xml"
    except OSError:  # gone, unreadable: nothing was converted from it
        return None
    return xml if xml.is_file() and xml.with_suffix(".bin").is_file() else None


def converted_ir(path: Path, root: Path | None = None) -> Path:
    """The IR of `path`: from the cache, or converted now (written to a temporary folder, then renamed,
    so a cache entry is always whole). Raises CalibrationError(conversion-failed) with the frontend's
    first line."""
    if (hit := cached_ir(path, root)) is not None:
        return hit
    kind = source_kind(path) or "this"
    folder = cache_folder(path, root)
    private_folder(folder.parent)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
    try:
        import openvino as ov

        try:
            model = ov.convert_model(str(path))
        except Exception as exc:  # noqa: BLE001  (each frontend raises its own kind)
            raise CalibrationError(failure(path, kind, exc)) from None
        ov.save_model(model, str(tmp / "model.xml"), compress_to_fp16=False)  # calibration wants FP32 weights
        try:
            os.rename(tmp, folder)
        except OSError:  # another run converted the same content meanwhile: theirs is as good
            if cached_ir(path, root) is None:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder / "model.xml"


def failure(path: Path, kind: str, exc: Exception) -> Problem:
    """Why `path` did not convert: the frontend's first line (an assertion in its C++ source, often),
    led by what is wrong with the file when its own framing says (then the format's rule and fix)."""
    first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    message = f"{ROUTE} cannot convert this {a_model(kind)}: {first[:300]}"
    for found in source_problems(path, kind) if kind in RULES else []:
        return replace(found, message=f"{ROUTE} cannot convert this {a_model(kind)}: {found.message} ({first[:200]})")
    return Problem(message, path=str(path), rule=RULE,
                   fix="check that the file is whole and loads in its own framework; "
                       "or convert it yourself (ovc) and point `model` at the .xml")


def ir_for(source: Path) -> Path:
    """The IR `source` is read as: the model itself, or its conversion (cached beside the model, so the
    CLI, every spec naming it and the editor's hover share one entry). A format OpenVINO does not
    read raises its own rule rather than being read as XML."""
    if (problem := unsupported(source)) is not None:
        raise CalibrationError(problem)
    return converted_ir(source) if source_kind(source) else source


def ir_of(spec) -> Path:
    """The IR a spec's model is calibrated as (`ir_for`)."""
    return ir_for(spec.model_path)
