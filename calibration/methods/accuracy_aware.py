"""AccuracyAware calibration: the cheapest set of layers back in FP32 that keeps the drop within budget.

NNCF's accuracy control re-validates the model on its ranking subset once per quantizer group,
then reverts groups one at a time with a full validation each. We rank every group of quantized
layers (layers sharing a quantizer go together) by how much of the output error it alone removes
when put back in FP32, on the 16 validation samples INT8 hurt most (a compile and 16 inferences
per group). Then, each step a measured full validation:
1. the shortest prefix of that ranking that meets the budget (doubling + bisection);
2. for speed, the ranking re-ordered by sensitivity per multiply-add, only prefixes that cost less
   FP32 compute than the best answer so far (one large convolution in FP32 can cost more time
   than a dozen small layers);
3. the cheapest passing answer gives groups back to INT8, costliest first, while the budget holds:
   one at a time, then in growing chunks while they pass (most passengers are small groups).
With `search = "from_float"` there is no ranking and no prefix: every group starts in FP32 and step 3
runs from there, with the whole cap (BENCHMARKS.md: where many layers need float, the prefixes buy
little that the give-back would not find, and the ranking costs a compile per group).
A few dozen full validations at most. Every accepted answer is a measured validation, judged by the
upper bound of its drop at the spec's `confidence` (not the drop alone: with a few hundred samples,
dozens of candidates and a budget of a sample or two, the luckiest candidate fits the validation set
and loses several times the budget on unseen data). When nothing meets it, we say so and never
pretend; when the give-back pass runs out of validations, the result says the answer is not minimal.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Callable

import numpy as np
import openvino as ov
from openvino._offline_transformations import compress_quantize_weights_transformation

from .. import stats
from ..datasets import Dataset
from ..evaluation import Evaluation, evaluate
from ..gate import within
from .nncf import Feed, nncf_settings, quantize
from .probes import where_to_probe
from .ranking import rank
from .macs import layer_macs
from .rejection import Rejection
from ..metrics import Metric, degradation
from ..precise import keep_precise, lowered
from ..problems import Cancelled
from ..runtime import INT8, config_for
from ..spec import Spec

RANKING_SAMPLES = 16  # the validation samples INT8 hurt most; enough to order the layers
RANKING_VALUES = 8_000_000  # ... or fewer, large ones: at most this many input values in all (at least 4)
MIN_RANKING_SAMPLES = 4
MAX_VALIDATIONS = 40  # full validations in all; the give-back pass stops there
EARLY_REJECTION = True  # end a validation once its candidate cannot pass (rejection.py): same answers, sooner
STOPPED_COST = 0.25    # the least a validation ended early counts against the cap: its compile, mostly


def spent(probes: list[dict], samples: int) -> float:
    """Validations so far, in full validations: one ended early counts for the share of samples it ran
    (at least STOPPED_COST), so the give-back pass tries more groups in the same time."""
    return sum(max(STOPPED_COST, p["stopped_after"] / samples) if p.get("stopped_after") else 1.0 for p in probes)


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
    search: dict = field(default_factory=dict)  # how the search ended: cut short, validations used

    def record(self) -> dict:
        return {"met": self.met, "validation_accuracy": self.accuracy, "drop": self.drop,
                "drop_relative": self.drop_relative, "fp32_layers": self.fp32_layers,
                "quantized_layers": self.quantized_units, "probes": self.probes}


def accepts(spec: Spec, metric: Metric, baseline: Evaluation, ev: Evaluation) -> tuple[bool, float]:
    """Whether `ev` keeps the budget, and the drop bound judged: the one-sided upper bound at the
    spec's confidence (the measured drop when confidence is 0, or when the metric gives no
    per-sample scores to bound it with), so a candidate that merely got lucky on the validation
    set's few changed samples is not accepted."""
    relative = spec.calibration.drop_type == "relative"
    drop, drop_rel = degradation(metric, baseline.accuracy, ev.accuracy)
    bound = drop
    if spec.calibration.confidence > 0 and baseline.scores is not None and ev.scores is not None:
        bound = max(drop, stats.drop_upper_bound(baseline.scores, ev.scores, metric.higher_is_better,
                                                 spec.calibration.confidence))
    if relative:
        bound = bound / abs(baseline.accuracy) if baseline.accuracy else (0.0 if bound == 0 else math.inf)
    return within(bound, spec.calibration.max_drop), bound


