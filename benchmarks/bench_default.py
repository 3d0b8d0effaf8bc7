"""Our Default calibration step against a bare `nncf.quantize` + `ov.save_model`, alternated in one run.

    .venv/bin/python benchmarks/bench_default.py [--rounds N] [--only resnet50|digits] [--write] [--profile]

"Ours" is the project's own code path for the calibrating and saving phases of
`calibration/workflow.py`, from the spec file to the files on disk, with a cold dataset each round
(so it decodes and preprocesses every PNG itself):

    load_spec → inspect_model → open_dataset + subset_indices → read_model (fresh Core)
    → quantize_default → mark → Staging.save_model → Staging.commit

"Bare" is what a user would write by hand for the same model and the same samples, already
decoded as numpy arrays (obtained once, before timing, through the project's dataset `.load(i)`):

    core.read_model (fresh Core) → nncf.quantize(Dataset(arrays), PERFORMANCE, CPU, subset_size)
    → ov.save_model(compress_to_fp16=False)

The two alternate A B A B … in one process; the figure of merit is median(ours) / median(bare)
(goal ≤ 0.7: ours collects statistics with every infer request busy). Afterwards the two INT8 models are compared: every constant, and the outputs on a
few samples (NNCF is deterministic for the same data, so they should be identical).

Cases:
  digits    the shipped example (examples/digits/digits.calibration.toml, 300 PNGs of 8x8 digits);
            our outputs go to benchmarks/.data/digits/ours so the example's calibrated/ is untouched.
  resnet50  onnx's backend test model light_resnet50.onnx after ConstantFolding, saved as FP32 IR,
            with 300 rendered 256x256 RGB PNGs in class folders and its own *.calibration.toml,
            all cached under benchmarks/.data/resnet50 (rebuilt when missing or stale).
"""
from __future__ import annotations

import argparse
import cProfile
import gc
import hashlib
import io
import pstats
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (DATA_DIR, PeakRSS, ROOT, command_line, fmt_s, load_average,  # noqa: E402
                     machine_facts, md_table, median, update_section)

import numpy as np  # noqa: E402
import openvino as ov  # noqa: E402
import rich  # noqa: E402

import nncf  # noqa: E402
from int8wb.calibration.datasets import open_dataset  # noqa: E402
from int8wb.calibration.inspection import inspect_model  # noqa: E402
from int8wb.calibration.methods.default import quantize_default  # noqa: E402
from int8wb.calibration.output import Staging, mark  # noqa: E402
from int8wb.calibration.output_names import output_paths  # noqa: E402
from int8wb.calibration.runtime import read_model  # noqa: E402
from int8wb.calibration.spec import load_spec  # noqa: E402
from int8wb.calibration.workflow import versions  # noqa: E402

GOAL = 0.7
SECTION = "Default calibration step"
INTRO = """\
`benchmarks/bench_default.py` times our Default calibration step against a bare `nncf.quantize` +
`ov.save_model` on the same model and the same calibration samples, alternated A B A B … in one
process (goal: median ours / median bare ≤ 0.7; ours collects statistics with every infer request busy).

- **ours**: the calibrating and saving phases of `calibration/workflow.py`, from the spec file to the
  files on disk: `load_spec` → `inspect_model` → `open_dataset` + `subset_indices` (a *cold* dataset
  each round, so it decodes and preprocesses every PNG) → `read_model` (fresh `ov.Core`) →
  `quantize_default` → `mark` → `Staging.save_model` → `commit`.
- **bare**: fresh `ov.Core().read_model` → `nncf.quantize(nncf.Dataset(arrays), preset=PERFORMANCE,
  target_device=CPU, subset_size=300)` → `ov.save_model(..., compress_to_fp16=False)`, where `arrays` are
  the same 300 preprocessed samples, decoded once before timing. Bare therefore does **not** pay for
  image decoding; ours does.
- An untimed warm-up (bare `nncf.quantize` of 4 samples) pays first-use costs before round 1; rich's
  console is quiet for both (ours silences NNCF's progress bars anyway). Peak RSS is the process
  high-water mark within each step (it includes the bare arrays held by the benchmark for both columns).
- Agreement: the two INT8 models of the last round, compared constant by constant and by their outputs
  on 16 calibration samples; `.bin` SHA-256 of every round.
- Figures: wall time per step (the goal's measure), the process CPU time of the step (`time.process_time`,
  all threads: less sensitive to other work on the machine) and the 1-minute load average when each
  step started. The ratio of medians is the headline; the min-wall, CPU-time and paired (median of per-round)
  ratios are printed beside it. CPU time is not contention-proof either: OpenVINO's worker threads spend CPU
  waking up and waiting, more so when Python work (decoding) sits between inferences.
- Shared machine: other work may run at the same time. Alternation keeps such noise from favouring either
  column systematically, but with few rounds a single disturbed step moves a median."""


