"""Layer names in a spec's `[calibration.ignored_scope]`: completed from the spec's own model, explained
on hover, and the layers AccuracyAware left in FP32 pinned there by a code action.

The model is read by a checker process (check_worker's "layers"), never here, and its table is
remembered per (model, signature): typing in a list of names does not read the model again.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from lsprotocol import types

from int8wb.calibration.model_files import signature
from int8wb.calibration.spec import SPEC_SUFFIX
from int8wb.daemon.markup import hover_of
from int8wb.daemon.paths import document, path_of, resolved

if TYPE_CHECKING:
    from int8wb.daemon.server import Int8Server

HEADER = re.compile(r"^\s*\[\s*([^\]]+?)\s*\]")
SCOPE = "calibration.ignored_scope"
KEY = re.compile(r"^\s*(names|types|patterns|subgraphs)\s*=")
MODEL = re.compile(r'^\s*model\s*=\s*["\']([^"\']+)["\']')
QUOTED = re.compile(r'"([^"]*)"|\'([^\']*)\'')
CACHE_SIZE = 64


def scope_key(lines: list[str], n: int) -> str | None:
    """The `ignored_scope` key whose value line `n` is in (arrays may span lines), else None."""
    for i in range(min(n, len(lines) - 1), -1, -1):
        if i < n and HEADER.match(lines[i]):
            return None  # the key above belongs to another table
        m = KEY.match(lines[i])
        if m:
            return m.group(1) if _table(lines, i) == SCOPE else None
    return None


def _table(lines: list[str], n: int) -> str | None:
    for i in range(n, -1, -1):
        if m := HEADER.match(lines[i]):
            return re.sub(r"\s*\.\s*", ".", m.group(1))
    return None


async def table_for(ls: Int8Server, spec, text: str) -> dict | None:
    """The layer table of the model the spec buffer names ({"layers", "int8_able"}), or None."""
    m = next((MODEL.match(line) for line in text.splitlines() if MODEL.match(line)), None)
    if m is None or "\0" in m.group(1):
        return None
    model = resolved(spec.parent / m.group(1))
    key = (model, signature(model))
    if key not in ls.layer_cache:
        table = await ls.checker.layers(model)
        if table is None:
            return None
        if len(ls.layer_cache) > CACHE_SIZE:
            ls.layer_cache.clear()
        ls.layer_cache[key] = table
    return ls.layer_cache[key]


async def completion(ls: Int8Server, params: types.CompletionParams) -> types.CompletionList | None:
    uri = params.text_document.uri
    doc, spec = document(ls, uri), path_of(uri)
    if not uri.endswith(SPEC_SUFFIX) or doc is None or spec is None:
        return None
    lines = doc.source.splitlines()
    n, col = params.position.line, params.position.character
    key = scope_key(lines, n) if n < len(lines) else None
    if key not in ("names", "types", "subgraphs"):
        return None
    table = await table_for(ls, spec, doc.source)
    if table is None:
        return None
    inside = lines[n][:col].count('"') % 2 == 1 or lines[n][:col].count("'") % 2 == 1  # in a string already
    quote = (lambda s: s) if inside else (lambda s: f'"{s}"')
    if key == "types":
        counts: dict[str, int] = {}
        for _, type_, _, _ in table["layers"]:
            counts[type_] = counts.get(type_, 0) + 1
        items = [types.CompletionItem(label=t, kind=types.CompletionItemKind.Class, insert_text=quote(t),
                                      detail=f"{k} layer(s)" + (" · INT8-able" if t in table["int8_able"] else ""))
                 for t, k in sorted(counts.items())]
    else:
        items = [types.CompletionItem(label=name, kind=types.CompletionItemKind.Field, insert_text=quote(name),
                                      detail=f"{type_} {' '.join(shapes)}".strip(), sort_text=f"{i:08d}")
                 for i, (name, type_, _, shapes) in enumerate(table["layers"]) if type_ not in ("Const",)]
    return types.CompletionList(is_incomplete=False, items=items)


async def hover(ls: Int8Server, spec, text: str, n: int, col: int) -> types.Hover | None:
    """On a layer name or type in the ignored scope: what the model says of it."""
    lines = text.splitlines()
    key = scope_key(lines, n) if n < len(lines) else None
    if key not in ("names", "types", "subgraphs"):
        return None
    word = next((m.group(1) if m.group(1) is not None else m.group(2) for m in QUOTED.finditer(lines[n])
                 if m.start() <= col <= m.end()), None)
    table = await table_for(ls, spec, text) if word else None
    if table is None:
        return None
    able = table["int8_able"]
    if key == "types":
        found = [row for row in table["layers"] if row[1] == word]
        value = (f"**{word}**: {len(found)} layer(s) of the model" + (" (INT8-able)" if word in able else "")
                 if found else f"**{word}**: no layer of the model has this type")
    else:
        row = next((r for r in table["layers"] if r[0] == word), None)
        value = (f"**{word}**: no layer of the model has this name" if row is None else
                 f"**{word}**: {row[1]}, output {' '.join(row[3]) or '?'}, line {row[2]} of the model's XML; "
                 + ("INT8-able: quantized unless kept here" if row[1] in able else
                    "not INT8-able itself (its inputs may still be quantized for its consumers)"))
    return hover_of(ls, value, n, len(lines[n]))


def pin_action(ls: Int8Server, uri: str, lines: list[str]) -> list[types.CodeAction]:
    """"Pin the layers AccuracyAware left in FP32 in ignored_scope": from the spec's last result."""
    spec = path_of(uri)
    store = ls.store_for(resolved(spec)) if spec else None
    last = store.last_result(str(resolved(spec))) if store else None
    names = ((last or {}).get("summary") or {}).get("fp32_layers") or []
    if not names or not all(isinstance(x, str) for x in names):
        return []
    header = next((i for i, line in enumerate(lines) if _table(lines, i) == SCOPE and HEADER.match(line)), None)
    existing = next((i for i in range(header + 1, len(lines)) if HEADER.match(lines[i]) or
                     re.match(r"^\s*names\s*=", lines[i])), None) if header is not None else None
    value = "[" + ", ".join(f'"{n}"' for n in names) + "]"
    if existing is not None and not HEADER.match(lines[existing]):
        if "]" not in lines[existing].split("=", 1)[1]:
            return []  # an array over several lines: editing one of them would break the file
        have = [a or b for a, b in QUOTED.findall(lines[existing].split("=", 1)[1])]
        if set(names) <= set(have):
            return []
        value = "[" + ", ".join(f'"{n}"' for n in have + [n for n in names if n not in have]) + "]"
        start, end, text = types.Position(existing, 0), types.Position(existing, len(lines[existing])), \
            f"names = {value}"
    elif header is not None:
        start = end = types.Position(header + 1, 0)
        text = f"names = {value}\n"
    else:
        start = end = types.Position(len(lines), 0)
        text = ("\n" if lines and lines[-1].strip() else "") + f"[{SCOPE}]\nnames = {value}\n"
    edit = types.TextEdit(range=types.Range(start=start, end=end), new_text=text)
    return [types.CodeAction(title=f"Pin the {len(names)} layer(s) AccuracyAware left in FP32 in ignored_scope",
                             kind=types.CodeActionKind.QuickFix, edit=types.WorkspaceEdit(changes={uri: [edit]}))]
