"""The main job: baseline FP32 → calibrate → infer INT8 → compare. Plain data in, plain data out.

Front ends (CLI, language server worker, pytest, drop folder) call `calibrate` with a spec,
a progress callback and a cancel predicate; they never see OpenVINO or NNCF objects. The result
is built as `result.Result` and returned in its JSON form (read it back with `Result.of`).
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import openvino as ov

from . import conversion, deployment, eligibility, ignored_scope, machine, performance, stats
from .datasets import open_dataset
from .evaluation import Evaluation, evaluate, output_index
from .gate import within
from .inspection import inspect_model
from .layer_table import layer_table
from .methods import accepts, calibrate_accuracy_aware, compress_weights, quantize_default
from .metrics import degradation, make_metric
from .output import Staging, mark
from .output_names import model_stem, output_paths, superseded
from .precise import precise_layers
from .recommendation import recommend, undecided
from .problems import CalibrationError, Problem
from .report import render_html
from .result import AccuracyAwareBudget, AccuracyAwareRecord, Result
from .runtime import DEFAULT, F32, INT8, config_for, default_precision, read_model
from .spec import Spec
from .versions import versions

ProgressFn = Callable[[float, str], None]

# (phase, share of the run) in order; percentages are derived so they always add to 100.
PHASES = [("checking", 2), ("baseline accuracy", 16), ("calibrating", 30), ("saving", 2),
          ("INT8 accuracy", 14), ("speed (interleaved rounds)", 30), ("per-layer profile", 6)]
SPEED = "speed (interleaved rounds)"
NO_INTERVAL = "the metric gives no per_sample()"  # why a drop has no interval


class _Progress:
    def __init__(self, fn: ProgressFn | None):
        self.fn = fn
        self.starts, total = {}, 0
        for name, share in PHASES:
            self.starts[name] = (total, share)
            total += share

    def __call__(self, phase: str, fraction: float = 0.0) -> None:
        if self.fn:
            start, share = self.starts[phase]
            self.fn(round(start + share * min(max(fraction, 0.0), 1.0), 1), phase)

    def within(self, phase: str) -> Callable[[float], None]:
        return lambda fraction: self(phase, fraction)


def calibrate(spec: Spec, progress: ProgressFn | None = None, cancel: Callable[[], bool] | None = None,
              trust_custom_metrics: bool = False, journal: Path | None = None) -> dict:
    """Runs the whole workflow and returns the result (also written as JSON beside the model).

    The outputs (model, weights, result JSON, report) are committed as one unit; `journal` is where
    a job runner reads what was committed should this process die (see `commit.commit_set`).
    Raises CalibrationError with nothing written for bad input, Cancelled when asked to stop,
    and CalibrationError(budget-unreachable or budget-not-confirmed) after keeping the best over-budget attempt."""
    step = _Progress(progress)
    started = time.time()
    step("checking")
    source = spec.model_path
    if not (source.is_file() or conversion.source_kind(source)):
        raise CalibrationError(spec.problem(f"model not found: {source}", "model",
                                            rule="model-missing", fix="fix the model path"))
    # A model that is not IR yet is converted once (cached by content); everything below reads the IR.
    xml = conversion.ir_of(spec)
    info = inspect_model(xml)
    problems = eligibility.errors(eligibility.model_problems(info) + eligibility.spec_problems(spec)
                                  + eligibility.decoder_problems(spec, info))
    _refuse(problems)
    table = [] if spec.calibration.ignored_scope.empty() else layer_table(xml)  # only to check the names
    _refuse(eligibility.errors(ignored_scope.problems(spec, table)))
    fixed = deployment.shapes(spec, info)
    own, info = info, deployment.deployed(info, fixed)  # samples are sized and checked for the deployed shape
    dataset = open_dataset(spec, info)
    metric = make_metric(spec, trusted=trust_custom_metrics)
    subset = dataset.subset_indices()
    # Accuracy roles: validation (the drop we report) and an optional held-out evaluation set.
    roles = {"validation": (open_dataset(spec, info, "validation"), None) if spec.validation else
             (dataset, list(range(len(dataset))))}
    if spec.evaluation:
        roles["evaluation"] = (open_dataset(spec, info, "evaluation"), None)
    roles = {k: (ds, idx if idx is not None else ds.subset_indices()) for k, (ds, idx) in roles.items()}
    problems = eligibility.errors(eligibility.spec_problems(
        spec, annotated=roles["validation"][0].annotated, metric_needs_labels=metric.needs_labels))
    core = ov.Core()
    problems += eligibility.device_problems(spec, core)
    _refuse(problems)
    stem = model_stem(source)
    fp32 = deployment.reshape(read_model(core, str(xml)), fixed, spec)  # the INT8 model keeps it

    # Baseline first: it decodes every sample, so bad data fails before anything is written.
    step("baseline accuracy")
    compiled = core.compile_model(fp32, spec.device, config_for(F32, spec.device))
    out = output_index(compiled, spec.accuracy.output,
                       lambda m: spec.problem(m, "accuracy", "output", rule="spec"))
    base = _accuracy(compiled, roles, metric, out, None, step.within("baseline accuracy"), cancel)
    del compiled

    int8_float = spec.inference.int8_float_precision
    staging = Staging(spec.output_dir)
    try:
        step("calibrating")
        t0 = time.perf_counter()
        outcome = None
        if spec.calibration.method == "accuracy_aware":
            outcome = calibrate_accuracy_aware(core, fp32, spec, dataset, subset, roles["validation"], metric,
                                               base["validation"], out, step.within("calibrating"), cancel)
            int8 = outcome.model
        elif spec.calibration.method == "weights_only":
            int8 = compress_weights(fp32, spec)
        else:
            int8 = quantize_default(fp32, spec, dataset, subset, step.within("calibrating"), cancel)
        calibration_s = time.perf_counter() - t0
        step("saving")
        mark(int8, source=str(spec.model_path), method=spec.calibration.method,
             preset=spec.calibration.preset, version=versions()["int8-workbench"] or "dev")
        tmp_xml = staging.save_model(int8)
        int8 = read_model(core, str(tmp_xml))  # measure what is on disk, not what is in memory
        quantize_ops = sum(op.get_type_name() == "FakeQuantize" for op in int8.get_ops())

        step("INT8 accuracy")
        compiled = core.compile_model(int8, spec.device, config_for(INT8, spec.device, int8_float))
        q = _accuracy(compiled, roles, metric, out, base, step.within("INT8 accuracy"), cancel)
        del compiled
        accuracy = _accuracy_fields(spec, metric, base, q)
        budget = _budget(spec, metric, base["validation"], q["validation"], outcome, accuracy["heldout"])

        sample = dataset.load(subset[0])
        step(SPEED)
        speed = performance.measure_interleaved(
            core, {name: (model, config_for(name, spec.device, int8_float), sample)
                   for name, model in ((F32, fp32), (DEFAULT, fp32), (INT8, int8))},
            spec.device, spec.inference, step.within(SPEED), cancel,
            lambda records: undecided(records, spec.calibration.faster_in))
        step("per-layer profile")
        layers = {F32: performance.profile(core, fp32, spec.device, config_for(F32, spec.device), sample),
                  INT8: performance.profile(core, int8, spec.device, config_for(INT8, spec.device, int8_float),
                                            sample)}

        met = budget is None or budget.met
        device_default = default_precision(core, spec.device)
        speed_fields = _speed_fields(spec, speed, layers, device_default)
        aside = "over-budget" if not met else None if speed_fields["recommendation"]["answer"] else "not-faster"
        finals = output_paths(spec.output_dir, stem, aside)
        profile = deployment.profile(spec, own, fixed, dataset.kind in ("imagenet", "image_list", "images"),
                                     device_default, len(precise_layers(tmp_xml)))
        typed = Result(
            spec=str(spec.path), model=str(spec.model_path), device=spec.device,
            device_default_precision=device_default, method=spec.calibration.method,
            preset=spec.calibration.preset,
            dataset={"kind": dataset.kind, "size": len(dataset), "subset": len(subset),
                     "subset_spec": spec.dataset.subset, "seed": spec.dataset.seed},
            **accuracy, **speed_fields,
            model_size={"fp32": _pair_size(xml, info.bin_path),
                        "int8": _pair_size(tmp_xml, tmp_xml.with_suffix(".bin"))},
            output={k: str(v) for k, v in finals.items()}, settings=spec.inference.model_dump(),
            timing_s={"calibration": round(calibration_s, 3), "total": round(time.time() - started, 3)},
            versions=versions(), budget=_stated(budget, profile), deployment=profile, quantize_ops=quantize_ops,
            conversion={"source": str(source), "ir": str(xml), "route": conversion.ROUTE} if xml != source else None,
            controls={**spec.calibration.model_dump(), "ignored_layers": sorted(ignored_scope.matched(spec, table))},
            **_accuracy_aware_fields(outcome))
        warnings = _warnings(spec, [base, q], outcome)
        typed.notes.extend(_notes(spec, outcome, len(roles["validation"][1])) + [f"{w.message}." for w in warnings])
        if warnings:
            typed.warnings = [w.to_dict() for w in warnings]
        result = typed.to_json()
        staging.write_json("result", result)
        staging.write_text("report", render_html(typed))
        staging.commit({k: v for k, v in finals.items() if k in staging.pending}, journal,
                       guard=lambda: _refuse(eligibility.output_problems(spec)))  # another run may have committed
    except BaseException:
        staging.discard()
        raise
    for old in superseded(spec.output_dir, stem, spec.path, aside):
        old.unlink(missing_ok=True)
    step("per-layer profile", 1.0)
    if not met and budget.heldout == "exceeded":
        raise CalibrationError(spec.problem(
            f"the answer keeps max_drop ≤ {budget.max_drop:g} on the validation samples but not on the held-out "
            f"ones: {budget.unseen}; it is kept as {finals['model'].name}",
            "calibration", "max_drop", rule="budget-not-confirmed",
            fix="give [validation] more samples (the search fitted the ones it has), or raise max_drop"))
    if not met:
        unit = "" if spec.calibration.drop_type == "absolute" else " (relative)"
        raise CalibrationError(spec.problem(
            f"required drop ≤ {budget.max_drop:g}{unit} cannot be reached; best found: "
            f"{budget.measured:.4g} (bound judged: {budget.bound:.4g}) with {len(outcome.fp32_layers)} of {outcome.quantized_units} quantized layers "
            f"in FP32; that attempt is kept as {finals['model'].name}",
            "calibration", "max_drop", rule="budget-unreachable",
            fix="raise max_drop, give calibration more representative data, or deploy the FP32 model"))
    return result


def _notes(spec: Spec, outcome, samples: int) -> list[str]:
    """What the figures cannot promise: a budget the validation set cannot resolve, a search cut short."""
    notes = [f"{p.message}: {p.fix}." for p in eligibility.budget_problems(spec, samples)]
    search = outcome.search if outcome else {}
    if search.get("cut_short"):
        notes.append(f"AccuracyAware's search stopped at its cap of {search['max_validations']} validations with "
                     f"{search['untried_groups']} FP32 groups not tried back in INT8: the answer is within budget "
                     "but not minimal; more layers may run INT8.")
    return notes


def _stated(budget: AccuracyAwareBudget | None, profile: dict) -> AccuracyAwareBudget | None:
    """The promise names the profile it was measured on: it holds there, not necessarily elsewhere."""
    if budget is not None and budget.guarantee:
        budget.guarantee += f"; measured at the deployment profile: {deployment.describe(profile)}"
    return budget


def _refuse(problems: list) -> None:
    if problems:
        raise CalibrationError(problems)


def _budget(spec: Spec, metric, fp32: Evaluation, int8: Evaluation, outcome,
            held: dict | None = None) -> AccuracyAwareBudget | None:
    """AccuracyAware's promise, checked on the saved model's own validation run, at the spec's
    confidence, then confirmed on the held-out set when there is one: samples the search never
    saw, so the luckiest of its candidates cannot pass there by luck. A held-out drop over the
    budget on evidence (its whole interval) breaks the promise: the answer is set aside."""
    if outcome is None:
        return None
    drop, drop_rel = degradation(metric, fp32.accuracy, int8.accuracy)
    c = spec.calibration
    measured = drop_rel if c.drop_type == "relative" else drop
    ok, bound = accepts(spec, metric, fp32, int8)
    sure = f"with {c.confidence:.0%} confidence (one-sided, paired bootstrap)" \
        if c.confidence and fp32.scores is not None else "as measured"
    verdict, unseen = _held_out_verdict(spec, held)
    met = outcome.met and ok and within(measured, c.max_drop) and verdict != "exceeded"
    guarantee = (f"{c.drop_type} drop ≤ {c.max_drop:g} {sure} on the {fp32.size} validation samples; "
                 f"unseen data: {unseen}" if met else
                 f"none: on unseen data, {unseen}" if verdict == "exceeded" else
                 f"none: the best model found keeps a drop bound of {bound:.4g} > {c.max_drop:g}")
    return AccuracyAwareBudget(max_drop=c.max_drop, drop_type=c.drop_type, measured=measured, met=met,
                               confidence=c.confidence, bound=round(bound, 6), guarantee=guarantee, heldout=verdict,
                               unseen=unseen)


def _held_out_verdict(spec: Spec, held: dict | None) -> tuple[str | None, str]:
    """The held-out set's verdict on the budget ("met", "exceeded", "undecided": its drop's 95 %
    interval, the result's `heldout.drop_ci`, against max_drop), and the same in words."""
    if held is None:
        return None, "no held-out set ([evaluation]) to confirm it on"
    if held["drop_ci"] is None:
        return None, "see the held-out figures (the metric gives no per-sample scores to bound them with)"
    low, high = held["drop_ci"]
    if spec.calibration.drop_type == "relative":
        scale = abs(held["fp32"]) or 1.0
        low, high = low / scale, high / scale
    verdict = stats.budget_verdict((low, high), spec.calibration.max_drop)
    words = {"met": "within the budget", "exceeded": "over the budget", "undecided": "not decided either way"}[verdict]
    return verdict, (f"{words} on the {held['size']} held-out samples (drop 95 % interval "
                     f"{low:.4g} to {high:.4g})")


