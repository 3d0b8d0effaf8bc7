"""Code lenses on a spec's first line: calibrate or cancel, the last result, and its report."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from lsprotocol import types
from pygls.uris import from_fs_path

from int8wb.calibration.spec import SPEC_SUFFIX
from int8wb.daemon.commands import job_line
from int8wb.daemon.paths import path_of, resolved

if TYPE_CHECKING:
    from int8wb.daemon.server import Int8Server


def code_lens(ls: Int8Server, params: types.CodeLensParams) -> list[types.CodeLens]:
    uri = params.text_document.uri
    path = path_of(uri)
    if not uri.endswith(SPEC_SUFFIX) or path is None:
        return []
    spec = resolved(path)
    at = types.Range(start=types.Position(0, 0), end=types.Position(0, 0))
    store = ls.store_for(spec)
    lenses = []
    active = store.active_for(str(spec)) if store else None
    if active is not None:
        what = "queued" if active["state"] == "queued" else f"{active['percent']:.0f}% {active['phase'] or ''}"
        lenses.append(types.CodeLens(range=at, command=types.Command(
            title=f"Calibrating… {what.strip()} (cancel)", command="int8wb.cancel", arguments=[active["id"]])))
    else:
        lenses.append(types.CodeLens(range=at, command=types.Command(
            title="▶ Calibrate", command="int8wb.calibrate", arguments=[uri])))
    last = store.last_result(str(spec)) if store else None
    if last is not None:
        s = last["summary"] or {}
        lenses.append(types.CodeLens(range=at, command=types.Command(
            title=f"Last result: {job_line(last).removeprefix('done: ')}", command="int8wb.compare",
            arguments=[uri])))
        if s.get("report"):
            lenses.append(types.CodeLens(range=at, command=types.Command(
                title=f"Open report ({Path(s['report']).name})", command="int8wb.openReport",
                arguments=[from_fs_path(s["report"])])))
    return lenses
