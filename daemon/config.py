"""The daemon's settings: read once from the environment (the editor starts us with it) into one
typed object, so no other module reads `os.environ`."""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace

from int8wb.calibration.trust import trusted


@dataclass(frozen=True)
class Settings:
    debounce_s: float = 0.15     # INT8WB_DEBOUNCE_SECONDS: quiet time after an event or edit before a check
    settle_s: float = 1.0        # INT8WB_SETTLE_SECONDS: an incomplete model pair is looked at again after this
    rescan_s: float = 30.0       # INT8WB_RESCAN_SECONDS: period of the walk that catches lost watcher events
    max_jobs: int = 1            # INT8WB_MAX_JOBS: calibrations at a time over all workspace folders
    log_level: str = "WARNING"   # INT8WB_LOG: level of the daemon's own log on stderr
    trust_custom_metrics: bool = False  # INT8WB_TRUST=1 (calibration.trust): run the workspace's metrics
    check_workers: int = 2       # INT8WB_CHECK_WORKERS: checker processes (checking.py)
    check_s: float = 10.0        # INT8WB_CHECK_SECONDS: a check running longer is stopped, and says so
    check_memory_mb: int = 1024  # INT8WB_CHECK_MEMORY_MB: address space of one checker process
    ray: str | None = None       # INT8WB_RAY: run calibrations on this Ray cluster (auto, local, an address)
    ray_cpus: float = 1.0        # INT8WB_RAY_CPUS: CPUs each calibration reserves there

    @classmethod
    def from_env(cls) -> Settings:
        return cls(debounce_s=_read("INT8WB_DEBOUNCE_SECONDS", float, cls.debounce_s),
                   settle_s=_read("INT8WB_SETTLE_SECONDS", float, cls.settle_s),
                   rescan_s=_read("INT8WB_RESCAN_SECONDS", float, cls.rescan_s),
                   max_jobs=_read("INT8WB_MAX_JOBS", int, cls.max_jobs),
                   log_level=os.environ.get("INT8WB_LOG", cls.log_level),
                   trust_custom_metrics=trusted(),
                   check_workers=_read("INT8WB_CHECK_WORKERS", int, cls.check_workers),
                   check_s=_read("INT8WB_CHECK_SECONDS", float, cls.check_s),
                   check_memory_mb=_read("INT8WB_CHECK_MEMORY_MB", int, cls.check_memory_mb),
                   ray=os.environ.get("INT8WB_RAY") or None,
                   ray_cpus=_read("INT8WB_RAY_CPUS", float, cls.ray_cpus))


LIVE = {"debounceSeconds": "debounce_s", "rescanSeconds": "rescan_s"}  # what an editor may change while we run


def with_options(settings: Settings, options) -> tuple[Settings, list[str]]:
    """`settings` with the editor's `int8wb` section applied (initializationOptions, workspace/configuration,
    didChangeConfiguration), and what was refused, in words. The environment stays the fallback."""
    if not isinstance(options, dict):
        return settings, [] if options is None else [f"int8wb settings must be an object, got {type(options).__name__}"]
    changes, refused = {}, []
    for key, value in options.items():
        field = LIVE.get(key)
        if field is None:
            refused.append(f"int8wb.{key} is not a setting that can change while the server runs "
                           f"(live: {', '.join(LIVE)}; the others come from the environment at start)")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 3600:
            refused.append(f"int8wb.{key} must be a number of seconds in (0, 3600], got {value!r}")
        else:
            changes[field] = float(value)
    return replace(settings, **changes), refused


def _read(name: str, kind: Callable[[str], float], default: float):
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return kind(raw)
    except ValueError:
        expected = "an integer" if kind is int else "a number"
        raise ValueError(f"environment variable {name}={raw!r}: expected {expected}") from None