def _units(model: ov.Model) -> list[ov.Node]:
    """Quantized layers: ops fed by at least one FakeQuantize (activations or weights)."""
    return [op for op in model.get_ordered_ops() if op.get_type_name() != "FakeQuantize" and any(
        i.get_source_output().get_node().get_type_name() == "FakeQuantize" for i in op.inputs())]


def _groups(model: ov.Model) -> list[list[str]]:
    """Quantized layers joined when they share a quantizer, in graph order: they go back to FP32
    together. Errors of one quantized tensor read by several layers partly cancel (a LayerNorm's
    `x - mean(x)` reads the same INT8 `x` twice); reverting only one reader breaks the cancelling
    and makes the model *worse*, so a revert that does not take all of them misleads the search."""
    names = [u.get_friendly_name() for u in _units(model)]
    parent = {n: n for n in names}

    def root(n: str) -> str:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for op in model.get_ordered_ops():
        if op.get_type_name() == "FakeQuantize":
            readers = [t.get_node().get_friendly_name() for t in op.output(0).get_target_inputs()]
            readers = [r for r in readers if r in parent]
            for other in readers[1:]:
                parent[root(other)] = root(readers[0])
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(root(n), []).append(n)
    return list(groups.values())


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
           compress: bool = True, precise: bool = False) -> ov.Model:
    """A copy of the FakeQuantize model with the named layers' inputs taken before their quantizers
    and their corrected biases (see `corrected_biases`) restored, its weights compressed to INT8 as
    they will be saved: what is measured is what is shipped (INT8 constants do not compute exactly
    like FakeQuantize on FP32 weights). `precise`: the named layers also run in strict f32 when the
    device runs floats lower (bf16), or putting them back in float would not restore them."""
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
    return keep_precise(copy, names) if precise and names else copy


