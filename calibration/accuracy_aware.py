"""AccuracyAware calibration: the fewest layers back in FP32 that keep the drop within budget.

NNCF's accuracy control re-validates the model on its ranking subset once per quantizer group,
then reverts groups one at a time with a full validation each. We rank every quantized layer by
how much of the output error it alone removes when put back in FP32, on the 16 validation
samples INT8 hurt most (a compile and 16 inferences per layer), then find the shortest prefix of
that ranking that meets the budget by doubling + bisection, and finally try giving each of those
layers back to INT8 (least sensitive first): a few dozen full validations at most. Every accepted answer is a measured validation, so
the promise holds by construction; when no prefix meets it, we say so and never pretend.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import nncf
import numpy as np
import openvino as ov
from openvino._offline_transformations import compress_quantize_weights_transformation
from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters

from .datasets import Dataset
from .evaluation import Evaluation, evaluate
from .methods import _Feed, _quiet, nncf_settings
from .metrics import Metric, degradation
from .problems import Cancelled
from .runtime import INT8, config_for
from .spec import Spec

RANKING_SAMPLES = 16  # the validation samples INT8 hurt most; enough to order the layers
MAX_VALIDATIONS = 40  # full validations in all; the give-back pass stops there


@dataclass
class Outcome:
    model: ov.Model                 # FakeQuantize weights compressed to INT8, ready to save
    met: bool
    accuracy: float
    drop: float
    drop_relative: float
    fp32_layers: list[dict]         # the layers left in FP32, with why
    quantized_units: int
    probes: list[dict] = field(default_factory=list)

    def record(self) -> dict:
        return {"met": self.met, "validation_accuracy": self.accuracy, "drop": self.drop,
                "drop_relative": self.drop_relative, "fp32_layers": self.fp32_layers,
                "quantized_layers": self.quantized_units, "probes": self.probes}


def _units(model: ov.Model) -> list[ov.Node]:
    """Quantized layers: ops fed by at least one FakeQuantize (activations or weights)."""
    return [op for op in model.get_ordered_ops() if op.get_type_name() != "FakeQuantize" and any(
        i.get_source_output().get_node().get_type_name() == "FakeQuantize" for i in op.inputs())]


def corrected_biases(fp32: ov.Model, quantized: ov.Model) -> dict[str, np.ndarray]:
    """The FP32 bias of every Add whose constant NNCF's bias correction changed, by the Add's name.

    Bias correction shifts a quantized layer's bias to cancel its quantization error; a layer put
    back in FP32 has no such error, so it must get its original bias back (NNCF's own accuracy
    control restores it too). Keeping the shifted bias makes reverted layers *add* error."""
    originals = {op.get_friendly_name(): op for op in fp32.get_ordered_ops() if op.get_type_name() == "Add"}
    changed = {}
    for op in quantized.get_ordered_ops():
        before = originals.get(op.get_friendly_name()) if op.get_type_name() == "Add" else None
        if before is None:
            continue
        for now, then in zip(op.inputs(), before.inputs()):
            a, b = now.get_source_output().get_node(), then.get_source_output().get_node()
            if a.get_type_name() == b.get_type_name() == "Constant" and a.get_output_shape(0) == b.get_output_shape(0) \
                    and not np.array_equal(a.get_data(), b.get_data()):
                changed[op.get_friendly_name()] = b.get_data().copy()
    return changed


def revert(model: ov.Model, names: set[str], biases: dict[str, np.ndarray] | None = None,
           compress: bool = True) -> ov.Model:
    """A copy of the FakeQuantize model with the named layers' inputs taken before their quantizers
    and their corrected biases (see `corrected_biases`) restored, its weights compressed to INT8 as
    they will be saved: what is measured is what is shipped (INT8 constants do not compute exactly
    like FakeQuantize on FP32 weights)."""
    copy = model.clone()
    for op in copy.get_ordered_ops():
        if op.get_friendly_name() in names:
            for inp in op.inputs():
                src = inp.get_source_output().get_node()
                if src.get_type_name() == "FakeQuantize":
                    inp.replace_source_output(src.input_value(0))
            for target in op.output(0).get_target_inputs():
                add = target.get_node()
                if biases and add.get_friendly_name() in biases:
                    for inp in add.inputs():
                        if inp.get_source_output().get_node().get_type_name() == "Constant":
                            inp.replace_source_output(ov.op.Constant(biases[add.get_friendly_name()]).output(0))
    if compress:
        compress_quantize_weights_transformation(copy)
    return copy


def rank(core: ov.Core, fp32: ov.Model, quantized: ov.Model, device: str, int8_config: dict, dataset: Dataset,
         samples: list[int], progress: Callable[[float], None] | None = None,
         cancel: Callable[[], bool] | None = None) -> list[tuple[str, str, float]]:
    """(name, type, sensitivity) of every quantized layer, most sensitive first.

    Sensitivity = how much closer to the FP32 model's output the whole model gets when only this
    layer returns to FP32, on the samples INT8 hurt most. Measured at the output, because a
    layer's own error says little about what it does downstream (depthwise convolutions with
    near-zero outputs have huge relative errors and no effect). One compile + a few inferences
    per layer, against NNCF's full re-validation per quantizer group."""
    inputs = [dataset.load(i) for i in samples]
    reference = _outputs(core.compile_model(fp32, device, config_for("fp32_f32", device)), inputs)

    def distance(model: ov.Model) -> float:
        got = _outputs(core.compile_model(model, device, int8_config), inputs)
        return float(np.mean([np.sum((g - r) ** 2) / (np.sum(r ** 2) + 1e-12) for g, r in zip(got, reference)]))

    biases = corrected_biases(fp32, quantized)
    start = distance(revert(quantized, set()))
    units = _units(quantized)
    scored = []
    for n, unit in enumerate(units):
        if cancel and cancel():
            raise Cancelled()
        name = unit.get_friendly_name()
        scored.append((name, unit.get_type_name(), (start - distance(revert(quantized, {name}, biases))) / (start + 1e-12)))
        if progress:
            progress((n + 1) / len(units))
    return sorted(scored, key=lambda s: -s[2])


