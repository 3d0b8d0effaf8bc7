"""`check`: every problem of specs, models and folders, without running OpenVINO.

Never raises for bad input: whatever is wrong with a file comes back as a Problem, so an
editor, a folder scan or CI can list everything at once.
"""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Iterable

from . import conversion, deployment, eligibility, ignored_scope, source_check, trust
from .layer_table import layer_table
from .data_summary import summary_problems
from .datasets import open_dataset
from .inspection import inspect_model
from .model_files import sniff, walk
from .metrics import custom_metric_file, needs_labels
from .problems import CalibrationError, Problem
from .spec import SPEC_SUFFIX, Spec, load_spec, read_toml, spec_from_data


def check_model(path: str | os.PathLike, *, scanned: bool = False) -> list[Problem]:
    """Problems of one IR model, located in its XML. `scanned`: found in a folder walk rather
    than named, so our own outputs are information, not errors. A model that needs conversion is
    checked from its own framing, then as the IR a calibration converted, if any."""
    try:
        if (found := _source_model(Path(path))) is not None:
            return found
        info = inspect_model(path)
        problems = eligibility.model_problems(info)
    except CalibrationError as exc:
        return exc.problems
    except Exception as exc:  # noqa: BLE001
        return [_internal(path, exc)]
    if scanned and info.derived is not None:
        problems = [replace(p, severity="info") if p.rule in ("derived-model", "already-calibrated") else p
                    for p in problems]
    return problems


def _source_model(path: Path) -> list[Problem] | None:
    """The problems of a model that is not IR (None: it is an IR, or meant to be)."""
    if (problem := source_check.unsupported(path)) is not None:
        return [problem]
    kind = conversion.source_kind(path)
    if kind is None:
        return None
    broken = source_check.source_problems(path, kind)
    if broken or (ir := conversion.cached_ir(path)) is None:
        return broken or [Problem(f"{source_check.a_model(kind)}: converted with {conversion.ROUTE} when first calibrated or "
                                  "inspected (and cached); its eligibility is checked then", path=str(path),
                                  rule="converted-model", severity="info")]
    return check_model(ir)


def _internal(path, exc: Exception) -> Problem:
    """The checker must never take its caller down: an unforeseen failure is one more problem."""
    return Problem(f"internal error while checking: {type(exc).__name__}: {exc}", path=str(path), line=1,
                   rule="internal")


def check_spec(path: str | os.PathLike, text: str | None = None, trusted: bool | None = None,
               summaries: bool = False) -> list[Problem]:
    """Problems of one spec (the editor's buffer when `text` is given), all located in the spec.
    `trusted`: whether a custom metric may run (default: the INT8WB_TRUST switch), as calibrate asks;
    `summaries`: also an info finding per dataset table (samples, sizes, channels)."""
    trusted = trust.trusted() if trusted is None else trusted
    try:
        spec = load_spec(path, text)
    except CalibrationError as exc:
        return exc.problems + _past_type_errors(path, text, exc.problems, trusted, summaries)
    except Exception as exc:  # noqa: BLE001
        return [_internal(path, exc)]
    return _problems_of(spec, trusted, summaries)


def _problems_of(spec: Spec, trusted: bool, summaries: bool) -> list[Problem]:
    try:
        return _spec_problems(spec, trusted, summaries)
    except CalibrationError as exc:
        return exc.problems
    except Exception as exc:  # noqa: BLE001
        return [_internal(spec.path, exc)]


def _past_type_errors(path, text: str | None, errors: list[Problem], trusted: bool, summaries: bool) -> list[Problem]:
    """The problems a spec with type errors (a wrong value, an unknown key) will show once they are
    fixed, found now: the spec as read without the keys in error, where it validates without them
    (their defaults stand in); none where a key in error is required, or the text is not TOML."""
    if not errors or any(p.rule != "spec" or not p.key for p in errors):
        return []
    try:
        text, data = read_toml(Path(path).resolve(), text, "spec")
        for p in errors:
            _drop(data, p.key.split("."))
        spec = spec_from_data(data, path, text)
    except CalibrationError:
        return []
    except Exception as exc:  # noqa: BLE001
        return [_internal(path, exc)]
    in_error = tuple(p.key for p in errors)
    return [p for p in _problems_of(spec, trusted, summaries)
            if not (p.key and (p.key in in_error or p.key.startswith(tuple(k + "." for k in in_error))))]


def _drop(table: dict, keys: list[str]) -> None:
    """Removes `keys` (a located problem's path) from the tables, at the deepest table it reaches."""
    for i, key in enumerate(keys):
        value = table.get(key)
        if i == len(keys) - 1 or not isinstance(value, dict):
            table.pop(key, None)
            return
        table = value


