"""Writing results without ever exposing a half-written file or touching the original.

Everything is written under a temporary name in the destination folder and committed at the end
as one unit (`commit`: a journal, then the renames, finished later if the process is killed in
between); a failure before the commit removes the temporaries. The final names are chosen at
commit time, so an over-budget result can be committed under names that say so instead of as a
success.
"""
from __future__ import annotations

import json
from pathlib import Path

import openvino as ov

from .commit import Resolution, commit_set, recover, temporary
from .inspection import MARK


def mark(model: ov.Model, **fields: str) -> None:
    """Records in rt_info that this model is our output, so it is never calibrated again."""
    for key, value in fields.items():
        model.set_rt_info(str(value), [MARK, key])


class Staging:
    """Temporary outputs, by role ("model", "weights", "result", ...), committed as one unit.

    Opening a staging finishes any commit into `folder` that a killed process left half done."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.pending: dict[str, Path] = {}
        recover(folder)

    def _temp(self, role: str, suffix: str) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        return temporary(self.folder, role, suffix)

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

    def commit(self, finals: dict[str, Path], journal: Path | None = None, guard=None) -> Resolution:
        """Puts every pending file in place as `finals[role]`; `journal`: a job's, `guard`: a last
        check under the folder's lock (see `commit.commit_set`)."""
        return commit_set(self.pending, finals, journal, guard)

    def discard(self) -> None:
        for tmp in self.pending.values():
            tmp.unlink(missing_ok=True)
        self.pending.clear()
