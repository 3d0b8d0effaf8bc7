"""Hover on a spec's `model = "..."` line: the model's facts and whether it can be calibrated."""
from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import TYPE_CHECKING

from lsprotocol import types
from pygls.uris import to_fs_path

from int8wb.calibration.spec import SPEC_SUFFIX
from int8wb.daemon.diagnostics import check_model
from int8wb.calibration.model_files import signature

if TYPE_CHECKING:
    from int8wb.daemon.server import Int8Server

MODEL_LINE = re.compile(r"^\s*model\s*=")
CACHE_SIZE = 256  # models remembered by (path, signature); the cache is emptied past this


async def hover(ls: Int8Server, params: types.HoverParams) -> types.Hover | None:
    uri = params.text_document.uri
    if not uri.endswith(SPEC_SUFFIX):
        return None
    doc = ls.workspace.get_text_document(uri)
    lines = doc.source.splitlines()
    n = params.position.line
    if n >= len(lines) or not MODEL_LINE.match(lines[n]):
        return None
    m = re.search(r'=\s*["\']([^"\']+)["\']', lines[n])
    if not m:
        return None
    model = (Path(to_fs_path(uri)).parent / m.group(1)).resolve()
    text = await asyncio.to_thread(model_markdown, ls.hover_cache, model)
    return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=text),
                       range=types.Range(start=types.Position(n, 0), end=types.Position(n, len(lines[n]))))


def model_markdown(cache: dict, model: Path) -> str:
    """The hover text of one model (runs in a thread: it reads the model)."""
    key = (model, signature(model))
    if key in cache:
        return cache[key]
    from int8wb.calibration.inspection import inspect_model
    from int8wb.calibration.problems import CalibrationError
    try:
        info = inspect_model(model)
    except CalibrationError as exc:
        return f"**{model.name}**: " + "; ".join(p.message for p in exc.problems)
    except OSError as exc:
        return f"**{model.name}**: {exc}"
    errors = [p for p in check_model(model) if p.severity == "error"]
    shape = lambda t: "[" + ",".join("?" if d < 0 else str(d) for d in t.shape) + "]"  # noqa: E731
    rows = [f"**{info.name}** (`{model.name}`)", "",
            f"- IR version: {info.ir_version}",
            f"- precision: {info.precision}" + (" (FP16-compressed weights)" if info.fp16_compressed_weights else ""),
            "- inputs: " + ", ".join(f"`{t.name}` {shape(t)} {t.element_type}" for t in info.inputs),
            f"- layers: {info.layer_count} ({len(info.int8_layers)} INT8-able)",
            "- eligibility: " + ("✅ can be calibrated" if not errors else
                                 "❌ " + "; ".join(f"{p.rule}: {p.message}" for p in errors))]
    text = "\n".join(rows)
    if len(cache) > CACHE_SIZE:
        cache.clear()
    cache[key] = text
    return text
