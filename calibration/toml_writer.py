"""The engine's one TOML writer: a spec-shaped dict as TOML text (parse it back with `tomllib`).

Specs are flat: top-level keys and one level of tables of scalars and arrays, which is all this
writes; a nested table or a value TOML cannot hold is refused with a TypeError naming it. TOML has
no null, so in `overlay` None means "absent": it removes a key or table.
"""
from __future__ import annotations

import json
import math
import os
import re


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (str, os.PathLike)):
        return json.dumps(os.fspath(value))  # a JSON string is a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} into a spec")


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def to_toml(data: dict) -> str:
    """A spec dict as TOML text (top-level keys and one level of tables, as specs have)."""
    lines = [f"{_key(k)} = {_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for key, table in data.items():
        if isinstance(table, dict):
            lines += ["", f"[{_key(key)}]"]
            for k, v in table.items():
                if isinstance(v, dict):
                    raise TypeError(f"[{key}] {k} cannot be a table")
                lines.append(f"{_key(k)} = {_value(v)}")
    return "\n".join(lines) + "\n"


def overlay(base: dict, overrides: dict) -> dict:
    """`base` with `overrides` on top: tables merge key by key; None removes a key or table."""
    out = dict(base)
    for key, value in overrides.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {k: v for k, v in {**out[key], **value}.items() if v is not None}
        else:
            out[key] = value
    return out
