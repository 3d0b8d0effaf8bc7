"""Writing results without ever exposing a half-written file or touching the original.

Everything is written under a temporary name in the destination folder and renamed into
place at the end (rename is atomic within a filesystem); a failure removes the temporaries.
The final names are chosen at commit time, so an over-budget result can be committed under
names that say so instead of as a success.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import openvino as ov

from .inspection import MARK


def mark(model: ov.Model, **fields: str) -> None:
    """Records in rt_info that this model is our output, so it is never calibrated again."""
    for key, value in fields.items():
        model.set_rt_info(str(value), [MARK, key])


def output_paths(folder: Path, model_stem: str, over_budget: bool = False) -> dict[str, Path]:
    stem = f"{model_stem}.int8" + (".over-budget" if over_budget else "")
    return {"model": folder / f"{stem}.xml", "weights": folder / f"{stem}.bin",
            "result": folder / f"{stem}.json", "report": folder / f"{stem}.report.html"}


class Staging:
    """Temporary outputs, by role ("model", "weights", "result", ...), renamed together on commit()."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.pending: dict[str, Path] = {}

    def _temp(self, role: str, suffix: str) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder / f".{role}.tmp-{os.getpid()}{suffix}"

    def save_model(self, model: ov.Model) -> Path:
        """Saves to a temporary pair (XML named *.xml so OpenVINO finds the .bin) and returns the XML."""
        xml = self._temp("model", ".xml")
        ov.save_model(model, str(xml), compress_to_fp16=False)
        self.pending["weights"], self.pending["model"] = xml.with_suffix(".bin"), xml
        return xml

    def write_text(self, role: str, text: str) -> Path:
        tmp = self._temp(role, ".txt")
        tmp.write_text(text, encoding="utf-8")
        self.pending[role] = tmp
        return tmp

    def write_json(self, role: str, data: dict) -> Path:
        return self.write_text(role, json.dumps(data, indent=2) + "\n")

    def commit(self, finals: dict[str, Path]) -> None:
        # The .bin lands before the .xml so a watcher that sees the .xml finds the pair complete.
        for role in sorted(self.pending, key=lambda r: r == "model"):
            os.replace(self.pending[role], finals[role])
        self.pending.clear()

    def discard(self) -> None:
        for tmp in self.pending.values():
            tmp.unlink(missing_ok=True)
        self.pending.clear()
