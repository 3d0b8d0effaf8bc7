"""Issue #14 goal: an AccuracyAware answer that holds on unseen data.

On the PP-OCRv5 recogniser example, over several random validation / held-out splits (300 / 300,
drawn from the example's 600 validation and held-out word images; calibration data unchanged):
how often the held-out drop exceeds the budget, ours (accepting on the drop's upper bound at the
spec's `confidence`) next to `nncf.quantize_with_accuracy_control` in the same run, and wall time.
Goal: ours never over budget on held-out at the stated confidence, at ≤ 0.3x NNCF's wall time.

Run: python examples/ocr/prepare.py && .venv/bin/python benchmarks/bench_aa_splits.py [--splits 5]
"""
from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import sys
import time
from pathlib import Path

import nncf
import openvino as ov

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import load_average, machine_facts  # noqa: E402
from bench_accuracy_aware import SPEC, nncf_accuracy_control  # noqa: E402
from int8wb.calibration import deployment, inspect_model, load_spec, stats  # noqa: E402
from int8wb.calibration.datasets import image_list_lines, open_dataset  # noqa: E402
from int8wb.calibration.evaluation import evaluate  # noqa: E402
from int8wb.calibration.methods.accuracy_aware import calibrate_accuracy_aware  # noqa: E402
from int8wb.calibration.metrics import degradation, make_metric  # noqa: E402
from int8wb.calibration.runtime import F32, INT8, config_for, read_model  # noqa: E402

SPLITS = ROOT / "examples" / "ocr" / ".cache" / "splits"


def pooled_lines(spec) -> list[str]:
    """Every validation and held-out line, its path made absolute (the split files live elsewhere)."""
    out = []
    for table in (spec.validation, spec.evaluation):
        listing = spec.resolve(table.path)
        for _, (path, label) in image_list_lines(listing):
            out.append(f"{(listing.parent / path).resolve()}\t{label}")
    return out


def write_split(lines: list[str], seed: int, size: int) -> tuple[Path, Path]:
    rng = random.Random(seed)
    shuffled = lines[:]
    rng.shuffle(shuffled)
    SPLITS.mkdir(parents=True, exist_ok=True)
    val, held = SPLITS / f"validation-{seed}.txt", SPLITS / f"heldout-{seed}.txt"
    val.write_text("\n".join(shuffled[:size]) + "\n", encoding="utf-8")
    held.write_text("\n".join(shuffled[size:2 * size]) + "\n", encoding="utf-8")
    return val, held


