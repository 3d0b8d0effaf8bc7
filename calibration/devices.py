"""The device rule, once: how a device string is read and which devices have an INT8 path.

Every place that asks "is this the CPU?", "does this device calibrate?" or "is it here?" asks here,
so "GPU.1", "CPU:0" and "AUTO:CPU" are read the same way by the checker, the speed runs and compare.
"""
from __future__ import annotations

# Devices the product does not calibrate for (DL Workbench's rule: INT8 is a CPU path).
NO_INT8 = frozenset({"GPU", "VPU", "MYRIAD", "HDDL", "NPU", "GNA"})
# Devices that stand for others; OpenVINO lists none of them in available_devices.
VIRTUAL = frozenset({"AUTO", "HETERO", "MULTI", "BATCH"})
# Where shapes and reference values are computed, whatever the target (it always exists).
REFERENCE = "CPU"


def base(device: str) -> str:
    """`GPU.1` -> `GPU`, `AUTO:CPU` -> `AUTO`, `cpu` -> `CPU`."""
    return device.split(":")[0].split(".")[0].upper()


def is_cpu(device: str) -> bool:
    return base(device) == "CPU"


def has_int8_path(device: str) -> bool:
    return base(device) not in NO_INT8


def is_available(device: str, available: list[str]) -> bool:
    """Whether `device` can be compiled for here, given the runtime's available_devices."""
    return base(device) in VIRTUAL or base(device) in {base(d) for d in available}
