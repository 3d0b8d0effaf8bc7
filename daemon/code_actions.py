"""Quick fixes for the spec rules that have one obvious repair: the key's value is replaced in place."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from lsprotocol import types

from int8wb.calibration.spec import SPEC_SUFFIX
from int8wb.daemon import layers
from int8wb.daemon.diagnostics import SOURCE
from int8wb.daemon.paths import document

if TYPE_CHECKING:
    from int8wb.daemon.server import Int8Server

FIXES = {  # rule -> (key regex, replacement value, title)
    "unannotated-accuracy-aware": (r"method", '"default"', 'Set method = "default"'),
    "device-without-int8": (r"device", '"CPU"', 'Set device = "CPU"'),
    "device-missing": (r"device", '"CPU"', 'Set device = "CPU"'),
}
OPTIONS = types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix])


def code_actions(ls: Int8Server, params: types.CodeActionParams) -> list[types.CodeAction | types.Command]:
    uri = params.text_document.uri
    doc = document(ls, uri)
    if not uri.endswith(SPEC_SUFFIX) or doc is None:
        return []
    lines = doc.source.splitlines()
    # Reachable in every client (eglot 1.9 has no code lens): calibrate the saved spec.
    actions: list = [types.Command(title="Calibrate with int8wb", command="int8wb.calibrate", arguments=[uri])]
    actions += layers.pin_action(ls, uri, lines)
    for diag in params.context.diagnostics:
        if str(diag.code) == "dynamic-shape" and diag.source in (SOURCE, None):
            actions += deployment_shape(uri, lines, diag)
            continue
        fix = FIXES.get(str(diag.code)) if diag.source in (SOURCE, None) else None
        if fix is None:
            continue
        key, value, title = fix
        n = diag.range.start.line
        target = find_key_line(lines, key, n)
        if target is None:
            continue
        old = lines[target]
        new = re.sub(rf'^(\s*{key}\s*=\s*)("[^"]*"|\'[^\']*\'|[^#\s]+)', rf"\g<1>{value}", old, count=1)
        if new == old:
            continue
        edit = types.TextEdit(range=types.Range(start=types.Position(target, 0),
                                                end=types.Position(target, len(old))), new_text=new)
        actions.append(types.CodeAction(title=title, kind=types.CodeActionKind.QuickFix, diagnostics=[diag],
                                        is_preferred=True,
                                        edit=types.WorkspaceEdit(changes={uri: [edit]})))
    return actions


SHAPE = re.compile(r"shape = (\[[\d, \[\]]+\]) \(the shape of the first sample\)")


def deployment_shape(uri: str, lines: list[str], diag: types.Diagnostic) -> list[types.CodeAction]:
    """dynamic-shape: adds `[deployment] shape = ...` with the shape the data has (named in the fix)."""
    match = SHAPE.search((diag.data or {}).get("fix") or "" if isinstance(diag.data, dict) else diag.message)
    if match is None:
        return []
    header = next((i for i, line in enumerate(lines) if re.match(r"^\s*\[deployment\]", line)), None)
    at = len(lines) if header is None else header + 1
    text = ("" if header is not None else ("\n" if lines and lines[-1].strip() else "") + "[deployment]\n") + \
        f"shape = {match.group(1)}\n"
    edit = types.TextEdit(range=types.Range(start=types.Position(at, 0), end=types.Position(at, 0)), new_text=text)
    return [types.CodeAction(title=f"Deploy at shape {match.group(1)}", kind=types.CodeActionKind.QuickFix,
                             diagnostics=[diag], is_preferred=True, edit=types.WorkspaceEdit(changes={uri: [edit]}))]


def find_key_line(lines: list[str], key: str, near: int) -> int | None:
    """The line setting `key` nearest to `near` (a diagnostic may point at the table, not the key)."""
    pattern = re.compile(rf"^\s*{key}\s*=")
    if 0 <= near < len(lines) and pattern.match(lines[near]):
        return near
    hits = [i for i, line in enumerate(lines) if pattern.match(line)]
    return min(hits, key=lambda i: abs(i - near)) if hits else None
