"""The names of a spec's output set, and which spec a set already there belongs to.

Two specs for one model in one folder (say a Default and an AccuracyAware one) name the same
`calibrated/<model>.int8.*`: the second run would silently replace the first one's result. The
result JSON records the spec that wrote it, so a set written by another spec that still exists
is refused, at check time and again under the commit's folder lock (two runs at once). A set
whose spec is gone (deleted, renamed, the workspace moved) is free to be replaced.
No OpenVINO here: the checker asks these questions.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .guarded import TEXT_LIMIT, read_bytes, read_text


SET_ASIDE = ("over-budget", "not-faster")  # why a set is not the answer; its names say so


def output_paths(folder: Path, model_stem: str, aside: str | None = None) -> dict[str, Path]:
    """The names of the output set: the answer's, or one set aside (`aside` in SET_ASIDE)."""
    assert aside is None or aside in SET_ASIDE
    stem = f"{model_stem}.int8" + (f".{aside}" if aside else "")
    return {"model": folder / f"{stem}.xml", "weights": folder / f"{stem}.bin",
            "result": folder / f"{stem}.json", "report": folder / f"{stem}.report.html"}


def superseded(folder: Path, model_stem: str, spec_path: Path, kept: str | None) -> list[Path]:
    """The files of this spec's other sets (the answer, or one set aside) that a new set `kept`
    replaces: a model set aside now must not leave an older answer standing as if it were current."""
    found = []
    for aside in (None, *SET_ASIDE):
        if aside == kept:
            continue
        names = output_paths(folder, model_stem, aside)
        if names["result"].is_file() and same_file(writer(names["result"]), spec_path):
            found.extend(p for p in names.values() if p.is_file())
    return found


def model_stem(model: Path) -> str:
    """`det` of det.xml, det.onnx, det.tflite, det.pdmodel (a SavedModel folder keeps its name)."""
    suffix = Path(model.name).suffix.lower()
    return model.name[:-len(suffix)] if suffix in (".xml", ".onnx", ".tflite", ".pdmodel") else model.name


def writer(result: Path) -> Path | None:
    """The spec recorded in a result JSON; None when there is none or it is not one of ours."""
    try:
        data = json.loads(read_text(result))
        return Path(data["spec"]) if isinstance(data, dict) and isinstance(data.get("spec"), str) else None
    except (OSError, ValueError, RecursionError):
        return None


def same_file(a: Path | None, b: Path) -> bool:
    try:
        return a is not None and (a == b or os.path.samefile(a, b))
    except OSError:
        return False


def taken_by(spec_path: Path, result: Path) -> Path | None:
    """The other, still existing spec whose result is at `result` (None: free for `spec_path`).
    A byte-identical copy of this spec asks for the same calibration: its set is not another's."""
    other = writer(result)
    if other is None or not other.is_file() or same_file(other, spec_path):
        return None
    try:
        return None if read_bytes(other, TEXT_LIMIT) == read_bytes(spec_path, TEXT_LIMIT) else other
    except OSError:
        return None
