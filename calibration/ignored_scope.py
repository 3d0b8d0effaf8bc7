"""`[calibration.ignored_scope]` against the model: every entry must match a layer.

NNCF refuses an unmatched entry only once quantization runs, with a message about its graph; here
each entry is checked against the IR's own layer table as the spec is typed, located at its key,
with a did-you-mean. `strict = false` turns the errors into warnings (NNCF's lenient validation).
"""
from __future__ import annotations

import difflib
import re

from .layer_table import LayerEntry
from .problems import Problem
from .spec import Spec

RULE = "ignored-scope-unmatched"


def matched(spec: Spec, layers: list[LayerEntry]) -> set[str]:
    """Names of the layers the ignored scope keeps in floating point by name, type or pattern."""
    s = spec.calibration.ignored_scope
    names, types = set(s.names), set(s.types)
    patterns = [re.compile(p) for p in s.patterns]
    return {layer.name for layer in layers
            if layer.name in names or layer.type in types or any(p.match(layer.name) for p in patterns)}


def problems(spec: Spec, layers: list[LayerEntry]) -> list[Problem]:
    s = spec.calibration.ignored_scope
    if s.empty():
        return []
    names = [layer.name for layer in layers]
    known, types = set(names), sorted({layer.type for layer in layers})
    out = []

    def unmatched(key: str, what: str, value: str, choices) -> None:
        close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        out.append(spec.problem(f"{what} {value!r} matches no layer of the model{hint}",
                                "calibration", "ignored_scope", key, rule=RULE,
                                severity="error" if s.strict else "warning",
                                fix="use a name from the model (the editor completes them), or set strict = false"))

    for name in s.names:
        if name not in known:
            unmatched("names", "layer name", name, names)
    for type_ in s.types:
        if type_ not in types:
            unmatched("types", "layer type", type_, types)
    for pattern in s.patterns:
        if not any(re.match(pattern, n) for n in names):
            unmatched("patterns", "pattern", pattern, names)
    for graph in s.subgraphs:
        for name in graph.inputs + graph.outputs:
            if name not in known:
                unmatched("subgraphs", "subgraph end", name, names)
    return out
