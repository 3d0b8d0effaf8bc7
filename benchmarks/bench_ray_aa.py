"""AccuracyAware on a local Ray cluster against the local runner, on one machine: Ray's overhead, and
whether both give the same model.

Each round runs `int8wb calibrate SPEC --json -q --trust` twice, once as is and once with
`--ray local` (a new Ray cluster of this machine's CPUs, started by the command: its start-up is in
the figure, as a user pays it), in alternating order, each in its own copy of the spec's folder (the
model and data are linked, not copied). Wall time is the whole command. Checked: the same INT8
weights (sha256), the same layers left in float and the same accuracy in every run; where the
ranking ran and how many of its probes a Ray task answered.

Run: .venv/bin/python benchmarks/bench_ray_aa.py [--spec examples/ocr/ocr.calibration.toml] [--rounds 2]
Prints a markdown table.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import cpu_model, nproc  # noqa: E402


def workspace(spec: Path, into: Path) -> Path:
    """A copy of the spec in `into`, beside links to everything else of its folder."""
    into.mkdir(parents=True)
    for entry in spec.parent.iterdir():
        if entry.name.endswith(".calibration.toml") or entry.name.startswith(".") or entry.name.startswith("calibrated"):
            continue
        (into / entry.name).symlink_to(entry.resolve())
    (into / spec.name).write_text(spec.read_text())
    return into / spec.name


def run(spec: Path, ray: bool) -> dict:
    cmd = [sys.executable, "-m", "int8wb.editor_client.cli", "calibrate", str(spec), "--json", "-q", "--trust",
           *(["--ray", "local"] if ray else [])]
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=spec.parent)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout)
    weights = Path(result["output"]["weights"]).read_bytes()
    return {"wall": wall, "sha": hashlib.sha256(weights).hexdigest()[:16], "int8": result["int8"]["accuracy"],
            "float": sorted(layer["name"] for layer in result.get("fp32_layers") or []),
            "search": result.get("search") or {}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spec", type=Path, default=ROOT / "examples/ocr/ocr.calibration.toml")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    spec = args.spec.resolve()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-ray-aa-") as tmp:
        for r in range(args.rounds):
            order = (False, True) if r % 2 == 0 else (True, False)
            pair = {}
            for ray in order:
                where = "ray" if ray else "local"
                pair[where] = run(workspace(spec, Path(tmp) / f"{r}-{where}"), ray)
                print(f"round {r + 1} {where}: {pair[where]['wall']:.1f} s, load {os.getloadavg()[0]:.1f}",
                      file=sys.stderr, flush=True)
            rows.append(pair)
    print(f"`{' '.join(sys.argv)}` — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {cpu_model()}, "
          f"{nproc()} CPUs, load average now {os.getloadavg()[0]:.1f}\n")
    print("| round | local s | Ray s | Ray / local | ranking probes on Ray tasks | same weights, layers, accuracy |")
    print("|---|---|---|---|---|---|")
    first = rows[0]["local"]
    for n, pair in enumerate(rows, 1):
        a, b = pair["local"], pair["ray"]
        same = all((x["sha"], x["float"], x["int8"]) == (first["sha"], first["float"], first["int8"]) for x in (a, b))
        probes = f"{b['search'].get('probes_on_cluster', 0)} of {b['search'].get('ranked_groups', 0) + 1}" \
            if b["search"].get("ranked_on") == "ray" else "none (no ranking)"
        print(f"| {n} | {a['wall']:.1f} | {b['wall']:.1f} | {b['wall'] / a['wall']:.3f} | {probes} | "
              f"{'yes' if same else 'NO'} |")
    ratios = [p["ray"]["wall"] / p["local"]["wall"] for p in rows]
    print(f"\nmedian Ray / local: {statistics.median(ratios):.3f}; layers in float: {len(first['float'])}; "
          f"INT8 accuracy {first['int8']:.4f}; weights sha256 {first['sha']}…; "
          f"validations {first['search'].get('validations')}")


if __name__ == "__main__":
    main()