def calibrate_accuracy_aware(core: ov.Core, fp32: ov.Model, spec: Spec, dataset: Dataset, subset: list[int],
                             validation: tuple[Dataset, list[int]], metric: Metric, baseline: Evaluation,
                             out: int, progress: Callable[[float], None] | None = None,
                             cancel: Callable[[], bool] | None = None) -> Outcome:
    say = progress or (lambda f: None)
    val_ds, val_idx = validation
    int8_config = config_for(INT8, spec.device, spec.inference.int8_float_precision)
    # reverted layers in strict f32 while the rest runs bf16, when asked for
    precise = spec.calibration.precise_reverted and lowered(core, spec.device, spec.inference.int8_float_precision)

    feed = Feed(dataset, subset, lambda f: say(0.4 * f), cancel)
    quantized = quantize(fp32, feed, **nncf_settings(spec, len(subset), compress_weights=False))
    probes: list[dict] = []
    repeats = [0]  # validations asked for a layer set already measured, answered from memory
    biases = corrected_biases(fp32, quantized)

    seen: dict[frozenset, dict] = {}  # layer set -> its validation: the searches often meet again
    rejection: Rejection | None = None  # set once the all-INT8 validation says which samples to run first
    samples_run = [0]

    def measure(chosen: list[int], full: bool = False) -> dict:
        """One validation with the ranked groups `chosen` in FP32 (once per distinct layer set), ended
        early once the candidate cannot pass (methods/rejection.py) unless `full`."""
        if cancel and cancel():
            raise Cancelled()
        names = {n for g in chosen for n in ranked[g][0]}
        if frozenset(names) in seen and not (full and seen[frozenset(names)].get("stopped_after")):
            repeats[0] += 1
            return seen[frozenset(names)]
        compiled = core.compile_model(revert(quantized, names, biases, precise=precise), spec.device, int8_config)
        early = None if full else rejection
        ev = evaluate(compiled, val_ds, val_idx, metric, output=out, references=baseline.references, cancel=cancel,
                      order=early.order if early else None, hopeless=early.hopeless if early else None)
        samples_run[0] += ev.stopped_after or len(val_idx)
        if ev.stopped_after:
            accuracy, bound = early.condemned
            ok, extra = False, {"stopped_after": ev.stopped_after}
        else:
            (ok, bound), accuracy, extra = accepts(spec, metric, baseline, ev), ev.accuracy, {}
        drop, drop_rel = degradation(metric, baseline.accuracy, accuracy)
        row = {"groups": sorted(chosen), "fp32_layers": len(names), "macs": sum(cost.get(n, 0) for n in names),
               "accuracy": accuracy, "drop": drop, "drop_relative": drop_rel, "drop_bound": bound,
               "ok": ok, **extra, "scores": ev.scores}
        probes.append(row)
        seen[frozenset(names)] = row
        return row

    ranked: list[tuple[list[str], list[str], float]] = []
    where = None  # the ranking's probes: in this process, or on the job's Ray cluster
    per_probe = 0  # ... and the samples each probe runs
    cost: dict[str, int] = {}       # multiply-adds per layer
    group_macs: list[int] = []      # ... and per ranked group
    first = measure([])
    say(0.45)
    judge = functools.partial(accepts, spec, metric, baseline)
    early = Rejection(metric, baseline, Evaluation(first["accuracy"], first["scores"]), judge)
    rejection = early if EARLY_REJECTION and early.order else None
    if not first["ok"]:
        groups = _groups(quantized)
        types = {op.get_friendly_name(): op.get_type_name() for op in _units(quantized)}
        scores: list[float | None] = [None] * len(groups)
        if spec.calibration.search == "ranked":
            # Rank on the samples INT8 got most wrong, where a layer's damage shows.
            damage = stats.per_sample_drops(baseline.scores, first["scores"], metric.higher_is_better)
            per_probe = ranking_samples(val_ds.load(val_idx[0]))
            order = [val_idx[i] for i in np.argsort(-damage, kind="stable")[:per_probe]] if damage is not None \
                else val_idx[:per_probe]  # a metric without per-sample scores: the first samples
            where = where_to_probe()
            ranking = rank(core, fp32, quantized, groups, functools.partial(revert, biases=biases, precise=precise),
                           spec.device, int8_config, val_ds, order, lambda f: say(0.45 + 0.3 * f), cancel, where)
            groups, scores = [groups[g] for g, _ in ranking], [score for _, score in ranking]
        ranked = [(g, [types[n] for n in g], score) for g, score in zip(groups, scores)]
        cost = layer_macs(core, fp32, val_ds.load(val_idx[0]), set(types))
        group_macs = [sum(cost.get(n, 0) for n in g) for g, _, _ in ranked]
        say(0.75)
    if ranked and spec.calibration.search == "from_float":
        measure(list(range(len(ranked))))  # all in float: where the give-back starts
    elif ranked:
        steps = 2 * math.log2(len(ranked) + 2) + 2
        tick = lambda done: say(0.75 + 0.2 * min(done / steps, 1.0))  # noqa: E731
        # 1. The shortest prefix of the ranking that meets the budget (fewest groups).
        _search(len(ranked), lambda k: measure(list(range(k)))["ok"], tick)
        # 2. Speed: a layer in FP32 costs time in proportion to its multiply-adds, so also try the
        #    ranking re-ordered by sensitivity per cost; only prefixes cheaper than the best so far.
        smooth = max(1, sum(group_macs) // max(len(ranked), 1))
        passing = [p for p in probes if p["ok"]]
        if passing:
            cap = min(p["macs"] for p in passing)
            useful = [g for g in range(len(ranked)) if ranked[g][2] > 0 and group_macs[g] < cap]
            useful.sort(key=lambda g: -ranked[g][2] / (group_macs[g] + smooth))
            affordable = sum(1 for total in accumulate(group_macs[g] for g in useful) if total < cap)
            if affordable:
                _search(affordable, lambda k: measure(useful[:k])["ok"], tick)
    passing = [p for p in probes if p["ok"]]
    best = min(passing, key=lambda p: (p["macs"], p["fp32_layers"])) if passing else min(probes, key=lambda p: p["drop"])
    if best.get("stopped_after"):  # nothing passed: the best attempt, set aside, gets its real figures
        best = measure(best["groups"], full=True)
    chosen = list(best["groups"])
    untried, never_tried = 0, set()
    if best["ok"]:
        # 3. A prefix may carry passengers: give groups back to INT8, the costliest first (then the
        #    least sensitive), keeping each change the budget still allows.
        def without(chunk: list[int]) -> bool:
            nonlocal chosen, best
            row = measure([c for c in chosen if c not in chunk])
            if row["ok"]:
                chosen, best = [c for c in chosen if c not in chunk], row
            return row["ok"]

        order = sorted(chosen, key=lambda g: (-group_macs[g], -g))
        untried = give_back(order, without, lambda: spent(probes, len(val_idx)) >= MAX_VALIDATIONS)
        never_tried = set(order[len(order) - untried:]) if untried else set()
    names = {n for g in chosen for n in ranked[g][0]}
    final = revert(quantized, names, biases, precise=precise)
    fp32_layers = []
    for g in sorted(chosen):
        group, types, score = ranked[g]
        for name, kind in zip(group, types):
            along = f" together with {', '.join(n for n in group if n != name)} (they share a quantizer)" \
                if len(group) > 1 else ""
            fp32_layers.append({"name": name, "type": kind, "score": score, "macs": cost.get(name, 0),
                                **({"rank": g + 1} if score is not None else {}), "precise": precise,
                                "reason": _why_float(g, len(ranked), score, along, "untried" if g in never_tried
                                                     else "failed" if best["ok"] else "unmet")})
    say(1.0)
    search = {"strategy": spec.calibration.search, "cut_short": untried > 0, "validations": len(probes),
              "max_validations": MAX_VALIDATIONS,
              "untried_groups": untried, "ranked_groups": len(ranked), "repeats_avoided": repeats[0],
              "ranked_on": "ray" if where else "this process", "probes_on_cluster": where.on_cluster if where else 0,
              "stopped_early": sum(1 for p in probes if p.get("stopped_after")), "samples_run": samples_run[0],
              "ranking_samples": per_probe}
    return Outcome(final, best["ok"], best["accuracy"], best["drop"], best["drop_relative"], fp32_layers,
                   len(_units(quantized)),
                   [{k: v for k, v in p.items() if k != "scores"} for p in probes], search)


def _why_float(g: int, groups: int, score: float | None, along: str, give_back: str) -> str:
    """Why a layer is in FP32: its rank (a ranked search), else what the give-back found: it `failed`
    back in INT8, was `untried` (cut short), or nothing met the budget (`unmet`)."""
    if score is not None:
        return f"rank {g + 1} of {groups}: back in FP32{along}, it alone removes {score:.1%} of the output error"
    return {"failed": f"left in FP32{along}: back in INT8 it broke the budget",
            "untried": f"left in FP32{along}: not tried back in INT8 (the search was cut short)",
            "unmet": f"in FP32{along} in the best attempt (no candidate met the budget)"}[give_back]


def ranking_samples(sample: dict) -> int:
    """How many samples the ranking probes run: 16 small ones (word crops, 224x224 images), fewer
    large ones. A 960x736 page holds dozens of words, as much evidence as 16 crops, and every probe
    runs every ranking sample: 16 pages made the ranking half of a detector's search (BENCHMARKS.md,
    "AccuracyAware on a detector INT8 hurts")."""
    values = sum(np.size(v) for v in sample.values())
    return max(MIN_RANKING_SAMPLES, min(RANKING_SAMPLES, RANKING_VALUES // max(values, 1)))


def give_back(order: list[int], without: Callable[[list[int]], bool], exhausted: Callable[[], bool]) -> int:
    """Tries `order`'s groups back in INT8 in chunks, keeping every chunk `without` accepts; returns
    how many groups were never tried (the validations ran out). A chunk that passes doubles the
    next one, a failing one is halved and tried again; a single group that fails stays in float.
    Most passengers are small groups at the end of the order: one at a time, the 40-validation cap
    ran out with 64 of 100 groups untried (BENCHMARKS.md, "AccuracyAware with room to decide")."""
    i, size = 0, 1
    while i < len(order):
        if exhausted():
            return len(order) - i
        chunk = order[i:i + size]
        if without(chunk):
            i, size = i + len(chunk), size * 2
        elif size > 1:
            size = max(1, len(chunk) // 2)
        else:
            i += 1
    return 0


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
