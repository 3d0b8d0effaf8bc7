"""Helpers shared by the benchmarks: machine facts, peak-RSS windows, medians, BENCHMARKS.md sections.

Speed goals are ratios against an anchor measured in the same run, never absolute times:
the figures here are for reading by hand, not for tests.
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import statistics
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "benchmarks"
DATA_DIR = BENCH_DIR / ".data"          # gitignored cache
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"


# ---------------------------------------------------------------- machine facts

def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def cpu_flags_of_note() -> list[str]:
    """The ISA extensions that decide how OpenVINO's CPU plugin computes (INT8/bf16 paths)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split("flags", 1)[1].split("\n", 1)[0].split())
    except (OSError, IndexError):
        return []
    return [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
            if f in flags]


def nproc() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def dist_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "n/a"


def machine_facts() -> dict:
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        "date": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "nproc": nproc(),
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags_of_note(),
        "mem_gib": mem,
        "python": platform.python_version(),
        "openvino": dist_version("openvino"),
        "nncf": dist_version("nncf"),
        "numpy": dist_version("numpy"),
        "pillow": dist_version("pillow"),
    }


def load_average() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except OSError:
        return None


# ---------------------------------------------------------------- memory

def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


class PeakRSS:
    """Peak resident memory over a window of this process (Linux: VmHWM reset via clear_refs).

    `peak_mib` is the process's high-water mark inside the window, `start_mib` its RSS when the
    window opened; both are None where the kernel does not offer them.
    """

    def __init__(self) -> None:
        self.start_mib: float | None = None
        self.peak_mib: float | None = None

    def __enter__(self) -> "PeakRSS":
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            self._resettable = True
        except OSError:
            self._resettable = False
        rss = _status_kib("VmRSS")
        self.start_mib = rss / 1024 if rss is not None else None
        return self

    def __exit__(self, *exc) -> None:
        hwm = _status_kib("VmHWM") if self._resettable else None
        self.peak_mib = hwm / 1024 if hwm is not None else None


# ---------------------------------------------------------------- figures

def median(values: list[float]) -> float:
    return statistics.median(values)


def fmt_s(value: float) -> str:
    return f"{value:.2f}" if value >= 10 else f"{value:.3f}"


def command_line() -> str:
    """The command as a user would type it from the project root."""
    args = " ".join(sys.argv[1:])
    return f".venv/bin/python benchmarks/{Path(sys.argv[0]).name}" + (f" {args}" if args else "")


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------- BENCHMARKS.md

def update_section(section_title: str, intro: str, block_id: str, body: str,
                   path: Path = BENCHMARKS_MD) -> None:
    """Replaces (or adds) the block `block_id` inside the `## section_title` section of BENCHMARKS.md,
    keeping every other section and block as it is."""
    start, end = f"<!-- {block_id}:start -->", f"<!-- {block_id}:end -->"
    block = f"{start}\n{body.strip()}\n{end}"
    text = path.read_text(encoding="utf-8") if path.exists() else (
        "# Benchmarks\n\nSpeed goals are ratios against an anchor measured in the same run, by hand; "
        "they are never timed tests. Each section names the exact command that produced it.\n")
    if start in text and end in text:
        text = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        heading = f"## {section_title}"
        if heading not in text:
            text = text.rstrip("\n") + f"\n\n{heading}\n\n{intro.strip()}\n"
        # append the block at the end of the section (before the next "## " heading)
        head_at = text.index(heading)
        nxt = text.find("\n## ", head_at + len(heading))
        if nxt < 0:
            text = text.rstrip("\n") + f"\n\n{block}\n"
        else:
            text = text[:nxt].rstrip("\n") + f"\n\n{block}\n" + text[nxt:]
    path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
