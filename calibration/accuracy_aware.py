"""AccuracyAware calibration: the fewest layers back in FP32 that keep the drop within budget.

NNCF's accuracy control ranks quantizers by re-compiling and re-validating the model once
per quantizer group. We rank every quantized layer from ONE pass of the FP32 and INT8 models
with extra outputs (the error each layer adds over the error it receives), then find the
shortest prefix of that ranking that meets the budget by exponential + binary search: a few
validations instead of one per group. Every accepted answer is a measured validation, so
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

RANKING_SAMPLES = 64


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


def revert(model: ov.Model, names: set[str]) -> ov.Model:
    """A copy of the FakeQuantize model with the named layers' inputs taken before their quantizers."""
    copy = model.clone()
    for op in copy.get_ordered_ops():
        if op.get_friendly_name() in names:
            for inp in op.inputs():
                src = inp.get_source_output().get_node()
                if src.get_type_name() == "FakeQuantize":
                    inp.replace_source_output(src.input_value(0))
    return copy


def _upstream_units(op: ov.Node, unit_names: set[str]) -> set[str]:
    """Nearest quantized layers above `op` (through unquantized ops)."""
    found, stack, seen = set(), [i.get_source_output().get_node() for i in op.inputs()], set()
    while stack:
        node = stack.pop()
        name = node.get_friendly_name()
        if name in seen:
            continue
        seen.add(name)
        if name in unit_names:
            found.add(name)
        elif node.get_type_name() not in ("Parameter", "Constant"):
            stack.extend(i.get_source_output().get_node() for i in node.inputs())
    return found


def rank(core: ov.Core, fp32: ov.Model, quantized: ov.Model, device: str, dataset: Dataset,
         samples: list[int]) -> list[tuple[str, str, float]]:
    """(name, type, sensitivity) of every quantized layer, most sensitive first.

    Sensitivity = relative squared error of the layer's output in the INT8 model against FP32,
    minus the largest such error among the quantized layers feeding it: what the layer adds."""
    units = _units(quantized)
    names = [u.get_friendly_name() for u in units]
    fp32_ops = {op.get_friendly_name(): op for op in fp32.get_ordered_ops()}
    common = [n for n in names if n in fp32_ops]

    def probe(model: ov.Model, ops: list[ov.Node], config: dict) -> tuple[ov.InferRequest, int]:
        """A request whose outputs are the model's own, then each op's output."""
        copy = model.clone()
        by_name = {op.get_friendly_name(): op for op in copy.get_ordered_ops()}
        copy.add_outputs([by_name[op.get_friendly_name()].output(0) for op in ops])
        return core.compile_model(copy, device, config).create_infer_request(), len(copy.outputs) - len(ops)

    (q_req, q_skip), (f_req, f_skip) = (probe(quantized, [u for u in units if u.get_friendly_name() in common],
                                              config_for(INT8, device)),
                                        probe(fp32, [fp32_ops[n] for n in common], config_for("fp32_f32", device)))
    err = np.zeros(len(common))
    for i in samples:
        x = dataset.load(i)
        q_out = q_req.infer(x, share_inputs=False)
        f_out = f_req.infer(x, share_inputs=False)
        for j in range(len(common)):
            a = np.asarray(q_out[q_skip + j], dtype=np.float64)
            b = np.asarray(f_out[f_skip + j], dtype=np.float64)
            err[j] += float(np.sum((a - b) ** 2) / (np.sum(b ** 2) + 1e-12))
    err /= max(1, len(samples))
    by_name = dict(zip(common, err))
    unit_set = set(names)
    scored = []
    for u in units:
        name = u.get_friendly_name()
        own = by_name.get(name, 0.0)
        inherited = max((by_name.get(n, 0.0) for n in _upstream_units(u, unit_set)), default=0.0)
        scored.append((name, u.get_type_name(), max(own - inherited, 0.0) + 1e-3 * own))
    return sorted(scored, key=lambda s: -s[2])


def calibrate_accuracy_aware(core: ov.Core, fp32: ov.Model, spec: Spec, dataset: Dataset, subset: list[int],
                             validation: tuple[Dataset, list[int]], metric: Metric, baseline: Evaluation,
                             out: int, progress: Callable[[float], None] | None = None,
                             cancel: Callable[[], bool] | None = None) -> Outcome:
    budget = spec.calibration.max_drop
    relative = spec.calibration.drop_type == "relative"
    say = progress or (lambda f: None)
    val_ds, val_idx = validation

    feed = _Feed(dataset, subset, lambda f: say(0.4 * f), cancel)
    params = AdvancedQuantizationParameters(backend_params={"compress_weights": False})
    quantized = _quiet(nncf.quantize, fp32, nncf.Dataset(feed), advanced_parameters=params,
                       subset_size=len(subset), **nncf_settings(spec))
    probes: list[dict] = []

    def measure(reverted: list[str]) -> dict:
        if cancel and cancel():
            raise Cancelled()
        model = revert(quantized, set(reverted)) if reverted else quantized
        compiled = core.compile_model(model, spec.device, config_for(INT8, spec.device))
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
        ranked = rank(core, fp32, quantized, spec.device, val_ds, order)
        say(0.5)
        # Every probe is recorded; the answer is the smallest measured prefix that passed.
        _search(len(ranked), lambda k: measure([n for n, _, _ in ranked[:k]])["ok"],
                lambda done: say(0.5 + 0.5 * min(done / (2 * math.log2(len(ranked) + 2) + 2), 1.0)))
    ok = [p for p in probes if p["ok"]]
    best = min(ok, key=lambda p: p["fp32_layers"]) if ok else min(probes, key=lambda p: p["drop"])
    reverted = [n for n, _, _ in ranked[:best["fp32_layers"]]]
    final = revert(quantized, set(reverted)) if reverted else quantized
    compress_quantize_weights_transformation(final)  # FakeQuantize weights -> INT8 constants, as NNCF does
    fp32_layers = [{"name": n, "type": t, "score": s, "rank": i + 1,
                    "reason": f"rank {i + 1} of {len(ranked)} by added output error {s:.3g}"}
                   for i, (n, t, s) in enumerate(ranked[:best["fp32_layers"]])]
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
