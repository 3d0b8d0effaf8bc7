"""Can this (model, spec) pair be calibrated? Every refusal is a located, fixable Problem.

Works on the XML inspection and the spec alone (no OpenVINO import), so editors and
folder scans stay fast; `device_problems` asks the runtime only when one is at hand.
"""
from __future__ import annotations

import os
from pathlib import Path

from . import devices, stats, trust
from .output_names import SET_ASIDE, model_stem, output_paths, taken_by
from .inspection import ModelInfo, pretty_shape
from .problems import Problem
from .spec import Spec


def model_problems(info: ModelInfo) -> list[Problem]:
    """Rules that concern the model alone, located in its XML."""
    p = info.path
    out: list[Problem] = []
    if info.bin_size is None:
        out.append(Problem(f"weights file not found: {info.bin_path}", path=p, line=1, rule="missing-weights",
                           fix="copy the .bin next to the .xml with the same name"))
    elif not info.weights_complete:
        out.append(Problem(f"weights file is truncated: {info.bin_size} of {info.bin_expected_size} bytes",
                           path=p, line=1, rule="truncated-weights",
                           fix="wait for the copy to finish, or copy the .bin again"))
    if info.derived is not None:
        src = info.derived.get("source", "its original")
        out.append(Problem(f"this model is an output of int8-workbench (from {src}); only the original "
                           "model can be calibrated", path=p, line=info.version_line, rule="derived-model",
                           fix=f"calibrate {src} instead"))
    elif info.quantized:
        out.append(Problem(f"the model is already quantized ({info.quantized_evidence})", path=p,
                           line=info.quantized_line, rule="already-calibrated",
                           fix="calibrate the original FP32 model"))
    if info.ir_version is None or info.ir_version < 10:
        out.append(Problem(f"IR version {info.ir_version} is not supported (needs 10 or later)", path=p,
                           line=info.version_line, rule="ir-version",
                           fix="convert the original model again with a current openvino (ovc)"))
    if info.precision != "FP32" and not info.quantized:
        out.append(Problem(f"the model computes in {info.precision}, not FP32", path=p,
                           line=info.inputs[0].line if info.inputs else 1, rule="not-fp32",
                           fix="export the model in FP32 (FP16-compressed weights are fine)"))
    if not info.int8_layers:
        out.append(Problem("the model has no layer that can run in INT8 (Convolution, MatMul, ...)", path=p,
                           line=info.version_line, rule="no-int8-layers",
                           fix="nothing to gain from INT8; deploy the FP32 model"))
    if info.fp16_compressed_weights:
        out.append(Problem("FP32 model with FP16-compressed weights: calibrated as FP32", path=p,
                           line=info.version_line, rule="fp16-compressed-weights", severity="info"))
    return out


def spec_problems(spec: Spec, *, annotated: bool | None = None, metric_needs_labels: bool = True) -> list[Problem]:
    """Rules that concern the spec: dataset kind, device, where it writes, labels for the chosen method."""
    out: list[Problem] = output_problems(spec)
    if spec.dataset.kind == "generated" and spec.calibration.method != "weights_only":  # no statistics there
        out.append(spec.problem("a generated (random) dataset cannot calibrate a model: its statistics "
                                "would be meaningless", "dataset", "kind", rule="generated-dataset",
                                fix="point the dataset at real samples; generated data is for speed only"))
    if not devices.has_int8_path(spec.device):
        out.append(spec.problem(f"device {spec.device} has no INT8 calibration path", "device",
                                rule="device-without-int8", fix='set device = "CPU"'))
    out += _usage_problems(spec)
    if annotated is False and metric_needs_labels:
        where = "validation" if spec.validation else "dataset"
        if spec.calibration.method == "accuracy_aware":
            out.append(spec.problem("AccuracyAware needs an annotated dataset to measure its drop, and "
                                    f"[{where}] has no labels", "calibration", "method",
                                    rule="unannotated-accuracy-aware",
                                    fix='set method = "default", or use an annotated dataset, or a label-free '
                                        'metric (metric = "agreement")'))
        else:
            # A defaulted metric has no line: point at the dataset's kind, the other half of the conflict.
            keys = ("accuracy", "metric") if spec.written("accuracy", "metric") else (where, "kind")
            boxes = spec.accuracy.metric in DETECTION_METRICS
            out.append(spec.problem(f"metric {spec.accuracy.metric!r} needs {'boxes' if boxes else 'labels'} but "
                                    f"[{where}] has none", *keys, rule="unannotated-dataset",
                                    fix="give the images their boxes: a COCO JSON's annotations, or VOC <object> "
                                        "entries" if boxes else 'use metric = "agreement", or an annotated '
                                                                'dataset kind'))
    return out


