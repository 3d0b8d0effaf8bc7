"""Hover on a spec's `model = "..."` line: the model's facts and whether it can be calibrated; on a
`max_drop = ...` line: the last result's drop with its 95 % interval against that budget. Written in
Markdown; markup.py gives them to the client in the format it reads.

The facts are read by a checker process (checking.py) and remembered per (model, signature): a hover
on a model that did not change answers from memory, without waiting for any check under way."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from lsprotocol import types

from int8wb.calibration import stats
from int8wb.calibration.deployment import describe
from int8wb.calibration.model_files import signature
from int8wb.calibration.spec import SPEC_SUFFIX
from int8wb.daemon import layers
from int8wb.daemon.markup import hover_of
from int8wb.daemon.paths import document, path_of, resolved

if TYPE_CHECKING:
    from int8wb.daemon.server import Int8Server

MODEL_LINE = re.compile(r"^\s*model\s*=")
MODEL_VALUE = re.compile(r'=\s*["\']([^"\']+)["\']')
BUDGET_LINE = re.compile(r"^\s*max_drop\s*=")
MAX_DROP_VALUE = re.compile(r"=\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(?:#|$)")
LINE_BREAK = re.compile(r"\r\n|\r|\n")
CACHE_SIZE = 256  # models remembered by (path, signature); the cache is emptied past this


async def hover(ls: Int8Server, params: types.HoverParams) -> types.Hover | None:
    uri = params.text_document.uri
    doc = document(ls, uri)
    spec = path_of(uri)
    if not uri.endswith(SPEC_SUFFIX) or doc is None or spec is None:
        return None  # only open buffers: pygls would read an unopened file itself, unguarded
    n = params.position.line
    line = _line(doc.source, n)
    if line is not None and BUDGET_LINE.match(line):
        return _last_drop(ls, spec, n, line)
    if line and ('"' in line or "'" in line) and not MODEL_LINE.match(line) and "ignored_scope" in doc.source:
        if (found := await layers.hover(ls, spec, doc.source, n, params.position.character)) is not None:
            return found
    if line is None or not MODEL_LINE.match(line) or not (m := MODEL_VALUE.search(line)):
        return None
    model = resolved(spec.parent / m.group(1)) if "\0" not in m.group(1) else spec.parent / "?"
    key = (model, signature(model))
    text = ls.hover_cache.get(key)
    if text is None:
        text, answered = await ls.checker.hover(model)
        if answered:  # a check stopped for time or memory is asked again next time
            if len(ls.hover_cache) > CACHE_SIZE:
                ls.hover_cache.clear()
            ls.hover_cache[key] = text
    return hover_of(ls, text, n, len(line))


def _last_drop(ls: Int8Server, spec, n: int, line: str) -> types.Hover | None:
    """On a `max_drop = ...` line: the last result's drop with its 95 % interval, against that budget."""
    store = ls.store_for(resolved(spec))
    last = store.last_result(str(resolved(spec))) if store else None
    budget = MAX_DROP_VALUE.search(line)
    text = drop_text((last or {}).get("summary") or {}, float(budget.group(1)) if budget else None)
    return hover_of(ls, text, n, len(line)) if text else None


def drop_text(s: dict, budget: float | None) -> str | None:
    """The last result's drops (validation, then held out: the data the search never saw), each with
    its 95 % interval and its verdict against `budget`."""
    if not isinstance(s.get("drop"), (int, float)):
        return None
    text = "**Last result**: drop " + _judged(s["drop"], s.get("drop_ci"), budget)
    held = s.get("heldout")
    if isinstance(held, dict) and isinstance(held.get("drop"), (int, float)):
        text += f"\n\n**Held out** ({held.get('size', '?')} samples): drop " + _judged(held["drop"], held.get("drop_ci"), budget)
    if isinstance(s.get("deployment"), dict):  # the verdict holds for the profile it was measured on
        text += f"\n\nMeasured at: {describe(s['deployment'])}"
    return text


def _judged(drop: float, ci, budget: float | None) -> str:
    text = f"{drop * 100:.2f} pp"
    if isinstance(ci, list) and len(ci) == 2:
        text += f", 95 % interval {ci[0] * 100:.2f} to {ci[1] * 100:.2f} pp"
        if budget is not None:
            verdict = stats.budget_verdict(ci, budget)
            text += {"met": ": within this budget on evidence", "exceeded": ": over this budget on evidence",
                     "undecided": ": the data cannot tell whether it is within this budget (more samples decide it)"}[verdict]
    return text


def _line(text: str, n: int) -> str | None:
    """Line `n` of `text` (LSP's line breaks) without splitting the whole buffer: it may be megabytes."""
    lines = LINE_BREAK.split(text, maxsplit=n + 1)
    return lines[n] if n < len(lines) else None
