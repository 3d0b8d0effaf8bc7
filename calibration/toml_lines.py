"""Maps a key path (as pydantic reports it) to its line in the TOML text.

tomllib keeps no positions, so we scan the text: table headers set the current table,
`key =` lines add keys. Good enough for hand-written specs; falls back to the nearest
enclosing table, then to line 1, so every problem still gets a line.
"""
from __future__ import annotations

import re

_HEADER = re.compile(r"^\s*\[\[?\s*([^\[\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"""^\s*((?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+)(?:\s*\.\s*(?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+))*)\s*=""")


def _split(dotted: str) -> tuple[str, ...]:
    parts = re.findall(r""""([^"]*)"|'([^']*)'|([A-Za-z0-9_-]+)""", dotted)
    return tuple(a or b or c for a, b, c in parts)


def key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Every table and key path in the text with the 1-based line it is defined on."""
    lines: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    in_multiline = False
    for number, raw in enumerate(text.splitlines(), start=1):
        # Skip the body of multi-line strings so their content is not read as keys.
        if in_multiline:
            if raw.count('"""') % 2 == 1 or raw.count("'''") % 2 == 1:
                in_multiline = False
            continue
        header = _HEADER.match(raw)
        if header:
            table = _split(header.group(1))
            lines.setdefault(table, number)
            continue
        key = _KEY.match(raw)
        if key:
            lines.setdefault(table + _split(key.group(1)), number)
            if raw.count('"""') % 2 == 1 or raw.count("'''") % 2 == 1:
                in_multiline = True
    return lines


def line_of(text: str, loc: tuple) -> int:
    """Line of the longest prefix of `loc` that the text defines (list indices are ignored)."""
    lines = key_lines(text)
    path = tuple(str(p) for p in loc if not isinstance(p, int))
    for end in range(len(path), 0, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return 1