# ---------------------------------------------------------------- cases

@dataclass
class Case:
    name: str
    title: str
    spec_path: Path
    rounds: int
    work: Path                        # benchmarks/.data/<name>
    ours_dir: Path | None = None      # overrides the spec's [output] dir (None: the spec's own)
    prepare: Callable[[], None] = lambda: None

    @property
    def bare_xml(self) -> Path:
        return self.work / "bare" / "model.int8.xml"


def digits_case() -> Case:
    work = DATA_DIR / "digits"
    return Case("digits", "shipped example: digits CNN (examples/digits), 300 PNGs 8x8 gray → 32x32",
                ROOT / "examples" / "digits" / "digits.calibration.toml", 5, work, ours_dir=work / "ours")


RESNET_RECIPE = "resnet50-v1: light_resnet50.onnx + ConstantFolding, 300 RGB 256x256 PNGs from digits, seed 0"
RESNET_SPEC = """\
#:schema ../../../calibration/schema/calibration.schema.json
# Written by benchmarks/bench_default.py (regenerated when missing or stale; edits are lost).
# onnx's light_resnet50.onnx after openvino ConstantFolding, 300 rendered RGB images.
model = "model.xml"
device = "CPU"

[dataset]
kind = "imagenet"            # class sub-folders 0..9 (the digit each image shows)
path = "images"
subset = 300
seed = 0

[preprocessing]
resize = [224, 224]
layout = "NCHW"
color = "RGB"
mean = [123.675, 116.28, 103.53]
scale = [58.395, 57.12, 57.375]

[accuracy]
metric = "agreement"         # the folder labels are digits, not ImageNet classes

[calibration]
method = "default"
preset = "performance"

[output]
dir = "ours"
"""


def resnet_case() -> Case:
    work = DATA_DIR / "resnet50"
    return Case("resnet50", "light ResNet-50 (onnx backend test data, ConstantFolding), 300 RGB PNGs 256x256 → 224x224",
                work / "resnet50.calibration.toml", 3, work, prepare=lambda: prepare_resnet(work))


def onnx_resnet_path() -> Path:
    import onnx
    path = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / "light_resnet50.onnx"
    if not path.is_file():
        sys.exit(f"not found: {path} (the onnx package ships it; `make install` reinstalls onnx)")
    return path


def prepare_resnet(work: Path) -> None:
    """Builds (once) the FP32 IR, the 300 images and the spec under benchmarks/.data/resnet50."""
    stamp = work / "PREPARED"
    recipe = f"{RESNET_RECIPE}; openvino {ov.__version__}"
    if stamp.is_file() and stamp.read_text() == recipe and (work / "model.bin").is_file():
        return
    print(f"preparing {work.relative_to(ROOT)} …", flush=True)
    work.mkdir(parents=True, exist_ok=True)
    from openvino import passes
    model = ov.Core().read_model(str(onnx_resnet_path()))
    manager = passes.Manager()
    manager.register_pass(passes.ConstantFolding())   # its weights are made by Broadcast
    manager.run_passes(model)
    ov.save_model(model, str(work / "model.xml"), compress_to_fp16=False)
    info = inspect_model(work / "model.xml")
    if len(info.inputs) != 1 or info.inputs[0].shape != [1, 3, 224, 224] or not info.is_fp32 or info.quantized:
        sys.exit(f"unexpected model: inputs {info.inputs}, precision {info.precision}, quantized {info.quantized}")
    _render_images(work / "images")
    (work / "resnet50.calibration.toml").write_text(RESNET_SPEC, encoding="utf-8")
    load_spec(work / "resnet50.calibration.toml")     # validates
    stamp.write_text(recipe)


