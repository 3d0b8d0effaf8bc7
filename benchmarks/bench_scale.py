"""What one calibration job costs, part by part: the inputs of docs/scale.md's throughput model.

Measured on this machine, each repeated (`--rounds`) and reported as median [min–max]:

- **job**: the real worker (`python -I -m int8wb.calibration.jobs.worker calibrate -- SPEC`, as a
  runner starts it) on a private copy of the spec, its protocol lines timestamped as they arrive:
  start-up (interpreter, OpenVINO and NNCF imports) up to its first message, then each phase of
  `workflow.PHASES` (FP32 read + compile + validation, statistics + quantize, saving, INT8
  validation, speed, profile) and the exit.
- **read + compile**: a fresh `ov.Core`, `read_model` and `compile_model` of the FP32 model (part of
  the baseline phase, measured alone).
- **job store**: one job's writes to a job store (`JobStore` on this disk): add, claim, the progress
  rows the runner records for it (the job's own count, after `ProgressGate(0.2)`), the final row.
- **data**: the bytes a job reads (model, every file of its data folders) and writes (the INT8 set),
  and the time to read them here (page cache warm: a lower bound, not a network filesystem).
- **Ray** (skipped with `--no-ray`): a local cluster's round trip of an empty task, and `ray.put` +
  a task's `ray.get` of a buffer as large as the job's inputs (one node: shared memory, no network).

Run: .venv/bin/python benchmarks/bench_scale.py [--rounds 5] [--only digits|resnet50] [--no-ray]
(resnet50: onnx's light ResNet-50 as benchmarks/bench_default.py prepares it.) Prints JSON and a
markdown table per model; nothing is written to BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DATA_DIR, ROOT, load_average, machine_facts, md_table  # noqa: E402

from int8wb.calibration import load_spec  # noqa: E402
from int8wb.calibration.jobs import JobStore, Progress, ProgressGate, protocol  # noqa: E402
from int8wb.calibration.workflow import PHASES  # noqa: E402


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def show(s: dict) -> str:
    if s["median"] < 0.1:
        return f"{s['median'] * 1e3:.2f} ms [{s['min'] * 1e3:.2f}–{s['max'] * 1e3:.2f}]"
    fmt = (lambda v: f"{v:.3f}") if s["median"] < 10 else (lambda v: f"{v:.1f}")
    return f"{fmt(s['median'])} s [{fmt(s['min'])}–{fmt(s['max'])}]"


# ---------------------------------------------------------------- the worker, phase by phase

def run_worker(spec: Path) -> tuple[dict[str, float], int]:
    """One worker run: seconds per part, and how many progress rows a runner would record."""
    request = protocol.Calibrate(str(spec), trust=False)
    t0 = time.perf_counter()
    proc = subprocess.Popen(protocol.command(sys.executable, request), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, cwd=tempfile.gettempdir())
    marks: list[tuple[str, float]] = [("start-up (interpreter, imports)", t0)]
    gate, rows, outcome = ProgressGate(0.2), 0, None
    assert proc.stdout is not None
    for msg in protocol.messages(proc.stdout):
        now = time.perf_counter()
        if isinstance(msg, Progress):
            rows += gate.admit(msg)
            if msg.phase != marks[-1][0] and msg.phase is not None:
                marks.append((msg.phase, now))
        else:
            outcome = msg
            marks.append(("answer to exit", now))
    proc.wait()
    marks.append(("end", time.perf_counter()))
    if not isinstance(outcome, protocol.Result):
        sys.exit(f"the worker failed on {spec}: {getattr(outcome, 'error', 'no answer')}")
    parts = {name: marks[i + 1][1] - at for i, (name, at) in enumerate(marks[:-1])}
    parts["whole job"] = marks[-1][1] - t0
    return parts, rows


def private_copy(spec: Path, into: Path) -> Path:
    """The spec beside links to its model and data, with outputs of its own (no spec is edited)."""
    into.mkdir(parents=True, exist_ok=True)
    for item in spec.parent.iterdir():
        if item.name not in ("calibrated", "ours", "bare", ".int8wb") and not item.name.startswith("."):
            (into / item.name).symlink_to(item)
    copy = into / spec.name
    copy.unlink()
    shutil.copyfile(spec, copy)
    return copy


# ---------------------------------------------------------------- the parts measured alone

def read_and_compile(model: Path, rounds: int) -> dict:
    import openvino as ov

    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        core = ov.Core()
        core.compile_model(core.read_model(str(model)), "CPU")
        times.append(time.perf_counter() - t0)
    return spread(times)


def job_store(rows: int, jobs: int, folder: Path) -> dict:
    """Seconds of store writes per job, `jobs` jobs one after the other (the runner's order)."""
    store = JobStore(folder)
    store.register("bench", 60.0, "bench_scale")
    per_job = []
    for n in range(jobs):
        t0 = time.perf_counter()
        job_id = store.add(f"/srv/spec{n}.calibration.toml", "/srv/model.xml", "default", "/srv/out", runner="bench")
        store.claim(job_id, "bench")
        store.update(job_id, by="bench", pid=os.getpid(), phase="starting")
        for k in range(rows):
            store.update(job_id, by="bench", percent=100.0 * k / rows, phase="calibrating")
        store.update(job_id, by="bench", state="done", percent=100.0, finished=time.time(), summary={"ok": True})
        per_job.append(time.perf_counter() - t0)
    store.close()
    return {**spread(per_job), "writes": rows + 4}


def files_of(spec) -> list[Path]:
    found = [spec.model_path, spec.model_path.with_suffix(".bin")]
    for role in ("dataset", "validation", "evaluation"):
        table = getattr(spec, role)
        if table is not None and table.path is not None:
            path = spec.resolve(table.path)
            found += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return found


def data_read(files: list[Path], rounds: int) -> dict:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for f in files:
            with open(f, "rb") as fh:
                while fh.read(1 << 20):
                    pass
        times.append(time.perf_counter() - t0)
    return spread(times)


def ray_costs(nbytes: int, rounds: int) -> dict:
    import numpy as np
    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    started = time.perf_counter() - t0

    @ray.remote(num_cpus=1)
    def nothing() -> int:
        return 0

    @ray.remote(num_cpus=1)
    def size_of(buffer) -> int:
        return len(buffer)

    ray.get(nothing.remote())  # the first task starts a worker process
    empty, moved = [], []
    payload = np.random.default_rng(0).integers(0, 255, nbytes, dtype=np.uint8)
    for _ in range(rounds * 4):
        t0 = time.perf_counter()
        ray.get(nothing.remote())
        empty.append(time.perf_counter() - t0)
    for _ in range(rounds):
        t0 = time.perf_counter()
        assert ray.get(size_of.remote(ray.put(payload))) == nbytes
        moved.append(time.perf_counter() - t0)
    ray.shutdown()
    return {"cluster start": started, "empty task round trip": spread(empty), "put + task get": spread(moved)}


# ---------------------------------------------------------------- one model

def measure(name: str, spec_path: Path, rounds: int, job_rounds: int, with_ray: bool) -> dict:
    spec = load_spec(spec_path)
    files = files_of(spec)
    read_bytes = sum(f.stat().st_size for f in files)
    work = Path(tempfile.mkdtemp(prefix=f"bench-scale-{name}-"))
    try:
        copy = private_copy(spec_path, work / "spec")
        runs = [run_worker(copy) for _ in range(job_rounds)]
        out = load_spec(copy).output_dir
        written = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
        order = [p for p, _ in PHASES]
        names = list(dict.fromkeys(n for parts, _ in runs for n in parts))
        names.sort(key=lambda n: (order.index(n) + 1) if n in order else (0 if n.startswith("start") else 99))
        phases = {n: spread([parts.get(n, 0.0) for parts, _ in runs]) for n in names}
        rows = int(statistics.median(r for _, r in runs))
        result = {
            "model": name, "spec": str(spec_path.relative_to(ROOT)), "load_average": load_average(),
            "job": phases, "progress rows per job": rows,
            "read + compile (FP32)": read_and_compile(spec.model_path, rounds),
            "job store writes per job": job_store(rows, 50 * rounds, work / "store"),
            "bytes read per job": read_bytes, "bytes written per job": written, "files read per job": len(files),
            "read here (page cache)": data_read(files, rounds),
        }
        if with_ray:
            result["ray"] = ray_costs(read_bytes, rounds)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def table(r: dict) -> str:
    rows = [[f"job: {n}", show(s)] for n, s in r["job"].items()]
    rows += [["FP32 read + compile, alone", show(r["read + compile (FP32)"])],
             [f"job store: {r['job store writes per job']['writes']} writes per job",
              show(r["job store writes per job"])],
             ["bytes read per job (model + data)", f"{r['bytes read per job'] / 1e6:.2f} MB in {r['files read per job']} files"],
             ["bytes written per job (INT8 set)", f"{r['bytes written per job'] / 1e6:.2f} MB"],
             ["reading them here (page cache)", show(r["read here (page cache)"])]]
    if "ray" in r:
        rows += [["Ray: empty task round trip", show(r["ray"]["empty task round trip"])],
                 ["Ray: put + task get of the inputs' size", show(r["ray"]["put + task get"])]]
    return md_table(["part", "median [min–max]"], rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="repeats of each measurement (default 5)")
    parser.add_argument("--job-rounds", type=int, help="worker runs per model (default: --rounds; resnet50: 1)")
    parser.add_argument("--only", choices=["digits", "resnet50"])
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray measurements")
    args = parser.parse_args()
    cases = {"digits": ROOT / "examples" / "digits" / "digits.calibration.toml"}
    if args.only in (None, "resnet50"):
        from bench_default import prepare_resnet  # builds the IR and images once, under benchmarks/.data

        prepare_resnet(DATA_DIR / "resnet50")
        cases["resnet50"] = DATA_DIR / "resnet50" / "resnet50.calibration.toml"
    print(json.dumps({"machine": machine_facts()}), flush=True)
    for name, spec in cases.items():
        if args.only not in (None, name):
            continue
        job_rounds = args.job_rounds or (args.rounds if name == "digits" else 1)
        result = measure(name, spec, args.rounds, job_rounds, not args.no_ray)
        print(json.dumps(result), flush=True)
        print(f"\n### {name} ({job_rounds} job runs, {args.rounds} rounds of the rest)\n\n{table(result)}\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