def _accuracy(compiled, roles: dict, metric, out: int, reference: dict | None, progress, cancel) -> dict:
    """Evaluations per role; `reference` (the FP32 ones) feeds label-free metrics."""
    results, total = {}, sum(len(idx) for _, idx in roles.values())
    done = 0
    for role, (ds, idx) in roles.items():
        offset = done
        results[role] = evaluate(compiled, ds, idx, metric, output=out,
                                 references=reference[role].references if reference else None,
                                 progress=lambda f: progress((offset + f * len(idx)) / total), cancel=cancel)
        done += len(idx)
    return results


def _accuracy_fields(spec: Spec, metric, base: dict, q: dict) -> dict:
    """The result's accuracy figures: validation (the drop) and the optional held-out set."""
    drop, drop_relative = degradation(metric, base["validation"].accuracy, q["validation"].accuracy)
    def ci(role: str) -> list[float] | None:
        if base[role].scores is None or q[role].scores is None:
            return None
        return [round(x, 6) for x in stats.paired_drop_ci(base[role].scores, q[role].scores, metric.higher_is_better)]

    held = None
    if "evaluation" in base:
        held = {"fp32": base["evaluation"].accuracy, "int8": q["evaluation"].accuracy,
                "drop": degradation(metric, base["evaluation"].accuracy, q["evaluation"].accuracy)[0],
                "size": base["evaluation"].size, "drop_ci": ci("evaluation")}
    return {"metric": metric.name,
            "accuracy_on": {"role": "validation" if spec.validation else "dataset",
                            "size": base["validation"].size},
            "fp32": {"accuracy": base["validation"].accuracy, "precision_hint": "f32"},
            "int8": {"accuracy": q["validation"].accuracy},
            "drop": drop, "drop_relative": drop_relative, "drop_ci": ci("validation"),
            "metric_higher_is_better": metric.higher_is_better,
            **({"no_interval": NO_INTERVAL} if base["validation"].scores is None else {}),
            "heldout": held}