def _outputs(compiled: ov.CompiledModel, inputs: list[dict]) -> list[np.ndarray]:
    request = compiled.create_infer_request()
    return [np.array(request.infer(x, share_inputs=False)[0], dtype=np.float64) for x in inputs]


def calibrate_accuracy_aware(core: ov.Core, fp32: ov.Model, spec: Spec, dataset: Dataset, subset: list[int],
                             validation: tuple[Dataset, list[int]], metric: Metric, baseline: Evaluation,
                             out: int, progress: Callable[[float], None] | None = None,
                             cancel: Callable[[], bool] | None = None) -> Outcome:
    budget = spec.calibration.max_drop
    relative = spec.calibration.drop_type == "relative"
    say = progress or (lambda f: None)
    val_ds, val_idx = validation
    int8_config = config_for(INT8, spec.device, spec.inference.int8_float_precision)

    feed = _Feed(dataset, subset, lambda f: say(0.4 * f), cancel)
    params = AdvancedQuantizationParameters(backend_params={"compress_weights": False})
    quantized = _quiet(nncf.quantize, fp32, nncf.Dataset(feed), advanced_parameters=params,
                       subset_size=len(subset), **nncf_settings(spec))
    probes: list[dict] = []
    biases = corrected_biases(fp32, quantized)

    def measure(reverted: list[str]) -> dict:
        if cancel and cancel():
            raise Cancelled()
        compiled = core.compile_model(revert(quantized, set(reverted), biases), spec.device, int8_config)
        ev = evaluate(compiled, val_ds, val_idx, metric, output=out, references=baseline.references, cancel=cancel)
        drop, drop_rel = degradation(metric, baseline.accuracy, ev.accuracy)
        row = {"fp32_layers": len(reverted), "accuracy": ev.accuracy, "drop": drop, "drop_relative": drop_rel,
               "ok": (drop_rel if relative else drop) <= budget + 1e-12, "scores": ev.scores}
        probes.append(row)
        return row

    first = measure([])
    say(0.45)
    ranked: list[tuple[str, str, float]] = []
    if not first["ok"]:
        # Rank on the samples INT8 got most wrong, where a layer's damage shows.
        damage = first["scores"] - baseline.scores if not metric.higher_is_better else baseline.scores - first["scores"]
        order = [val_idx[i] for i in np.argsort(-damage, kind="stable")[:RANKING_SAMPLES]]
        ranked = rank(core, fp32, quantized, spec.device, int8_config, val_ds, order, lambda f: say(0.45 + 0.3 * f), cancel)
        say(0.75)
        # Every probe is recorded; the answer is the smallest measured prefix that passed.
        _search(len(ranked), lambda k: measure([n for n, _, _ in ranked[:k]])["ok"],
                lambda done: say(0.75 + 0.25 * min(done / (2 * math.log2(len(ranked) + 2) + 2), 1.0)))
    ok = [p for p in probes if p["ok"]]
    best = min(ok, key=lambda p: p["fp32_layers"]) if ok else min(probes, key=lambda p: p["drop"])
    reverted = [n for n, _, _ in ranked[:best["fp32_layers"]]]
    if best["ok"] and len(reverted) > 1:
        # The prefix may carry passengers: give each back to INT8, least sensitive first, and keep
        # the change when the budget still holds (each step one measured validation).
        for name in reversed(reverted[:]):
            if len(reverted) == 1 or len(probes) >= MAX_VALIDATIONS:
                break
            trial = [n for n in reverted if n != name]
            row = measure(trial)
            if row["ok"]:
                reverted, best = trial, row
    final = revert(quantized, set(reverted), biases)
    fp32_layers = [{"name": n, "type": t, "score": s, "rank": i + 1,
                    "reason": f"rank {i + 1} of {len(ranked)}: alone in FP32 it removes {s:.1%} of the output error"}
                   for i, (n, t, s) in enumerate(ranked) if n in set(reverted)]
    say(1.0)
    return Outcome(final, best["ok"], best["accuracy"], best["drop"], best["drop_relative"], fp32_layers,
                   len(_units(quantized)),
                   [{k: v for k, v in p.items() if k != "scores"} for p in probes])


def _search(n: int, passes: Callable[[int], bool], tick: Callable[[int], None]) -> int | None:
    """Smallest k in 1..n with passes(k), assuming passes is (roughly) monotone: doubling to
    bracket it, then bisection. Returns None when even k = n fails."""
    done, lo, k = 0, 0, 1
    while True:
        k = min(k, n)
        done += 1
        tick(done)
        if passes(k):
            hi = k
            break
        if k == n:
            return None
        lo, k = k, k * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        done += 1
        tick(done)
        if passes(mid):
            hi = mid
        else:
            lo = mid
    return hi
