"""`int8wb tensors`: the exact input tensors the tool feeds, for comparison with the user's own pipeline.

A drop measured on tensors that differ from deployment's (another resize, another colour order)
does not carry to deployment; this writes what calibration, validation or the held-out check feed,
in dataset order, with each sample's source, as an `.npz` a user can diff against theirs.
Streams sample by sample into `.npy` members (bounded memory), then renames the file into place.
"""
from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
from numpy.lib.format import open_memmap

from . import conversion, deployment
from .datasets import open_dataset
from .inspection import inspect_model
from .problems import CalibrationError, Cancelled, Problem
from .spec import Spec

SPLITS = {"calibration": "dataset", "validation": "validation", "evaluation": "evaluation"}


def split_indices(spec: Spec, split: str):
    """(dataset, indices) of `split` exactly as calibrate feeds it."""
    info = inspect_model(conversion.ir_of(spec))
    info = deployment.deployed(info, deployment.shapes(spec, info))
    role = SPLITS[split]
    if role == "validation" and spec.validation is None:  # validation defaults to all of [dataset]
        dataset = open_dataset(spec, info, "dataset")
        return dataset, list(range(len(dataset)))
    if role == "evaluation" and spec.evaluation is None:
        raise CalibrationError(spec.problem("the spec has no [evaluation] table (held-out set)", rule="spec",
                                            fix="choose --split calibration or validation"))
    dataset = open_dataset(spec, info, role)
    return dataset, dataset.subset_indices()


def write_tensors(spec: Spec, split: str, out: Path, limit: int | None = None,
                  progress: Callable[[float], None] | None = None,
                  cancel: Callable[[], bool] | None = None) -> dict:
    """Writes `out` (.npz): one array per model input (samples on the first axis), `paths`,
    `indices` (positions in the dataset) and `labels` when annotated. Returns a summary."""
    dataset, indices = split_indices(spec, split)
    indices = indices[:limit] if limit else indices
    out = Path(out).resolve()
    with tempfile.TemporaryDirectory(prefix=".int8wb-tensors-", dir=out.parent) as tmp:
        arrays = None
        for j, i in enumerate(indices):
            if cancel and cancel():
                raise Cancelled()
            sample = dataset.load(i)
            if arrays is None:
                arrays = {name: open_memmap(Path(tmp) / f"{n}.npy", mode="w+", dtype=a.dtype,
                                            shape=(len(indices), *a.shape[1:]))
                          for n, (name, a) in enumerate(sample.items())}
            for name, a in sample.items():
                if a.shape[1:] != arrays[name].shape[1:]:
                    raise CalibrationError(Problem(
                        f"sample shape {list(a.shape)} differs from the first sample's {[1, *arrays[name].shape[1:]]}:"
                        " the tensors cannot be stacked", path=dataset.entries[i].source, rule="input-shape-mismatch",
                        fix="set [preprocessing] resize or [deployment] shape, so every sample has one shape"))
                arrays[name][j] = a[0]
            if progress:
                progress((j + 1) / len(indices))
        extras = {"paths": np.array([dataset.entries[i].source for i in indices]),
                  "indices": np.array(indices, dtype=np.int64)}
        labels = [dataset.label(i) for i in indices]
        if dataset.annotated and all(label is not None for label in labels):
            extras["labels"] = np.array(labels)
        tmp_out = Path(tmp) / "out.npz"
        with zipfile.ZipFile(tmp_out, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for n, (name, array) in enumerate(arrays.items()):
                array.flush()
                zf.write(Path(tmp) / f"{n}.npy", arcname=f"{name}.npy")
            for name, array in extras.items():
                with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, array, allow_pickle=False)
        shapes = {name: list(array.shape) for name, array in arrays.items()}
        del arrays  # close the maps before the folder goes
        os.replace(tmp_out, out)
    return {"split": split, "file": str(out), "samples": len(indices), "inputs": shapes,
            "interpolation": spec.preprocessing.interpolation, "deployment_shape": spec.deployment.shapes()}
