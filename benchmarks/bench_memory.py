"""Peak memory of a whole Default run against the dataset's size: does it stay flat?

    .venv/bin/python benchmarks/bench_memory.py [--sizes 100,1000,5000] [--kinds images,npz]
                                                [--cache-mib N] [--tag NAME] [--write]

Each run is `workflow.calibrate` (what `int8wb calibrate` runs) in a child process of its own, so its
peak RSS (ru_maxrss from wait4) is its own and not the benchmark's. The model is built here with
OpenVINO's opset API: a 1×3×640×640 input, three strided convolutions and a small classifier, cheap
enough that 5,000 samples run in a couple of minutes. Data, cached under benchmarks/.data/memory:

  images  JPEG files, 640×640 RGB: eight distinct smooth-noise pictures hard-linked under N names
          (decoding cost is real, disk cost is not).
  npz     one stored (np.savez, uncompressed) .npz per size with `inputs` uint8 [N, 3, 640, 640],
          written member by member so generating it holds one sample at a time.

Every run calibrates on a 300-sample subset, then measures accuracy (label-free agreement) on all
N samples for FP32 and INT8 and speed for 1 s per variant. Goal: peak RSS within 20 % from the
smallest size to the largest. `--cache-mib` overrides the dataset cache budget in the child (to
measure what the cache buys); kind `digits` runs the shipped example instead (for that measure);
`--tag` names the block written to BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (DATA_DIR, ROOT, command_line, load_average, machine_facts, md_table,  # noqa: E402
                     update_section)

import numpy as np  # noqa: E402

HERE = DATA_DIR / "memory"
SIDE = 640
SUBSET = 300
PATTERNS = 8
GOAL = 1.20
SECTION = "Peak memory against dataset size (Default, 640×640)"
INTRO = """\
`benchmarks/bench_memory.py` runs a whole Default calibration (`workflow.calibrate`, as
`int8wb calibrate`) in a child process per case and reads that child's peak RSS. Model: 1×3×640×640
input, three strided convolutions, a 10-class head (built with OpenVINO's opset API). Calibration
subset 300 samples; FP32 and INT8 accuracy on every sample; speed 1 s per variant. Data: JPEGs
(eight distinct pictures hard-linked under N names) or one stored `.npz` of uint8 [N, 3, 640, 640].
Goal: peak RSS flat within 20 % from 100 to 5,000 samples.
"""

CHILD = """
import os, sys, time
from int8wb.calibration import datasets, load_spec, workflow
if os.environ.get("BENCH_CACHE_MIB"):
    datasets.CACHE_BYTES = int(float(os.environ["BENCH_CACHE_MIB"]) * (1 << 20))
t0 = time.perf_counter()
workflow.calibrate(load_spec(sys.argv[1]))
print(f"{time.perf_counter() - t0:.3f}")
"""


def build_model(path: Path) -> None:
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    x = ops.parameter([1, 3, SIDE, SIDE], np.float32, name="images")
    h, channels = x, 3
    for out, stride in ((8, 2), (16, 2), (32, 4)):
        w = ops.constant((rng.standard_normal((out, channels, 3, 3)) * 0.2).astype(np.float32))
        h = ops.relu(ops.convolution(h, w, [stride, stride], [1, 1], [1, 1], [1, 1]))
        channels = out
    pooled = ops.reduce_mean(h, ops.constant(np.array([2, 3], np.int64)), keep_dims=False)
    head = ops.constant((rng.standard_normal((channels, 10)) * 0.3).astype(np.float32))
    model = ov.Model([ops.result(ops.matmul(pooled, head, False, False))], [x], "memory_bench")
    ov.save_model(model, str(path), compress_to_fp16=False)


def patterns() -> list[np.ndarray]:
    """Smooth noise pictures (HWC uint8): upsampled coarse noise, so JPEG sizes are realistic."""
    from PIL import Image

    rng = np.random.default_rng(1)
    out = []
    for _ in range(PATTERNS):
        coarse = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
        big = np.asarray(Image.fromarray(coarse).resize((SIDE, SIDE), Image.BICUBIC))
        out.append(np.clip(big + rng.integers(-12, 12, big.shape), 0, 255).astype(np.uint8))
    return out


def image_folder(n: int) -> Path:
    from PIL import Image

    base = HERE / "patterns"
    if not (base / f"{PATTERNS - 1}.jpg").exists():
        base.mkdir(parents=True, exist_ok=True)
        for i, pic in enumerate(patterns()):
            Image.fromarray(pic).save(base / f"{i}.jpg", quality=90)
    folder = HERE / f"images-{n}"
    if len(list(folder.glob("*.jpg"))) != n:
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            target = folder / f"{i:05d}.jpg"
            if not target.exists():
                os.link(base / f"{i % PATTERNS}.jpg", target)
    return folder


def npz_file(n: int) -> Path:
    """A stored .npz written one sample at a time (np.savez would need the whole array in memory)."""
    path = HERE / f"stored-{n}.npz"
    if path.exists():
        return path
    pics = [np.ascontiguousarray(p.transpose(2, 0, 1)) for p in patterns()]
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        with zf.open("inputs.npy", "w", force_zip64=True) as fh:
            np.lib.format.write_array_header_2_0(fh, {"descr": "|u1", "fortran_order": False,
                                                      "shape": (n, 3, SIDE, SIDE)})
            for i in range(n):
                fh.write(pics[i % PATTERNS].tobytes())
    tmp.rename(path)
    return path


def spec_file(kind: str, n: int, data: Path, model: Path) -> Path:
    path = HERE / f"{kind}-{n}.calibration.toml"
    path.write_text(f'''model = "{model}"
[dataset]
kind = "{kind}"
path = "{data}"
subset = {SUBSET}
[preprocessing]
layout = "NCHW"
mean = [0.0]
scale = [255.0]
[accuracy]
metric = "agreement"
[inference]
duration = 1.0
rounds = 2
[output]
dir = "{HERE / 'out' / f'{kind}-{n}'}"
''', encoding="utf-8")
    return path


def digits_spec() -> Path:
    """The shipped example with absolute paths, its output here and a short speed phase, so that
    the time spent on data is visible in the wall time (sizes do not apply: it has 300 + 540 PNGs)."""
    example = ROOT / "examples" / "digits"
    text = (example / "digits.calibration.toml").read_text(encoding="utf-8")
    for old, new in (('"model.xml"', f'"{example / "model.xml"}"'), ('"data/', f'"{example / "data"}/'),
                     ('dir = "calibrated"', f'dir = "{HERE / "out" / "digits"}"'),
                     ("duration = 3.0", "duration = 0.2\nrounds = 2")):
        text = text.replace(old, new)
    path = HERE / "digits.calibration.toml"
    path.write_text(text, encoding="utf-8")
    return path


def run(spec: Path, cache_mib: float | None) -> tuple[float, float]:
    """(peak RSS MB, wall s) of one calibration in a child process."""
    env = dict(os.environ)
    if cache_mib is not None:
        env["BENCH_CACHE_MIB"] = str(cache_mib)
    t0 = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(spec)], env=env, stdout=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - t0
    out = child.stdout.read().decode()
    child.stdout.close()
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"calibration of {spec} failed ({child.returncode}): {out}")
    return usage.ru_maxrss / 1024, wall


def code_version() -> str:
    import int8wb.calibration as pkg

    where = Path(pkg.__file__).resolve().parent
    try:
        return subprocess.run(["git", "-C", str(where), "log", "-1", "--format=%h"], capture_output=True,
                              text=True, check=True).stdout.strip() or str(where)
    except (OSError, subprocess.CalledProcessError):
        return str(where)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,1000,5000")
    ap.add_argument("--kinds", default="images,npz", help="images, npz, digits")
    ap.add_argument("--cache-mib", type=float, default=None)
    ap.add_argument("--tag", default="current")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    kinds = args.kinds.split(",")
    HERE.mkdir(parents=True, exist_ok=True)
    model = HERE / "model.xml"
    if not model.exists():
        build_model(model)
    before = load_average()
    rows, peaks = [], {}
    for kind in kinds:
        for n in sizes:
            if kind == "digits":
                spec = digits_spec()
            else:
                spec = spec_file(kind, n, image_folder(n) if kind == "images" else npz_file(n), model)
            peak, wall = run(spec, args.cache_mib)
            peaks.setdefault(kind, []).append(peak)
            rows.append([f"{n:,}" if kind != "digits" else "300 + 540", kind, f"{peak:.0f}", f"{wall:.1f}"])
            print(f"{kind:6} {n:6}  peak RSS {peak:7.0f} MB  wall {wall:6.1f} s", flush=True)
    after = load_average()
    verdicts = []
    for kind, values in peaks.items() if len(sizes) > 1 else ():
        ratio = max(values) / values[0]
        verdicts.append(f"{kind}: largest / smallest size = {ratio:.2f} "
                        f"({'flat, meets' if ratio <= GOAL else 'grows, misses'} the ≤ {GOAL:.2f} goal)")
    for line in verdicts:
        print(line)
    if args.write:
        f = machine_facts()
        load = (lambda la: "/".join(f"{x:.2f}" for x in la) if la else "n/a")  # noqa: E731
        cache = f"; cache budget overridden to {args.cache_mib:g} MiB" if args.cache_mib is not None else ""
        body = f"""### {args.tag}: code at {code_version()}{cache}

`{command_line()}` — {f['date']}; `nproc` {f['nproc']}, {f['cpu']}, {f['mem_gib']} GiB; Python {f['python']},
openvino {f['openvino']}, nncf {f['nncf']}, numpy {f['numpy']}; load average 1/5/15 min before
{load(before)}, after {load(after)} (wall times carry other work on the machine).

{md_table(["samples", "kind", "peak RSS (MB)", "wall (s)"], rows)}

{'; '.join(verdicts) or 'One size: no verdict on growth'}.
"""
        update_section(SECTION, INTRO, f"bench_memory:{args.tag}", body)


if __name__ == "__main__":
    main()