def _render_images(folder: Path, size: int = 256) -> None:
    """300 real RGB images: the shipped digit scans, upscaled, coloured over a smooth gradient
    with mild sensor-like noise (deterministic), one sub-folder per digit."""
    from PIL import Image
    import shutil
    shutil.rmtree(folder, ignore_errors=True)
    sources = sorted((ROOT / "examples" / "digits" / "data" / "calibration").glob("*/*.png"))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1)
    for k, src in enumerate(sources):
        rng = np.random.default_rng(k)
        with Image.open(src) as img:
            digit = img.convert("L").resize((size, size), Image.BICUBIC)
        alpha = (np.asarray(digit, dtype=np.float32) / 255.0)[..., None]
        c0, c1, fg = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        angle = rng.uniform(0, np.pi)
        t = (np.cos(angle) * xx + np.sin(angle) * yy)[..., None]
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        background = c0 * (1 - t) + c1 * t
        pixels = background * (1 - alpha) + fg * alpha + rng.normal(0, 6.0, (size, size, 3))
        out = folder / src.parent.name / f"{src.stem}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").save(out)


# ---------------------------------------------------------------- the two steps

def ours(case: Case, out_dir: Path | None = None) -> tuple[dict, Path]:
    """Our calibrating + saving phases, from the spec file to the files on disk. Returns phase times."""
    t0 = time.perf_counter()
    spec = load_spec(case.spec_path)
    if (out_dir or case.ours_dir) is not None:
        spec.output.dir = str(out_dir or case.ours_dir)   # absolute: e.g. keeps the shipped example's folder untouched
    info = inspect_model(spec.model_path)
    dataset = open_dataset(spec, info)            # cold: nothing decoded yet
    indices = dataset.subset_indices()
    t1 = time.perf_counter()
    fp32 = read_model(ov.Core(), str(spec.model_path))
    t2 = time.perf_counter()
    int8 = quantize_default(fp32, spec, dataset, indices)
    t3 = time.perf_counter()
    mark(int8, source=str(spec.model_path), method=spec.calibration.method,
         preset=spec.calibration.preset, version=versions()["int8-workbench"] or "dev")
    finals = output_paths(spec.output_dir, spec.model_path.name.removesuffix(".xml"))
    staging = Staging(spec.output_dir)
    try:
        t3a = time.perf_counter()
        staging.save_model(int8)
        t3b = time.perf_counter()
        staging.commit({k: v for k, v in finals.items() if k in staging.pending})
    except BaseException:
        staging.discard()
        raise
    t4 = time.perf_counter()
    return {"spec+inspect+open": t1 - t0, "read_model": t2 - t1, "quantize": t3 - t2, "save": t4 - t3,
            "save: mark": t3a - t3, "save: write": t3b - t3a, "save: commit": t4 - t3b,
            "total": t4 - t0}, finals["model"]


def bare(case: Case, xml: Path, arrays: list[np.ndarray]) -> tuple[dict, Path]:
    t0 = time.perf_counter()
    fp32 = ov.Core().read_model(str(xml))
    t1 = time.perf_counter()
    int8 = nncf.quantize(fp32, nncf.Dataset(arrays), preset=nncf.QuantizationPreset.PERFORMANCE,
                         target_device=nncf.TargetDevice.CPU, subset_size=len(arrays))
    t2 = time.perf_counter()
    ov.save_model(int8, str(case.bare_xml), compress_to_fp16=False)
    t3 = time.perf_counter()
    return {"read_model": t1 - t0, "quantize": t2 - t1, "save": t3 - t2, "total": t3 - t0}, case.bare_xml


# ---------------------------------------------------------------- checks

