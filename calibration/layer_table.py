"""Every layer of an IR by name and type, with its XML line: what a spec may name in `ignored_scope`.

The checker validates names against it, the editor completes and explains them. Read with the same
serializer-shaped regular expression as the inspection, without building the graph.
"""
from __future__ import annotations

import html
import os
import re
from dataclasses import dataclass

from .guarded import read_bytes

_HEAD = re.compile(rb'<layer\s[^>]*?>')
_ATTR = re.compile(rb'(id|name|type)="([^"]*)"')
_PORTS = re.compile(rb"<(input|output)>(.*?)</\1>", re.S)
_DIMS = re.compile(rb"<port\s[^>]*>(.*?)</port>", re.S)
_DIM = re.compile(rb"<dim>([^<]*)</dim>")


@dataclass(frozen=True)
class LayerEntry:
    name: str
    type: str
    line: int
    outputs: tuple[str, ...] = ()  # output shapes, e.g. "[1,16,8,8]"


def layer_table(xml_path: str | os.PathLike) -> list[LayerEntry]:
    """The layers of the IR at `xml_path` in file order (OSError when it cannot be read)."""
    data = read_bytes(str(xml_path))
    heads = list(_HEAD.finditer(data))
    out, line, pos = [], 1, 0
    for i, head in enumerate(heads):
        line += data.count(b"\n", pos, head.start())
        pos = head.start()
        attrs = {k.decode(): html.unescape(v.decode("utf-8", "replace")) for k, v in _ATTR.findall(head.group(0))}
        end = heads[i + 1].start() if i + 1 < len(heads) else len(data)
        body = data[head.end():end]
        shapes = ()
        for kind, ports in _PORTS.findall(body):
            if kind == b"output":
                shapes = tuple("[" + ",".join(d.decode() for d in _DIM.findall(p)) + "]" for p in _DIMS.findall(ports))
        out.append(LayerEntry(attrs.get("name", ""), attrs.get("type", ""), line, shapes))
    return out