def _spec_problems(spec: Spec, trusted: bool, summaries: bool) -> list[Problem]:
    out: list[Problem] = []
    if spec.accuracy.metric == "custom":
        try:
            custom_metric_file(spec, trusted)
        except CalibrationError as exc:
            out += exc.problems
    model = spec.model_path
    kind = conversion.source_kind(model)
    if not (model.is_file() or kind):
        return [spec.problem(f"model not found: {model}", "model", rule="model-missing",
                             fix="point model at an existing .xml (or .onnx, .tflite, .pdmodel, SavedModel folder)")]
    if (problem := source_check.unsupported(model)) is not None:
        return out + [_at_model_key(spec, problem)]
    if kind:  # the checker converts nothing: it reads the IR a calibration converted, if any
        if broken := source_check.source_problems(model, kind):
            return out + [_at_model_key(spec, p) for p in broken] + eligibility.spec_problems(spec)
        model = conversion.cached_ir(model)
        if model is None:
            out.append(spec.problem(f"{source_check.a_model(kind)}: converted with {conversion.ROUTE} when first calibrated (and "
                                    "cached); its eligibility is checked then", "model", rule="converted-model",
                                    severity="info"))
            return out + eligibility.spec_problems(spec)
    try:
        info = inspect_model(model)
    except CalibrationError as exc:
        info = None
        out += [_at_model_key(spec, p) for p in exc.problems]
    if info is not None:
        out += [_at_model_key(spec, p) for p in eligibility.model_problems(info)]
        out += eligibility.decoder_problems(spec, info)
        if not spec.calibration.ignored_scope.empty():  # the XML is read again only when names need checking
            out += ignored_scope.problems(spec, layer_table(model))
    out += eligibility.spec_problems(spec)
    if info is None:
        return out
    try:
        fixed = deployment.shapes(spec, info)
    except CalibrationError as exc:
        out, fixed = out + exc.problems, None
    own, info = info, deployment.deployed(info, fixed)
    roles = ["dataset"] + [r for r in ("validation", "evaluation") if getattr(spec, r)]
    datasets, first = {}, None
    for role in roles:
        try:
            ds = datasets[role] = open_dataset(spec, info, role)
            ds.subset_indices()
            sample = ds.load(0)  # one sample proves decoding and the input shape
            first = first or {name: a.shape for name, a in sample.items()}
            out += summary_problems(spec, ds, summaries)
        except CalibrationError as exc:
            out += exc.problems + [_at_dataset_key(spec, role, p) for p in exc.problems
                                   if p.path and Path(p.path) != spec.path]
    out += deployment.dynamic_warning(spec, own, first)
    accuracy_set = datasets.get("validation" if spec.validation else "dataset")
    if accuracy_set is not None:
        out += [p for p in eligibility.spec_problems(spec, annotated=accuracy_set.annotated,
                                                     metric_needs_labels=needs_labels(spec.accuracy))
                if p.rule.startswith("unannotated")]
        out += eligibility.budget_problems(spec, len(accuracy_set.subset_indices()) if spec.validation
                                           else len(accuracy_set))
    out += eligibility.confirmation_problems(spec)
    return out


def _at_dataset_key(spec: Spec, role: str, p: Problem) -> Problem:
    """A problem of a dataset file (an image, a list line) also shown on the table's `path` line of the
    spec: an editor shows the spec's diagnostics, not those of a .png nobody opens."""
    where = Path(p.path).name + (f":{p.line}" if p.line else "")
    located = spec.problem(f"{where}: {p.message}", role, "path", rule=p.rule, fix=p.fix)
    return replace(located, severity=p.severity)


def _at_model_key(spec: Spec, p: Problem) -> Problem:
    """A model problem shown on the spec's `model` line, keeping the rule and fix."""
    name = Path(p.path).name if p.path else "model"
    located = spec.problem(f"{name}: {p.message}", "model", rule=p.rule, fix=p.fix)
    return replace(located, severity=p.severity)



def targets(paths: Iterable[str | os.PathLike]) -> Iterable[tuple[Path, str, bool]]:
    """(file, "spec"|"model", scanned) for named files and for what folders hold, recursively."""
    for raw in paths:
        path = Path(raw)
        try:
            is_dir = path.is_dir()
        except (OSError, ValueError):
            is_dir = False  # reported as unreadable by the check itself
        if is_dir and conversion.source_kind(path):  # a SavedModel folder is one model
            yield path, "model", False
        elif is_dir:
            for f in walk(path, endings=(SPEC_SUFFIX, ".xml")):
                if f.name.endswith(SPEC_SUFFIX):
                    yield f, "spec", True
                elif sniff(f) is True:
                    yield f, "model", True
        elif path.name.endswith(SPEC_SUFFIX):
            yield path, "spec", False
        else:
            yield path, "model", False


PARALLEL_FROM = 64  # below this many files a process pool costs more than it saves


def _check_one(target: tuple[Path, str, bool, bool]) -> list[Problem]:
    path, kind, scanned, summaries = target
    try:
        if not path.exists():
            return [Problem("no such file or folder", path=str(path), rule="not-found")]
    except (OSError, ValueError) as exc:  # a NUL in the name, a symlink loop
        return [Problem(f"cannot read this path: {exc}", path=repr(str(path)), rule="not-found")]
    return check_spec(path) if kind == "spec" else check_model(path, scanned=scanned)


def check_paths(paths: Iterable[str | os.PathLike], workers: int | None = None,
                summaries: bool = False) -> list[Problem]:
    """Problems of every target, in a stable order; large folders are read on all cores.
    `summaries`: specs also report each dataset table's samples, sizes and channels (info)."""
    found = [(*target, summaries) for target in targets(paths)]
    workers = workers or os.cpu_count() or 1
    if workers > 1 and len(found) >= PARALLEL_FROM:
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(_check_one, found, chunksize=max(1, len(found) // (workers * 8))))
    else:
        results = [_check_one(t) for t in found]
    return [p for problems in results for p in problems]
