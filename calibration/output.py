"""Writing results without ever exposing a half-written file or touching the original.

Everything is written under a temporary name in the destination folder and renamed into
place at the end (rename is atomic within a filesystem); a failure removes the temporaries.
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


class Staging:
    """Temporary outputs that become visible together on commit()."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.pending: list[tuple[Path, Path]] = []  # (temporary, final)

    def temp_for(self, final: Path) -> Path:
        return final.with_name(f".{final.name}.tmp-{os.getpid()}")

    def save_model(self, model: ov.Model, final_xml: Path) -> Path:
        """Saves to a temporary pair (XML named *.xml so OpenVINO finds the .bin) and returns it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp_xml = final_xml.with_name(f".{final_xml.stem}.tmp-{os.getpid()}.xml")
        ov.save_model(model, str(tmp_xml), compress_to_fp16=False)
        # The .bin lands first so a watcher that sees the .xml finds the pair complete.
        self.pending += [(tmp_xml.with_suffix(".bin"), final_xml.with_suffix(".bin")), (tmp_xml, final_xml)]
        return tmp_xml

    def write_json(self, data: dict, final: Path) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.temp_for(final)
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        self.pending.append((tmp, final))

    def commit(self) -> None:
        for tmp, final in self.pending:
            os.replace(tmp, final)
        self.pending.clear()

    def discard(self) -> None:
        for tmp, _ in self.pending:
            tmp.unlink(missing_ok=True)
        self.pending.clear()
