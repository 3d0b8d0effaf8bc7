"""What every method shares with NNCF: the calibration data as NNCF iterates it, NNCF's settings for
a spec, and NNCF calls with their own progress output silenced."""
from __future__ import annotations

import logging
from typing import Iterator

import nncf
import rich

from .. import devices
from ..datasets import Dataset
from ..problems import Cancelled
from ..spec import Spec

nncf.set_log_level(logging.WARNING)  # NNCF's INFO lines would drown our own progress


class Feed:
    """The calibration subset as NNCF iterates it, reporting progress and honouring cancel.

    NNCF may walk the data more than once (statistics, then bias correction), so the
    progress is the share of samples served modulo one pass.
    """

    def __init__(self, dataset: Dataset, indices: list[int], progress, cancel):
        self.dataset, self.indices = dataset, indices
        self.progress, self.cancel = progress, cancel
        self.served = 0

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[dict]:
        for i in self.indices:
            if self.cancel and self.cancel():
                raise Cancelled()
            self.served += 1
            if self.progress:
                self.progress(min(0.99, self.served / (2 * len(self.indices))))
            yield self.dataset.load(i)


def nncf_settings(spec: Spec) -> dict:
    """The preset and target device NNCF quantizes for."""
    preset = {"performance": nncf.QuantizationPreset.PERFORMANCE,
              "mixed": nncf.QuantizationPreset.MIXED}[spec.calibration.preset]
    device = nncf.TargetDevice.CPU if devices.is_cpu(spec.device) else nncf.TargetDevice.ANY
    return {"preset": preset, "target_device": device}


def quiet(fn, *args, **kwargs):
    """Runs an NNCF call with its progress bars (drawn on rich's global console) silenced:
    callers get our progress instead, and stdout stays clean for --json."""
    console = rich.get_console()
    was, console.quiet = console.quiet, True
    try:
        return fn(*args, **kwargs)
    finally:
        console.quiet = was