def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def compare_models(ours_xml: Path, bare_xml: Path, samples: list[np.ndarray]) -> dict:
    core = ov.Core()
    a, b = core.read_model(str(ours_xml)), core.read_model(str(bare_xml))

    def consts(m):   # in topological order: auto-generated friendly names differ between the two
        return [op.get_data() for op in m.get_ordered_ops() if op.get_type_name() == "Constant"]

    def count(m, type_name):
        return sum(op.get_type_name() == type_name for op in m.get_ordered_ops())

    same_graph = [op.get_type_name() for op in a.get_ordered_ops()] == [op.get_type_name() for op in b.get_ordered_ops()]
    ca, cb = consts(a), consts(b)
    differing, max_diff = abs(len(ca) - len(cb)), 0.0
    for x, y in zip(ca, cb):
        if x.shape != y.shape or x.dtype != y.dtype or not np.array_equal(x, y):
            differing += 1
            if x.shape == y.shape and x.dtype.kind == "f":
                max_diff = max(max_diff, float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64)))))
    ra, rb = core.compile_model(a, "CPU").create_infer_request(), core.compile_model(b, "CPU").create_infer_request()
    out_diff, same_top1 = 0.0, 0
    for x in samples:
        ya = ra.infer([x])[0]
        yb = rb.infer([x])[0]
        out_diff = max(out_diff, float(np.max(np.abs(ya.astype(np.float64) - yb.astype(np.float64)))))
        same_top1 += int(np.argmax(ya) == np.argmax(yb))
    return {"fq_ours": count(a, "FakeQuantize"), "fq_bare": count(b, "FakeQuantize"),
            "same_graph": same_graph, "constants": min(len(ca), len(cb)), "constants_differing": differing,
            "max_const_diff": max_diff, "samples": len(samples), "max_output_diff": out_diff,
            "same_top1": same_top1}


# ---------------------------------------------------------------- run

@dataclass
class Result:
    case: Case
    sides: tuple[str, ...] = ("ours", "bare")
    times: dict[str, list[dict]] = field(default_factory=dict)
    rss: dict[str, list[float | None]] = field(default_factory=dict)
    sha: dict[str, list[str]] = field(default_factory=dict)
    decode_s: float = 0.0
    agreement: dict = field(default_factory=dict)
    load_before: tuple | None = None
    load_after: tuple | None = None
    profile: str = ""
    samples: int = 0

    @property
    def ours(self) -> list[dict]:
        return self.times["ours"]

    @property
    def bare(self) -> list[dict]:
        return self.times["bare"]

    def med(self, side: str, phase: str = "total") -> float:
        return median([r[phase] for r in self.times[side]])

    @property
    def ratio(self) -> float:
        return self.med("ours") / self.med("bare")

    def ratio_of(self, fn, phase: str = "total", side: str = "ours") -> float:
        return fn([r[phase] for r in self.times[side]]) / fn([r[phase] for r in self.bare])


