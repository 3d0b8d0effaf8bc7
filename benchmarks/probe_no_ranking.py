"""AccuracyAware without a ranking: is the ranking worth its time on the PP-OCRv5 recogniser?

    .venv/bin/python benchmarks/probe_no_ranking.py [SEED]

The same split as `bench_aa_splits.py --size 600` (SEED: its split number, default 0), the same quantized
model, acceptance rule and early rejection as the product's search, but no ranking and no prefix search:
every group starts in float and groups go back to INT8 costliest first, in chunks that double while they pass
and halve when they fail (`accuracy_aware.give_back`), within the same 40-validation cap. Printed: wall time
from the baseline validation on (as `bench_aa_splits.py` times ours), validations, groups and multiply-adds left
in float, and the validation and held-out drops. Findings: BENCHMARKS.md, "AccuracyAware on unseen data".
"""
import functools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import openvino as ov

from bench_aa_splits import pooled_lines, write_split
from int8wb.calibration import deployment, inspect_model, load_spec, stats
from int8wb.calibration.datasets import open_dataset
from int8wb.calibration.evaluation import evaluate
from int8wb.calibration.methods.accuracy_aware import (_groups, corrected_biases, revert, layer_macs, accepts,
                                                         give_back, spent, MAX_VALIDATIONS)
from int8wb.calibration.methods.nncf import Feed, nncf_settings, quantize
from int8wb.calibration.methods.rejection import Rejection
from int8wb.calibration.metrics import degradation, make_metric
from int8wb.calibration.runtime import F32, INT8, config_for, read_model
from int8wb.calibration.trust import set_trusted

seed, size = int(sys.argv[1]) if len(sys.argv) > 1 else 0, 600
spec = load_spec(Path(__file__).resolve().parents[1] / "examples" / "ocr" / "ocr.calibration.toml"); set_trusted(spec.path.parent)
lines = pooled_lines(spec)
val_file, held_file = write_split(lines, seed, size)
spec.validation.path, spec.evaluation.path = str(val_file), str(held_file)
info = inspect_model(spec.model_path); fixed = deployment.shapes(spec, info); info = deployment.deployed(info, fixed)
cal, val, held = (open_dataset(spec, info, r) for r in ("dataset", "validation", "evaluation"))
subset, val_idx, held_idx = cal.subset_indices(), val.subset_indices(), held.subset_indices()
for ds, idx in ((cal, subset), (val, val_idx), (held, held_idx)):
    for i in idx: ds.load(i)
metric = make_metric(spec, trusted=True); core = ov.Core()
cfg = config_for(INT8, spec.device, spec.inference.int8_float_precision)
fp32 = deployment.reshape(read_model(core, str(spec.model_path)), fixed, spec)
f32 = core.compile_model(fp32, spec.device, config_for(F32, spec.device))
held_base = evaluate(f32, held, held_idx, metric)
t0 = time.perf_counter()
base = evaluate(f32, val, val_idx, metric)
q = quantize(fp32, Feed(cal, subset, lambda f: None, None), **nncf_settings(spec, len(subset), compress_weights=False))
t_q = time.perf_counter() - t0
biases, groups = corrected_biases(fp32, q), _groups(q)
cost = layer_macs(core, fp32, val.load(val_idx[0]), {n for g in groups for n in g})
gm = [sum(cost.get(n, 0) for n in g) for g in groups]
first = evaluate(core.compile_model(revert(q, set(), biases), spec.device, cfg), val, val_idx, metric)
judge = functools.partial(accepts, spec, metric, base)
early = Rejection(metric, base, first, judge)
probes = []
def measure(floated):
    names = {n for g in floated for n in groups[g]}
    ev = evaluate(core.compile_model(revert(q, names, biases), spec.device, cfg), val, val_idx, metric,
                  order=early.order, hopeless=early.hopeless)
    ok = (not ev.stopped_after) and judge(ev)[0]
    probes.append({"stopped_after": ev.stopped_after} if ev.stopped_after else {})
    return ok
chosen = list(range(len(groups)))
def without(chunk):
    global chosen
    rest = [c for c in chosen if c not in chunk]
    if measure(rest):
        chosen = rest
        return True
    return False
order = sorted(chosen, key=lambda g: (-gm[g], -g))
untried = give_back(order, without, lambda: spent(probes, len(val_idx)) >= MAX_VALIDATIONS)
wall = time.perf_counter() - t0
names = {n for g in chosen for n in groups[g]}
final = core.compile_model(revert(q, names, biases), spec.device, cfg)
v = evaluate(final, val, val_idx, metric); h = evaluate(final, held, held_idx, metric)
print(f"seed {seed}: wall {wall:.0f} s (quantize+baseline {t_q:.0f} s), validations {len(probes)} "
      f"(spent {spent(probes, len(val_idx)):.1f}), untried {untried}, groups in float {len(chosen)} "
      f"layers {len(names)}, float MACs {sum(gm[g] for g in chosen)/1e6:.1f} M of {sum(gm)/1e6:.1f} M; "
      f"val drop {degradation(metric, base.accuracy, v.accuracy)[0]*100:+.2f} pp ok={judge(v)[0]}, "
      f"held drop {degradation(metric, held_base.accuracy, h.accuracy)[0]*100:+.2f} pp "
      f"ci {[round(x*100,2) for x in stats.paired_drop_ci(held_base.scores, h.scores, metric.higher_is_better)]}")
