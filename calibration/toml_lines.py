"""Maps a key path (as pydantic reports it) to its line in the TOML text.

tomllib keeps no positions, so we scan the text: table headers set the current table,
`key =` lines add keys. Good enough for hand-written specs; falls back to the nearest
enclosing table, then to line 1, so every problem still gets a line.

The text is the user's: the scan is a single linear pass per line (no regular expressions that
could backtrack), and one scan serves every problem of the same text.
"""
from __future__ import annotations

import functools

_BARE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def _skip_spaces(s: str, i: int) -> int:
    while i < len(s) and s[i] in " \t":
        i += 1
    return i


def _dotted(s: str, i: int) -> tuple[tuple[str, ...], int] | None:
    """A dotted key starting at s[i]: (parts, index after it) or None."""
    parts = []
    while True:
        i = _skip_spaces(s, i)
        if i < len(s) and s[i] in "\"'":
            end = s.find(s[i], i + 1)
            if end < 0:
                return None
            parts.append(s[i + 1:end])
            i = end + 1
        else:
            start = i
            while i < len(s) and s[i] in _BARE:
                i += 1
            if i == start:
                return None
            parts.append(s[start:i])
        i = _skip_spaces(s, i)
        if i < len(s) and s[i] == ".":
            i += 1
            continue
        return tuple(parts), i


def _value_state(s: str, i: int, depth: int) -> tuple[int, str | None]:
    """Scans a value from s[i]: (bracket depth after the line, open multi-line delimiter or None)."""
    while i < len(s):
        c = s[i]
        if c == "#":
            break
        if s.startswith('"""', i) or s.startswith("'''", i):
            end = s.find(s[i:i + 3], i + 3)
            if end < 0:
                return depth, s[i:i + 3]
            i = end + 3
            continue
        if c in "\"'":
            j = i + 1
            while j < len(s) and s[j] != c:
                j += 2 if c == '"' and s[j] == "\\" else 1
            i = j + 1
            continue
        if c in "[{":
            depth += 1
        elif c in "]}":
            depth = max(0, depth - 1)
        i += 1
    return depth, None


@functools.lru_cache(maxsize=32)
def key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Every table and key path in the text with the 1-based line it is defined on."""
    lines: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    depth, multiline = 0, None  # inside a value that spans lines: an array, or a multi-line string
    for number, raw in enumerate(text.splitlines(), start=1):
        if multiline is not None:
            end = raw.find(multiline)
            if end >= 0:
                depth, multiline = _value_state(raw, end + 3, depth)
            continue
        if depth:
            depth, multiline = _value_state(raw, 0, depth)
            continue
        i = _skip_spaces(raw, 0)
        if raw.startswith("[", i):
            key = _dotted(raw, i + (2 if raw.startswith("[[", i) else 1))
            if key is not None and raw.startswith("]", key[1]):
                table = key[0]
                lines.setdefault(table, number)
            continue
        key = _dotted(raw, i)
        if key is not None and raw.startswith("=", key[1]):
            lines.setdefault(table + key[0], number)
            depth, multiline = _value_state(raw, key[1] + 1, 0)
    return lines


def line_of(text: str, loc: tuple) -> int:
    """Line of the longest prefix of `loc` that the text defines (list indices are ignored)."""
    lines = key_lines(text)
    path = tuple(str(p) for p in loc if not isinstance(p, int))
    for end in range(len(path), 0, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return 1