def _warnings(spec: Spec, evaluations: list[dict], outcome) -> list[Problem]:
    """What the figures rest on that the user should know: a metric's per_sample() that does not add
    up to its compute() (once, as first seen), AccuracyAware judging a metric without per-sample scores."""
    found: dict[str, Problem] = {}
    for ev in (e for evs in evaluations for e in evs.values()):
        for w in ev.warnings:
            found.setdefault(w.rule, w)
    if outcome is not None and spec.calibration.confidence > 0 and evaluations[0]["validation"].scores is None:
        found["metric-no-interval"] = spec.problem(
            f"AccuracyAware accepted on the measured drop, not at {spec.calibration.confidence:.0%} confidence: "
            f"{NO_INTERVAL}, so the drop has no interval", "accuracy", "custom", rule="metric-no-interval",
            severity="warning", fix="give the metric per_sample(): a float or a (numerator, denominator) pair per sample")
    return list(found.values())


def _speed_fields(spec: Spec, speed: dict, layers: dict, device_default: str) -> dict:
    """The result's speed figures and per-layer tables, with the notes they call for."""
    throughput = {k: round(v["throughput"], 2) for k, v in speed.items()}
    speedup = {"vs_f32": performance.speedup(speed, INT8, F32), "vs_default": performance.speedup(speed, INT8, DEFAULT),
               "latency_vs_f32": performance.latency_speedup(speed, INT8, F32),
               "latency_vs_default": performance.latency_speedup(speed, INT8, DEFAULT)}
    notes = []
    vs = speedup["vs_default"]
    if vs["verdict"] == "slower":
        notes.append(f"The INT8 model is slower than the FP32 model as {spec.device} runs it by default "
                     f"({device_default}): {vs['value']:.2f}x its throughput (95 % interval {vs['ci'][0]:.2f}-"
                     f"{vs['ci'][1]:.2f}x over {vs['rounds']} interleaved rounds).")
    int8_rows = [r for r in layers[INT8] if r["runtimePrecision"] in ("u8", "i8")]
    if not int8_rows:
        notes.append("No layer runs in INT8 on this device: the calibration brought no INT8 execution.")
    return {"recommendation": recommend(spec, speedup["vs_default"], speed, device_default,
                                        speedup["latency_vs_default"]),
            "throughput": throughput,
            "latency_ms": {k: round(v["latency_ms"]["median"], 3) for k, v in speed.items()},
            "speed": speed,
            "speedup": speedup, "machine": machine.describe(),
            "layers": layers,
            "layer_summary": {k: performance.summarise(v) for k, v in layers.items()},
            "int8_layer_count": len(int8_rows),
            "notes": notes}


def _accuracy_aware_fields(outcome) -> dict:
    """AccuracyAware's record (none for Default): the layers left in FP32 and how the search went."""
    if outcome is None:
        return {}
    record = outcome.record()
    return {"fp32_layers": record.pop("fp32_layers"), "accuracy_aware": AccuracyAwareRecord(**record),
            "search": outcome.search}


def _pair_size(xml, bin_path) -> int:
    return os.path.getsize(xml) + os.path.getsize(bin_path)
