"""The machine speed figures were measured on: they mean nothing without it."""
from __future__ import annotations

import contextlib
import os
import platform


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cores() -> int:
    """Cores this process may use (a container's or taskset's limit, not the host's count)."""
    with contextlib.suppress(AttributeError, OSError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def describe() -> dict:
    """CPU model, usable cores and the load average (1, 5, 15 min) as the figures were taken:
    a load near or above the core count means other work shared the machine."""
    load = None
    with contextlib.suppress(AttributeError, OSError):
        load = [round(x, 2) for x in os.getloadavg()]
    return {"cpu": cpu_model(), "cores": cores(), "load_average": load}


def host() -> str:
    """One line: system, architecture, CPU and core count."""
    return f"{platform.system()} {platform.machine()} {cpu_model()} x{os.cpu_count()}"