SEGMENTATION_METRICS = ("iou", "miou", "pixel_accuracy")
DETECTION_METRICS = ("coco_map", "voc_map50")


def _usage_problems(spec: Spec) -> list[Problem]:
    """A usage's metric needs its kind of annotation: masks for segmentation, classes for top-k."""
    where = "validation" if spec.validation else "dataset"
    kind, metric = getattr(spec, where).kind, spec.accuracy.metric
    if metric in SEGMENTATION_METRICS and kind != "segmentation":
        return [spec.problem(f"metric {metric!r} compares with masks, and [{where}] kind {kind!r} has none",
                             where, "kind", rule="usage-dataset-mismatch",
                             fix='use kind = "segmentation" (a folder with images/ and masks/)')]
    if metric in DETECTION_METRICS and kind not in ("coco", "voc"):
        return [spec.problem(f"metric {metric!r} compares with boxes, and [{where}] kind {kind!r} has none",
                             where, "kind", rule="usage-dataset-mismatch",
                             fix='use kind = "coco" (images and an instances JSON) or "voc" (images and '
                                 'Pascal VOC XML files), with annotations = ...')]
    if kind in ("coco", "voc") and metric in ("top1", "topk", *SEGMENTATION_METRICS):
        return [spec.problem(f"[{where}] holds boxes, and metric {metric!r} compares "
                             f"{'classes' if metric in ('top1', 'topk') else 'masks'}", "accuracy", "metric",
                             rule="usage-dataset-mismatch", fix='use metric = "coco_map" or "voc_map50"')]
    if kind == "segmentation" and metric in ("top1", "topk"):
        return [spec.problem(f"[{where}] holds masks, and metric {metric!r} compares classes",
                             "accuracy", "metric", rule="usage-dataset-mismatch",
                             fix='use metric = "miou", "iou" or "pixel_accuracy"')]
    return []


def decoder_problems(spec: Spec, info: ModelInfo) -> list[Problem]:
    """A detection decoder that cannot read the model output it is given (its shape in the IR)."""
    acc = spec.accuracy
    if not acc.decoder or not info.outputs:
        return []
    from .decoders import SHAPES, fits  # numpy comes with it: only for a spec that decodes boxes

    named = [t for t in info.outputs if acc.output is None or t.name == acc.output]
    if not named or fits(acc.decoder, named[0].shape):
        return []
    keys = ("accuracy", "decoder") if spec.written("accuracy", "decoder") else ("accuracy",)
    return [spec.problem(f"decoder {acc.decoder!r} reads {SHAPES[acc.decoder]}; output {named[0].name!r} is "
                         f"{pretty_shape(named[0].shape)}", *keys, rule="decoder-output-mismatch",
                         fix="choose the decoder of the model's head, or set [accuracy] output to the output it reads")]


def output_problems(spec: Spec) -> list[Problem]:
    """Where a spec may write: below its own folder, as the folder really is (symlinks followed), or
    in a folder the user trusts from outside the workspace. A spec is workspace input: `dir =
    "../../x"`, an absolute dir or a `calibrated/` that links elsewhere would write anywhere.
    Specs a program hands to a worker (JSON) name folders that program chose."""
    return _confinement(spec) or _collisions(spec)


def _confinement(spec: Spec) -> list[Problem]:
    if spec.path.suffix == ".json":
        return []
    home = Path(os.path.realpath(spec.path.parent))
    out = Path(os.path.realpath(spec.output_dir))
    if out == home or home in out.parents or trust.trusted(folder=out):
        return []
    return [spec.problem(f"[output] dir {spec.output.dir!r} is {out}, outside the spec's folder {home}", "output", "dir",
                         rule="path-outside", fix=f'write below the spec (e.g. dir = "calibrated"), or trust that '
                                                  f'folder from outside the workspace: int8wb trust {out}')]


def _collisions(spec: Spec) -> list[Problem]:
    """The output set must not replace the original model, nor another spec's result."""
    stem = model_stem(spec.model_path)
    names = output_paths(spec.output_dir, stem)
    if Path(os.path.realpath(names["model"])) == Path(os.path.realpath(spec.model_path)):
        return [spec.problem("the output would overwrite the original model", "output", "dir",
                             rule="output-overwrites-model", fix='choose another output dir (e.g. dir = "calibrated")')]
    for aside in (None, *SET_ASIDE):
        result = output_paths(spec.output_dir, stem, aside)["result"]
        other = taken_by(spec.path, result)
        if other is not None:
            return [spec.problem(f"{result.name} in {spec.output.dir!r} holds the result of another spec, "
                                 f"{other.name}; calibrating this one would replace it", "output", "dir",
                                 rule="output-taken", fix=f'give this spec its own folder: [output] dir = '
                                                          f'"calibrated/{spec.path.name.split(".")[0]}"')]
    return []


