"""Issue #17's speed goal: the model we ship against FP32 as the device runs it and NNCF's Default INT8.

For each case, `int8wb`'s Default calibration (the workflow, as `int8wb calibrate` runs it) decides what
ships: its INT8 model when the recommendation is `int8`, else the FP32 model as the device runs it
(`keep-fp32`). Then, interleaved in rounds on one sample at the deployment shape:
- `fp32_default`: the FP32 model as the device runs it (bf16 on AMX CPUs): the model the user has;
- `shipped`: what we ship, compiled as the result says to deploy it;
- `nncf_default`: bare `nncf.quantize` (PERFORMANCE preset, CPU target) on the same calibration samples.
Throughput (requests in flight) and batch-1 latency (one request) per round (the order rotates every round); the ratios' 95 % intervals
come from the rounds (Student t over per-round log ratios, as the product computes `speedup`).

Goal: shipped ≥ fp32_default (lower bound ≥ 1.0) and ≥ nncf_default (and any saved model given with `--with`).

    .venv/bin/python benchmarks/bench_shipped.py [--only rec|resnet50] [--rounds 8] [--with nncf_aa=MODEL.xml]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import nncf
import openvino as ov

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from int8wb.calibration import deployment, inspect_model, load_spec  # noqa: E402
from int8wb.calibration.conversion import ir_of  # noqa: E402
from int8wb.calibration.datasets import open_dataset  # noqa: E402
from int8wb.calibration.methods.nncf import quiet  # noqa: E402
from int8wb.calibration.performance import latency_speedup, measure_interleaved, speedup  # noqa: E402
from int8wb.calibration.runtime import DEFAULT, INT8, config_for, default_precision, read_model  # noqa: E402
from int8wb.calibration.trust import set_trusted  # noqa: E402
from int8wb.calibration.workflow import calibrate  # noqa: E402
from _common import machine_facts  # noqa: E402

CASES = {"rec": ROOT / "examples" / "ocr" / "ocr.calibration.toml",
         "resnet50": ROOT / "benchmarks" / ".data" / "resnet50" / "resnet50.calibration.toml"}


def run_case(name: str, spec_path: Path, rounds: int, seconds: float, extra: dict[str, Path] | None = None) -> None:
    spec = load_spec(spec_path)
    spec.calibration.method = "default"  # the maximum-performance promise
    out = Path(tempfile.mkdtemp(prefix=f"bench-shipped-{name}-"))
    spec.output.dir = str(out)
    set_trusted(out)
    result = calibrate(spec, trust_custom_metrics=True)
    rec = result["recommendation"]
    print(f"{name}: recommendation {rec['choice']}: {rec['reason']}", flush=True)

    xml = ir_of(spec)
    fixed = deployment.shapes(spec, inspect_model(xml))
    info = deployment.deployed(inspect_model(xml), fixed)
    dataset = open_dataset(spec, info)
    subset = dataset.subset_indices()
    core = ov.Core()
    fp32 = deployment.reshape(read_model(core, str(xml)), fixed, spec)
    theirs = quiet(nncf.quantize, fp32, nncf.Dataset([dataset.load(i) for i in subset]),
                   preset=nncf.QuantizationPreset.PERFORMANCE, target_device=nncf.TargetDevice.CPU,
                   subset_size=len(subset))
    int8_config = config_for(INT8, spec.device, spec.inference.int8_float_precision)
    shipped = (read_model(core, result["output"]["model"]), int8_config) if rec["choice"] == "int8" \
        else (fp32, config_for(DEFAULT, spec.device))
    sample = dataset.load(subset[0])
    settings = spec.inference.model_copy(update={"duration": seconds * rounds, "rounds": rounds})
    variants = {"fp32_default": (fp32, config_for(DEFAULT, spec.device), sample), "shipped": (*shipped, sample),
                "nncf_default": (theirs, int8_config, sample)}
    for other, xml_path in (extra or {}).items():  # saved INT8 models (NNCF's AccuracyAware), at the same shape
        variants[other] = (deployment.reshape(read_model(core, str(xml_path)), fixed, spec), int8_config, sample)
    speed = measure_interleaved(core, variants, spec.device, settings)
    print(f"\n### {name} ({spec_path.relative_to(ROOT)}, shape {fixed or 'as in the model'}, "
          f"device default {default_precision(core, spec.device)}, ships {rec['choice']})\n")
    print("| variant | throughput, median (min–max) | batch-1 latency, median |\n|---|---|---|")
    for variant, figures in speed.items():
        rounds_ = figures["rounds"]
        print(f"| {variant} | {figures['throughput']:.1f}/s ({min(rounds_):.1f}–{max(rounds_):.1f}) | "
              f"{figures['latency_ms']['median']:.3f} ms |")
    print()
    for against in ("fp32_default", "nncf_default", *(extra or {})):
        ratio = speedup(speed, "shipped", against)
        lat = latency_speedup(speed, "shipped", against)
        print(f"- shipped / {against}: throughput {ratio['value']:.3f}× [{ratio['ci'][0]:.3f}–{ratio['ci'][1]:.3f}] "
              f"({ratio['verdict']}); batch-1 latency {against} / shipped {lat['value']:.3f}× [{lat['ci'][0]:.3f}–{lat['ci'][1]:.3f}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=list(CASES))
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=2.0, help="throughput seconds per variant per round")
    parser.add_argument("--with", dest="extra", action="append", default=[], metavar="NAME=MODEL.xml",
                        help="also measure this saved INT8 model, e.g. nncf_aa=examples/ocr/.cache/bench/nncf.xml "
                             "(from bench_accuracy_aware.py); with --only")
    args = parser.parse_args()
    extra = {name: Path(path) for name, path in (item.split("=", 1) for item in args.extra)}
    nncf.set_log_level(40)
    print(machine_facts())
    for name, path in CASES.items():
        if args.only in (None, name):
            if not path.is_file():
                sys.exit(f"{path} missing: run `python examples/ocr/prepare.py` and `benchmarks/bench_default.py` first")
            run_case(name, path, args.rounds, args.seconds, extra if args.only else None)


if __name__ == "__main__":
    main()
