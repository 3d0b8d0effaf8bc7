"""Completion in a spec: the keys of the table the cursor is in and the allowed values of a key, from the
spec's own schema (the pydantic models the JSON Schema is made from), each with its description; and
in `[calibration.ignored_scope]`, the layer names and types of the spec's model (layers.py)."""
from __future__ import annotations

import re
import typing
from typing import TYPE_CHECKING, Literal

from lsprotocol import types
from pydantic import BaseModel

from int8wb.calibration.spec import SPEC_SUFFIX, Spec
from int8wb.daemon import layers
from int8wb.daemon.paths import document, path_of

if TYPE_CHECKING:
    from int8wb.daemon.server import Int8Server

OPTIONS = types.CompletionOptions(trigger_characters=['"', "'", "[", "="])
VALUE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*[\"']?[^\"']*$")


def table_model(name: str | None) -> type[BaseModel] | None:
    """The pydantic model of a dotted table name ("" or None: the top level)."""
    model: type[BaseModel] = Spec
    for part in (name or "").split(".") if name else []:
        field = model.model_fields.get(part)
        inner = _model_of(field.annotation) if field else None
        if inner is None:
            return None
        model = inner
    return model


def _model_of(annotation) -> type[BaseModel] | None:
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _literals(annotation) -> list[str]:
    if typing.get_origin(annotation) is Literal:
        return [str(a) for a in typing.get_args(annotation)]
    return [v for arg in typing.get_args(annotation) for v in _literals(arg)]


async def completion(ls: Int8Server, params: types.CompletionParams) -> types.CompletionList | None:
    uri = params.text_document.uri
    doc, spec = document(ls, uri), path_of(uri)
    if not uri.endswith(SPEC_SUFFIX) or doc is None or spec is None:
        return None
    if (found := await layers.completion(ls, params)) is not None:
        return found
    lines = doc.source.splitlines()
    n, col = params.position.line, params.position.character
    line = lines[n][:col] if n < len(lines) else ""
    table = next((layers.HEADER.match(lines[i]).group(1) for i in range(min(n, len(lines)) - 1, -1, -1)
                  if layers.HEADER.match(lines[i])), None)
    model = table_model(re.sub(r"\s*\.\s*", ".", table) if table else None)
    if model is None:
        return None
    if m := VALUE.match(line):  # after `key = `: the allowed values
        field = model.model_fields.get(m.group(1))
        values = _literals(field.annotation) if field else []
        inside = line.count('"') % 2 == 1
        items = [types.CompletionItem(label=v, kind=types.CompletionItemKind.EnumMember,
                                      insert_text=v if inside else f'"{v}"', documentation=field.description)
                 for v in values]
        return types.CompletionList(is_incomplete=False, items=items)
    if line.strip() and not re.fullmatch(r"\s*[A-Za-z_]*", line):
        return None
    written = {k.split("=")[0].strip() for k in _table_lines(lines, n)}
    items = [types.CompletionItem(label=name, kind=types.CompletionItemKind.Property, insert_text=f"{name} = ",
                                  detail=_detail(field.annotation), documentation=field.description)
             for name, field in model.model_fields.items()
             if name not in written and _model_of(field.annotation) is None]
    return types.CompletionList(is_incomplete=False, items=items)


def _table_lines(lines: list[str], n: int) -> list[str]:
    """The `key = ...` lines of the table that line `n` is in."""
    start = next((i + 1 for i in range(min(n, len(lines)) - 1, -1, -1) if layers.HEADER.match(lines[i])), 0)
    end = next((i for i in range(start, len(lines)) if layers.HEADER.match(lines[i])), len(lines))
    return [line for i, line in enumerate(lines[start:end], start) if "=" in line and i != n]


def _detail(annotation) -> str:
    values = _literals(annotation)
    return " | ".join(f'"{v}"' for v in values) if values else getattr(annotation, "__name__", str(annotation))
