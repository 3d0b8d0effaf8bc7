"""Issue goal: `int8wb check` over a folder of 1,000 IR models takes ≤ 5 s on 2 cores.

The zoo is copies of a few real models (the shipped example and ONNX light models from the
onnx package, folded to IR); .bin files are hard links, as the checker reads only their size.
Run: .venv/bin/python benchmarks/bench_check.py [--models 1000] [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / ".data"
SOURCES = ["light_resnet50", "light_squeezenet", "light_shufflenet", "light_inception_v1", "light_densenet121"]


def source_models() -> list[Path]:
    import onnx
    import openvino as ov
    from openvino._pyopenvino.passes import ConstantFolding, Manager

    out = [ROOT / "examples" / "digits" / "model.xml"]
    light = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
    for name in SOURCES:
        xml = DATA / "zoo_src" / name / "model.xml"
        if not xml.exists():
            model = ov.Core().read_model(str(light / f"{name}.onnx"))
            passes = Manager()
            passes.register_pass(ConstantFolding())  # their weights are made by Broadcast
            passes.run_passes(model)
            xml.parent.mkdir(parents=True, exist_ok=True)
            ov.save_model(model, str(xml), compress_to_fp16=False)
        out.append(xml)
    return out


def build_zoo(n: int) -> Path:
    zoo = DATA / f"zoo_{n}"
    if zoo.exists() and sum(1 for _ in zoo.rglob("*.xml")) == n:
        return zoo
    shutil.rmtree(zoo, ignore_errors=True)
    sources = source_models()
    for i in range(n):
        src = sources[i % len(sources)]
        dest = zoo / f"group{i % 20:02d}" / f"{src.parent.name}_{i:04d}"
        dest.mkdir(parents=True)
        shutil.copy(src, dest / "model.xml")
        os.link(src.with_suffix(".bin"), dest / "model.bin")
    return zoo


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    zoo = build_zoo(args.models)
    xml_bytes = sum(p.stat().st_size for p in zoo.rglob("*.xml"))
    cli = [sys.executable, "-m", "int8wb.editor_client.cli", "check", str(zoo), "--json"]
    times = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        proc = subprocess.run(cli, capture_output=True, text=True, cwd=ROOT)
        times.append(time.perf_counter() - start)
        assert proc.returncode == 0, proc.stderr[-2000:]
    print(f"| {args.models} models ({xml_bytes / 2**20:.0f} MiB of XML) | "
          f"{' / '.join(f'{t:.2f}' for t in times)} s | median {statistics.median(times):.2f} s | goal ≤ 5 s |")


if __name__ == "__main__":
    main()
