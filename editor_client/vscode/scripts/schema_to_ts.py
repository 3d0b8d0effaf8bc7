"""TypeScript declarations from a JSON Schema as pydantic writes it (`make schema` runs this).

`python scripts/schema_to_ts.py SCHEMA OUT.ts ROOT` writes one `export interface` per object
definition (the document itself is named ROOT) and one `export type` per other definition;
`--check` writes nothing and exits 1 when OUT.ts differs. Only what pydantic emits is handled:
$ref, anyOf, enum, const, the JSON types, arrays, objects with properties or additionalProperties
(keys limited by propertyNames' enum); anything else becomes `unknown`.
"""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
IDENTIFIER = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")
SCALARS = {"string": "string", "integer": "number", "number": "number", "boolean": "boolean", "null": "null"}


def _doc(schema: dict, indent: str) -> list[str]:
    text = schema.get("description")
    if not text:
        return []
    lines = text.replace("*/", "*\\/").splitlines()
    if len(lines) == 1:
        return [f"{indent}/** {lines[0]} */"]
    return [f"{indent}/**"] + [f"{indent} * {line}".rstrip() for line in lines] + [f"{indent} */"]


def _union(types: list[str]) -> str:
    unique = list(dict.fromkeys(types))
    return " | ".join(unique) if unique else "never"


def _members(schema: dict, indent: str) -> list[str]:
    required = set(schema.get("required", []))
    lines = []
    for name, prop in schema.get("properties", {}).items():
        key = name if IDENTIFIER.match(name) else json.dumps(name)
        lines += _doc(prop, indent)
        lines.append(f"{indent}{key}{'' if name in required else '?'}: {ts_type(prop, indent)};")
    return lines


def ts_type(schema: dict | bool, indent: str = "") -> str:
    """The TypeScript type of one schema, inline."""
    if schema is True or schema == {}:
        return "unknown"
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return _union([ts_type(s, indent) for s in schema["anyOf"]])
    if "const" in schema:
        return json.dumps(schema["const"])
    if "enum" in schema:
        return _union([json.dumps(v) for v in schema["enum"]])
    kind = schema.get("type")
    if isinstance(kind, list):
        return _union([ts_type({**schema, "type": k}, indent) for k in kind])
    if kind in SCALARS:
        return SCALARS[kind]
    if kind == "array":
        item = ts_type(schema.get("items", True), indent)
        return f"({item})[]" if " " in item else f"{item}[]"
    if kind == "object":
        if "properties" in schema:
            inner = indent + "  "
            return "{\n" + "\n".join(_members(schema, inner)) + f"\n{indent}}}"
        values = ts_type(schema.get("additionalProperties", True), indent)
        keys = schema.get("propertyNames", {}).get("enum")
        if keys:
            return f"{{ [K in {_union([json.dumps(k) for k in keys])}]?: {values} }}"
        return f"{{ [key: string]: {values} }}"
    return "unknown"


def _declaration(name: str, schema: dict) -> list[str]:
    lines = _doc(schema, "")
    if schema.get("type") == "object" and "properties" in schema:
        return lines + [f"export interface {name} {{", *_members(schema, "  "), "}"]
    return lines + [f"export type {name} = {ts_type(schema)};"]


def typescript(schema: dict, root: str, source: str) -> str:
    """The declarations of `schema` (named `root`) and of its $defs, as one .ts file."""
    out = [f"// Generated from {source} by editor_client/vscode/scripts/schema_to_ts.py: do not edit.",
           "// Regenerate with `make schema` (tests/editor_client/test_vscode_types.py checks it is current)."]
    definitions = {root: {k: v for k, v in schema.items() if k != "$defs"}, **schema.get("$defs", {})}
    for name, definition in definitions.items():
        out += ["", *_declaration(name, definition)]
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    schema_path, out_path, root = [a for a in argv if a != "--check"]
    schema_path, out_path = Path(schema_path), Path(out_path)
    source = Path(os.path.relpath(schema_path.resolve(), REPO)).as_posix()
    text = typescript(json.loads(schema_path.read_text(encoding="utf-8")), root, source)
    current = out_path.read_text(encoding="utf-8") if out_path.is_file() else ""
    if check:
        if current != text:
            print(f"{out_path} is stale: run `make schema`", file=sys.stderr)
        return int(current != text)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