def one_split(seed: int, args, lines: list[str]) -> dict:
    val_file, held_file = write_split(lines, seed, args.size)
    spec = load_spec(args.spec)
    spec.calibration.max_drop, spec.calibration.confidence = args.max_drop, args.confidence
    spec.calibration.search = args.search
    spec.validation.path, spec.evaluation.path = str(val_file), str(held_file)
    info = inspect_model(spec.model_path)
    fixed = deployment.shapes(spec, info)  # both methods search at the deployment shape
    info = deployment.deployed(info, fixed)
    cal, val, held = (open_dataset(spec, info, role) for role in ("dataset", "validation", "evaluation"))
    subset, val_idx, held_idx = cal.subset_indices(), val.subset_indices(), held.subset_indices()
    for ds, idx in ((cal, subset), (val, val_idx), (held, held_idx)):  # both methods get decoded samples
        for i in idx:
            ds.load(i)
    metric = make_metric(spec, trusted=True)
    core = ov.Core()
    int8_config = config_for(INT8, spec.device, spec.inference.int8_float_precision)
    def fp32_model():
        return deployment.reshape(read_model(core, str(spec.model_path)), fixed, spec)

    f32 = core.compile_model(fp32_model(), spec.device, config_for(F32, spec.device))
    held_base = evaluate(f32, held, held_idx, metric)

    row = {"seed": seed}
    t0 = time.perf_counter()
    base = evaluate(f32, val, val_idx, metric)
    ours = calibrate_accuracy_aware(core, fp32_model(), spec, cal, subset,
                                    (val, val_idx), metric, base, 0)
    row["ours_s"] = time.perf_counter() - t0
    models = {"ours": ours.model}
    row["ours_fp32_layers"], row["ours_met"] = len(ours.fp32_layers), ours.met
    row["ours_fp32_macs"] = sum(layer["macs"] for layer in ours.fp32_layers)
    row["ours_validations"] = ours.search.get("validations")
    row["ours_cut_short"] = ours.search.get("cut_short")
    row["ours_search"] = ours.search
    row["ours_probes"] = [{k: p[k] for k in ("groups", "fp32_layers", "macs", "ok", "stopped_after") if k in p}
                          for p in ours.probes]  # the search step by step (--json keeps it)
    if not args.ours_only:
        t0 = time.perf_counter()
        models["nncf"] = nncf_accuracy_control(fp32_model(), cal, subset, val, val_idx,
                                               metric, args.max_drop, len(subset))
        row["nncf_s"] = time.perf_counter() - t0
    for name, model in models.items():
        compiled = core.compile_model(model, spec.device, int8_config)
        v = evaluate(compiled, val, val_idx, metric)
        h = evaluate(compiled, held, held_idx, metric)
        row[f"{name}_drop"] = degradation(metric, base.accuracy, v.accuracy)[0]
        row[f"{name}_heldout_drop"] = degradation(metric, held_base.accuracy, h.accuracy)[0]
        row[f"{name}_heldout_ci"] = stats.paired_drop_ci(held_base.scores, h.scores, metric.higher_is_better)
        row[f"{name}_over"] = row[f"{name}_heldout_drop"] > args.max_drop + 1e-9  # as measured on 300 samples
        row[f"{name}_evidently_over"] = row[f"{name}_heldout_ci"][0] > args.max_drop + 1e-9  # all of its interval
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spec", default=str(SPEC))
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--size", type=int, default=300, help="validation and held-out samples per split")
    parser.add_argument("--max-drop", type=float, default=0.01)
    parser.add_argument("--confidence", type=float, default=0.95, help="ours: [calibration] confidence")
    parser.add_argument("--ours-only", action="store_true")
    parser.add_argument("--search", default="ranked", choices=["ranked", "from_float"],
                        help="ours: [calibration] search")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    nncf.set_log_level(logging.ERROR)
    lines = pooled_lines(load_spec(args.spec))
    if len(lines) < 2 * args.size:
        raise SystemExit(f"{len(lines)} pooled images; {2 * args.size} needed")
    spec = load_spec(args.spec)
    print(f"{args.splits} splits of {args.size} / {args.size}; max_drop {args.max_drop}, ours at confidence "
          f"{args.confidence}, search {args.search}; deployment shape {spec.deployment.shapes()}, "
          f"resize {spec.preprocessing.interpolation}, "
          f"float layers {spec.inference.int8_float_precision}; {machine_facts()}; load average {load_average()}")
    rows = []
    for seed in range(args.splits):
        rows.append(one_split(seed, args, lines))
        r = rows[-1]
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items() if k != "ours_probes"},
                         default=str), flush=True)
    names = ["ours"] + ([] if args.ours_only else ["nncf"])
    print("\n| split | " + " | ".join(f"{n} validation drop | {n} held-out drop [95 %] | {n} s" for n in names) + " |")
    print("|---" * (1 + 3 * len(names)) + "|")
    for r in rows:
        cells = [f"{r[f'{n}_drop'] * 100:+.2f} pp | {r[f'{n}_heldout_drop'] * 100:+.2f} pp "
                 f"[{r[f'{n}_heldout_ci'][0] * 100:+.2f}, {r[f'{n}_heldout_ci'][1] * 100:+.2f}]"
                 f"{' **over**' if r[f'{n}_over'] else ''} | {r[f'{n}_s']:.0f}" for n in names]
        print(f"| {r['seed']} | " + " | ".join(cells) + " |")
    for n in names:
        print(f"{n}: held-out over budget in {sum(r[f'{n}_over'] for r in rows)} of {len(rows)} splits as measured, "
              f"in {sum(r[f'{n}_evidently_over'] for r in rows)} with its whole 95 % interval over; "
              f"median wall {statistics.median(r[f'{n}_s'] for r in rows):.0f} s")
    if not args.ours_only:
        ratios = [r["ours_s"] / r["nncf_s"] for r in rows]
        print(f"wall-time ratio ours/NNCF: median {statistics.median(ratios):.2f} (per split "
              f"{', '.join(f'{x:.2f}' for x in ratios)}; goal ≤ 0.3)")
    print(f"load average after: {load_average()}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2, default=list))


if __name__ == "__main__":
    main()