def run_case(case: Case, rounds: int, profile: bool) -> Result:
    case.prepare()
    sides = ("ours", "bare")
    res = Result(case, sides, {s: [] for s in sides}, {s: [] for s in sides}, {s: [] for s in sides},
                 load_before=load_average())
    spec = load_spec(case.spec_path)
    info = inspect_model(spec.model_path)
    # The bare column's data: the same subset, preprocessed identically, decoded once before timing.
    dataset = open_dataset(spec, info)
    indices = dataset.subset_indices()
    name = info.inputs[0].name
    arrays = [dataset.load(i)[name] for i in indices]
    del dataset
    res.samples = len(arrays)
    case.bare_xml.parent.mkdir(parents=True, exist_ok=True)
    # Untimed warm-up: a bare quantization of 4 samples loads the CPU plugin and runs every NNCF code
    # path once, so that neither column's first round pays for first-use costs.
    nncf.quantize(ov.Core().read_model(str(spec.model_path)), nncf.Dataset(arrays[:4]),
                  preset=nncf.QuantizationPreset.PERFORMANCE, target_device=nncf.TargetDevice.CPU, subset_size=4)
    last: dict[str, Path] = {}
    steps = {"ours": lambda: ours(case), "bare": lambda: bare(case, spec.model_path, arrays)}
    print(f"\n## {case.name}: {len(arrays)} samples, {rounds} rounds ({', '.join(sides)} alternated)", flush=True)
    for r in range(1, rounds + 1):
        for side in sides:
            gc.collect()
            la = load_average()
            cpu0 = time.process_time()
            with PeakRSS() as rss:
                times, out = steps[side]()
            times["cpu"] = time.process_time() - cpu0
            times["load"] = la[0] if la else 0.0
            res.times[side].append(times)
            last[side] = out
            res.rss[side].append(rss.peak_mib)
            res.sha[side].append(sha256(out.with_suffix(".bin")))
            print(f"  round {r} {side:9s} {times['total']:8.3f} s  "
                  + "  ".join(f"{k} {v:.3f}" for k, v in times.items()
                             if k not in ("total", "cpu", "load") and not k.startswith("save:"))
                  + f"  | CPU {times['cpu']:.3f} s"
                  + (f"  peak RSS {rss.peak_mib:.0f} MiB" if rss.peak_mib else ""), flush=True)
    res.load_after = load_average()
    # What decoding alone costs ours (untimed for the table): a cold dataset loading the whole subset.
    gc.collect()
    t0 = time.perf_counter()
    cold = open_dataset(spec, info)
    for i in cold.subset_indices():
        cold.load(i)
    res.decode_s = time.perf_counter() - t0
    del cold
    step = max(1, len(arrays) // 16)
    res.agreement = compare_models(last["ours"], last["bare"], arrays[::step][:16])
    if profile:
        res.profile = profile_both(case, spec.model_path, arrays)
    return res


def profile_both(case: Case, xml: Path, arrays) -> str:
    text = io.StringIO()
    for side in ("ours", "bare"):
        prof = cProfile.Profile()
        gc.collect()
        prof.enable()
        ours(case) if side == "ours" else bare(case, xml, arrays)
        prof.disable()
        prof.dump_stats(str(case.work / f"{side}.prof"))
        text.write(f"\n### cProfile: {side} ({case.name}), top 25 by cumulative time\n\n```\n")
        pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(25)
        text.write("```\n")
    return text.getvalue()


# ---------------------------------------------------------------- report

def case_markdown(res: Result, facts: dict, command: str) -> str:
    c, ours_t, bare_t = res.case, res.ours, res.bare
    rows = [[str(i + 1), fmt_s(o["total"]), fmt_s(b["total"]), f"{o['total'] / b['total']:.3f}",
             fmt_s(o["cpu"]), fmt_s(b["cpu"]), f"{o['load']:.1f} / {b['load']:.1f}", _mib(ro), _mib(rb)]
            for i, (o, b, ro, rb) in enumerate(zip(ours_t, bare_t, res.rss["ours"], res.rss["bare"]))]
    rows.append(["**median**", f"**{fmt_s(res.med('ours'))}**", f"**{fmt_s(res.med('bare'))}**",
                 f"**{res.ratio:.3f}**", fmt_s(res.med("ours", "cpu")), fmt_s(res.med("bare", "cpu")), "",
                 _mib(_max(res.rss["ours"])) + " (max)", _mib(_max(res.rss["bare"])) + " (max)"])
    table = md_table(["round", "ours wall (s)", "bare wall (s)", "ours / bare", "ours CPU (s)", "bare CPU (s)",
                      "load ours / bare", "ours peak RSS", "bare peak RSS"], rows)
    phases = ["spec+inspect+open", "read_model", "quantize", "save", "save: mark", "save: write", "save: commit"]
    breakdown = md_table(["phase (median wall s)", "ours", "bare"],
                         [[p, fmt_s(res.med("ours", p)),
                           fmt_s(res.med("bare", p)) if p in bare_t[0] else "–"] for p in phases])
    agreement = _agreement(res.agreement, res.sha["ours"], res.sha["bare"], "ours")
    verdict = "meets" if res.ratio <= GOAL else "**misses**"
    load = lambda la: "/".join(f"{x:.2f}" for x in la) if la else "n/a"  # noqa: E731
    busy = max([r["load"] for r in ours_t + bare_t], default=0.0)
    caution = (f"\n\n**Caution:** the 1-minute load average reached {busy:.1f} on {facts['nproc']} CPUs during "
               "this run (other work on the machine, plus this benchmark's own threads): wall times carry that "
               "contention; the median of the per-round ratios (neighbouring steps see similar load) is the "
               "steadier reading." if busy > facts["nproc"] else "")
    return f"""\
### {c.name}: {c.title}

`{command}` — {facts['date']}; `nproc` {facts['nproc']}, {facts['cpu']} ({', '.join(facts['cpu_flags'])}),
{facts['mem_gib']} GiB; Python {facts['python']}, openvino {facts['openvino']}, nncf {facts['nncf']},
numpy {facts['numpy']}, Pillow {facts['pillow']}; load average 1/5/15 min before {load(res.load_before)},
after {load(res.load_after)}. Spec: `{c.spec_path.relative_to(ROOT)}`; {res.samples} samples, {len(ours_t)} rounds.

**ratio median(ours wall) / median(bare wall) = {res.ratio:.3f}** ({verdict} the ≤ {GOAL} goal). Other readings
of the same rounds: min wall {res.ratio_of(min):.3f}, median CPU time {res.ratio_of(median, "cpu"):.3f}, median of
the per-round wall ratios {median([o['total'] / b['total'] for o, b in zip(ours_t, bare_t)]):.3f}.{caution}

{table}

{breakdown}

Decoding and preprocessing the calibration subset alone (a cold dataset loading every sample, measured
after the rounds, not part of the table): {fmt_s(res.decode_s)} s. Ours pays this inside `quantize`; bare had
its arrays ready.

Agreement of the two INT8 models: {agreement}
"""


def _agreement(a: dict, sha_side: list[str], sha_bare: list[str], side: str) -> str:
    same_bin = len(set(sha_side)) == 1 and set(sha_side) == set(sha_bare)
    return (
        f"FakeQuantize ops {a['fq_ours']} ({side}) / {a['fq_bare']} (bare); constants compared {a['constants']}, "
        f"differing {a['constants_differing']} (max |Δ| {a['max_const_diff']:.3g}); same op sequence: "
        f"{'yes' if a['same_graph'] else 'NO'}; outputs on {a['samples']} samples: max |Δ| {a['max_output_diff']:.3g}, "
        f"same top-1 {a['same_top1']}/{a['samples']}. `.bin` SHA-256 over all rounds: "
        + (f"identical for {side} and bare in every round." if same_bin else
           f"{side} {len(set(sha_side))} distinct, bare {len(set(sha_bare))} distinct, "
           f"{side} == bare: {set(sha_side) == set(sha_bare)}."))


def _mib(v):
    return f"{v:.0f} MiB" if v else "n/a"


def _max(values):
    values = [v for v in values if v]
    return max(values) if values else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, help="rounds per case (default: resnet50 3, digits 5)")
    parser.add_argument("--only", choices=["resnet50", "digits"], help="run one case")
    parser.add_argument("--write", action="store_true", help=f"update the '{SECTION}' section of BENCHMARKS.md")
    parser.add_argument("--profile", action="store_true",
                        help="after the rounds, run each step once more under cProfile (printed, and saved "
                             "as benchmarks/.data/<case>/{ours,bare}.prof)")
    args = parser.parse_args()
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    rich.get_console().quiet = True   # NNCF's progress bars off for both columns; ours silences them anyway
    command = command_line()
    facts = machine_facts()
    cases = [c for c in (resnet_case(), digits_case()) if args.only in (None, c.name)]
    print(f"{command}\n{facts}", flush=True)
    sections = []
    summary = []
    for case in cases:
        res = run_case(case, args.rounds or case.rounds, args.profile)
        md = case_markdown(res, facts, command)
        sections.append(md)
        summary.append([case.name, str(len(res.ours)), fmt_s(res.med("ours")), fmt_s(res.med("bare")),
                        f"{res.ratio:.3f}", "yes" if res.ratio <= GOAL else "NO",
                        f"{res.ratio_of(min):.3f}", f"{res.ratio_of(median, 'cpu'):.3f}"])
        print("\n" + md, flush=True)
        if res.profile:
            print(res.profile, flush=True)
        if args.write:
            update_section(SECTION, INTRO, f"bench_default:{case.name}", md)
    print(md_table(["case", "rounds", "ours median wall (s)", "bare median wall (s)", "ours / bare", f"≤ {GOAL}",
                    "min-wall ratio", "CPU-time ratio"], summary))
    if args.write:
        print(f"\nupdated BENCHMARKS.md ({SECTION})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