def budget_problems(spec: Spec, samples: int) -> list[Problem]:
    """A drop budget the accuracy set cannot resolve: with `samples` paired samples, no drop below
    `stats.resolvable_drop` can be shown to hold, whatever the model does (a relative budget is
    at most its absolute size: the check errs towards silence). Or an AccuracyAware budget it
    resolves with no room (`stats.samples_with_room`): on the PP-OCRv5 recogniser, 300 samples at
    1 pp left 84-98 of 112 layers in float, 1,200 left 2 % of the multiply-adds."""
    budgets = [("gate", "max_drop", spec.gate.max_drop)]
    if spec.calibration.method == "accuracy_aware":
        budgets.append(("calibration", "max_drop", spec.calibration.max_drop))
    floor, where = stats.resolvable_drop(samples), "validation" if spec.validation else "dataset"
    for table, key, budget in budgets:
        if budget is not None and budget < floor:
            return [spec.problem(
                f"{samples} [{where}] samples cannot resolve max_drop = {budget:g}: even with no sample changed, "
                f"the drop is only known to be below {floor:.2%} at 95 % confidence", table, key,
                rule="budget-unresolvable", severity="warning",
                fix=f"use at least {stats.samples_needed(budget)} [{where}] samples, or a budget of {floor:.3g} or more")]
    confidence, budget = spec.calibration.confidence, spec.calibration.max_drop
    roomy = stats.samples_with_room(budget, confidence) if confidence > 0 else 0
    if spec.calibration.method == "accuracy_aware" and samples < roomy:
        lost = stats.losses_accepted(samples, budget, confidence)
        return [spec.problem(
            f"{samples} [{where}] samples leave AccuracyAware no room under max_drop = {budget:g}: at {confidence:.0%} "
            f"confidence a candidate passes only if it loses about {lost} of them, so INT8's noise on a few fragile "
            f"samples sends most layers back to float", "calibration", "max_drop", rule="budget-tight", severity="warning",
            fix=f"use at least {roomy} [{where}] samples (a model losing half the budget then passes), or a larger budget")]
    return []


def confirmation_problems(spec: Spec) -> list[Problem]:
    """AccuracyAware with no held-out set: the search chooses its answer on the validation samples and
    judges it on the same ones, so nothing confirms it on data it never saw (on PP-OCRv5 an answer
    accepted at +0.33 pp lost 4 pp on held-out words before acceptance used a confidence bound)."""
    if spec.calibration.method != "accuracy_aware":
        return []
    if spec.evaluation is not None:
        same = spec.validation is not None and _data_of(spec, spec.evaluation) == _data_of(spec, spec.validation)
        return [spec.problem("[evaluation] reads the same samples as [validation]: they are not held out, so they "
                             "confirm nothing", "evaluation", "path", rule="heldout-is-validation", severity="warning",
                             fix="point [evaluation] at samples of their own (never used to choose layers)")] if same else []
    return [spec.problem("AccuracyAware's answer is chosen and judged on the same samples: no held-out set "
                         "confirms it on data the search never saw", "calibration", "method",
                         rule="unconfirmed", severity="info",
                         fix="add an [evaluation] table with samples of their own: the answer is then set aside "
                             "when it is over the budget there")]


def _data_of(spec: Spec, table) -> tuple:
    """What decides which samples a dataset table reads (paths resolved against the spec's folder)."""
    return (table.kind, table.path and spec.resolve(table.path), table.annotations and spec.resolve(table.annotations),
            table.split, table.subset, table.seed)


def device_problems(spec: Spec, core) -> list[Problem]:
    """Asks the runtime whether the device exists and has INT8 (needs an openvino Core)."""
    if not devices.is_available(spec.device, core.available_devices):
        return [spec.problem(f"device {spec.device} is not available here (have: {', '.join(core.available_devices)})",
                             "device", rule="device-missing", fix='set device = "CPU"')]
    if "INT8" not in core.get_property(spec.device, "OPTIMIZATION_CAPABILITIES"):
        return [spec.problem(f"device {spec.device} does not report INT8 capability", "device",
                             rule="device-without-int8", fix='set device = "CPU"')]
    return []


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]
