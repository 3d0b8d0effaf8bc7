"""Model inspection from the IR's XML alone: no weights are loaded, so a whole zoo scans fast.

Reads with expat directly (not ElementTree) to keep source line numbers for diagnostics
and to skip building a tree we would only walk once.
"""
from __future__ import annotations

import html
import os
import re
import xml.parsers.expat
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .guarded import UnreadableFile, read_bytes
from .problems import CalibrationError, Problem

# Layers that OpenVINO's CPU plugin (and NNCF) can execute in INT8.
INT8_ABLE_TYPES = frozenset({
    "Convolution", "GroupConvolution", "ConvolutionBackpropData",
    "GroupConvolutionBackpropData", "MatMul",
})
FLOAT_TYPES = {"f32": "FP32", "f16": "FP16", "bf16": "BF16", "f64": "FP64"}
LOW_BIT_WEIGHTS = frozenset({"i8", "u8", "i4", "u4", "nf4", "f8e4m3", "f8e5m2"})
MARK = "int8wb"  # rt_info section that marks a model as one of our outputs


@dataclass
class TensorInfo:
    name: str
    shape: list[int]  # -1 for a dynamic dimension
    element_type: str
    line: int | None = None


def pretty_shape(shape: list[int]) -> str:
    """[?,3,640,640]: a shape as the IR means it, -1 shown as ?."""
    return "[" + ",".join("?" if d < 0 else str(d) for d in shape) + "]"


@dataclass
class Layer:
    id: str
    name: str
    type: str
    at: int                      # byte offset in the XML; the line is computed only when needed
    element_type: str | None = None
    out_precisions: list[str] = field(default_factory=list)


@dataclass
class ModelInfo:
    path: str
    name: str
    ir_version: int | None
    version_line: int | None
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    precision: str               # FP32 | FP16 | BF16 | unknown: what the model computes in
    fp16_compressed_weights: bool  # FP32 model whose weights are stored as FP16
    int8_layers: list[dict]      # [{name, type, line}] that can run INT8
    layer_count: int
    quantized: bool
    quantized_evidence: str | None
    quantized_line: int | None
    derived: dict | None         # our own rt_info mark, when the model is our output
    bin_path: str
    bin_expected_size: int
    bin_size: int | None         # None when the .bin is missing

    @property
    def weights_complete(self) -> bool:
        return self.bin_size is not None and self.bin_size >= self.bin_expected_size

    @property
    def is_fp32(self) -> bool:
        return self.precision == "FP32"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["weights_complete"] = self.weights_complete
        return d


_ATTR = re.compile(rb'([\w:.-]+)\s*=\s*"([^"]*)"')
_DATA = re.compile(rb"<data\s([^>]*?)/?>")
_PORT = re.compile(rb"<port\s([^>]*?)(?:/>|>(.*?)</port>)", re.S)
_DIM = re.compile(rb"<dim>([^<]*)</dim>")
_EDGE = re.compile(rb"<edge\s([^>]*?)/?>")
# What OpenVINO's serializer writes; anything else falls back to the generic attribute reader.
_LAYER_HEAD = re.compile(rb'<layer\s+id="([^"]*)"\s+name="([^"]*)"\s+type="([^"]*)"')
_CONST_DATA = re.compile(rb'<data\s+element_type="([^"]*)"\s+shape="[^"]*"\s+offset="(\d+)"\s+size="(\d+)"')
_KEPT_TYPES = INT8_ABLE_TYPES | {"Parameter", "Result", "FakeQuantize", "Convert"}
_EDGE_ATTRS = re.compile(rb'<edge\s+from-layer="([^"]*)"\s+from-port="([^"]*)"\s+to-layer="([^"]*)"\s+to-port="([^"]*)"')


def _attrs(raw: bytes) -> dict[str, str]:
    return {k.decode(): html.unescape(v.decode("utf-8", "replace")) for k, v in _ATTR.findall(raw)}


class _Reader:
    """Extracts layers, ports, edges and rt_info with regular expressions.

    expat (without callbacks, so at C speed) first proves the file well-formed; the
    extraction then skips the thousands of <dim> elements we do not need. This is ~3x
    faster than a callback parser, which matters when a daemon scans a model zoo.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self._cursor = (0, 1)
        self._edge_index: tuple[dict, dict] | None = None
        net = re.search(rb"<net\s([^>]*)>", data)
        self.net = _attrs(net.group(1)) if net else {}
        self.net_line = self.line_at(net.start()) if net else None
        # Only the layers the rules look at become objects; a zoo scan meets thousands of others.
        self.layers: list[Layer] = []
        self.types: dict[str, str] = {}              # every layer id -> type
        self.spans: dict[str, tuple[int, int]] = {}  # layer id -> (start, end) of its element in data
        self.const_types: set[str] = set()
        self.bin_expected = 0
        layers_end = data.rfind(b"</layers>")
        starts = [m.start() for m in re.finditer(rb"<layer[\s>]", data)]
        self.layer_count = len(starts)
        heads = list(_LAYER_HEAD.finditer(data))
        if len(heads) != len(starts):  # not the serializer's attribute order: read each head fully
            heads = [None] * len(starts)
        for i, start in enumerate(starts):
            end = starts[i + 1] if i + 1 < len(starts) else (layers_end if layers_end > start else len(data))
            head = heads[i]
            if head is not None:
                lid, type_ = head.group(1).decode("utf-8", "replace"), head.group(3).decode("utf-8", "replace")
            else:
                a = _attrs(data[start:data.find(b">", start, end)])
                lid, type_ = a.get("id", ""), a.get("type", "")
            self.types[lid] = type_
            if type_ == "Const":
                element_type, offset, size = self._const(start, end)
                self.const_types.add(element_type)
                if offset is not None:
                    self.bin_expected = max(self.bin_expected, offset + size)
                if element_type not in LOW_BIT_WEIGHTS:
                    continue
            elif type_ not in _KEPT_TYPES:
                continue
            name = head.group(2).decode("utf-8", "replace") if head is not None else a.get("name", "")
            layer = Layer(lid, html.unescape(name), type_, start)
            self.spans[lid] = (start, end)
            if type_ in ("Const", "Parameter"):
                layer.element_type = self._const(start, end)[0]
            elif type_ in INT8_ABLE_TYPES:
                out = data.find(b"<output>", start, end)
                if out >= 0:
                    layer.out_precisions = [_attrs(p.group(1)).get("precision", "")
                                            for p in _PORT.finditer(data, out, end)]
            self.layers.append(layer)
        edges_at = data.rfind(b"<edges>")
        self.edges_region = (edges_at, data.find(b"</edges>", edges_at)) if edges_at >= 0 else (0, 0)
        self.rt = self._rt_info(data, max(edges_at, data.rfind(b"</layers>")))

    def _const(self, start: int, end: int) -> tuple[str, int | None, int | None]:
        """(element_type, offset, size) of a Const or Parameter's <data>."""
        fast = _CONST_DATA.search(self.data, start, end)
        if fast:
            return fast.group(1).decode(), int(fast.group(2)), int(fast.group(3))
        d = _DATA.search(self.data, start, end)
        da = _attrs(d.group(1)) if d else {}
        if "offset" in da and "size" in da:
            return da.get("element_type", ""), int(da["offset"]), int(da["size"])
        return da.get("element_type", ""), None, None

    def edges(self, *, to: str | None = None, source: str | None = None) -> list[tuple[str, str, str, str]]:
        """(from-layer, from-port, to-layer, to-port) edges into `to` or out of `source`.

        The edges are read once, on the first question (a scan that never asks reads none), and
        indexed both ways: a rule that asks about every layer stays linear in the file's size."""
        if self._edge_index is None:
            self._edge_index = self._index_edges()
        into, out_of = self._edge_index
        return list(into.get(to, ()) if to is not None else out_of.get(source or "", ()))

    def _index_edges(self) -> tuple[dict, dict]:
        lo, hi = self.edges_region
        found: list[tuple[str, ...]] = []
        if hi > lo:
            fast = _EDGE_ATTRS.findall(self.data, lo, hi)
            if len(fast) == self.data.count(b"<edge ", lo, hi):
                found = [tuple(html.unescape(g.decode()) for g in m) for m in fast]
            else:  # unusual attribute order: read every edge's attributes
                for e in _EDGE.finditer(self.data, lo, hi):
                    a = _attrs(e.group(1))
                    found.append((a.get("from-layer"), a.get("from-port"), a.get("to-layer"), a.get("to-port")))
        into: dict[str, list] = {}
        out_of: dict[str, list] = {}
        for edge in found:
            into.setdefault(edge[2], []).append(edge)
            out_of.setdefault(edge[0], []).append(edge)
        return into, out_of

    def line_at(self, offset: int) -> int:
        # Lines are asked for in file order, so count on from the previous answer.
        last_offset, last_line = self._cursor
        if offset < last_offset:
            last_offset, last_line = 0, 1
        line = last_line + self.data.count(b"\n", last_offset, offset)
        self._cursor = (offset, line)
        return line

    def line(self, layer: Layer) -> int:
        return self.line_at(layer.at)

    def port(self, layer_id: str, kind: str, port_id: str | None = None) -> dict:
        """{names, precision, dims} of a layer's input/output port (the first when no id)."""
        lo, hi = self.spans.get(layer_id, (0, 0))
        start = self.data.find(b"<" + kind.encode() + b">", lo, hi)
        if start < 0:
            return {}
        end = self.data.find(b"</" + kind.encode() + b">", start, hi)
        for p in _PORT.finditer(self.data, start, end if end >= 0 else hi):
            a = _attrs(p.group(1))
            if port_id is None or a.get("id") == port_id:
                dims = [d.strip() for d in _DIM.findall(p.group(2) or b"")]
                a["dims"] = [int(d) if d.lstrip(b"-").isdigit() else -1 for d in dims]
                return a
        return {}

    @staticmethod
    def _rt_info(data: bytes, after: int) -> dict:
        start = data.find(b"<rt_info>", after) if after >= 0 else -1
        if start < 0:
            return {}
        block = re.search(rb"<" + MARK.encode() + rb">(.*?)</" + MARK.encode() + rb">", data[start:], re.S)
        if not block:
            return {}
        return {MARK: {k.decode(): html.unescape(v.decode("utf-8", "replace"))
                       for k, v in re.findall(rb'<([\w.-]+)\s+value="([^"]*)"', block.group(1))}}


def _corrupt(path: str, message: str, line: int | None = None) -> CalibrationError:
    return CalibrationError(Problem(message, path=path, line=line, rule="corrupt-model",
                                    fix="re-export the model (e.g. openvino.save_model) and copy it again"))


def inspect_model(xml_path: str | os.PathLike) -> ModelInfo:
    """Reads `model.xml` (and only the size of `model.bin`) into a ModelInfo.

    Raises CalibrationError(corrupt-model) for a file that is not a readable IR XML.
    """
    path = str(xml_path)
    try:
        data = read_bytes(path)
    except UnreadableFile as exc:
        raise CalibrationError(Problem(f"cannot read the model: {exc}", path=path, rule="corrupt-model",
                                       fix="point at a regular IR .xml file")) from None
    except OSError as exc:
        raise _corrupt(path, f"cannot read the model: {exc.strerror or exc}") from None
    try:
        xml.parsers.expat.ParserCreate().Parse(data, True)
    except xml.parsers.expat.ExpatError as exc:
        raise _corrupt(path, f"malformed XML: {xml.parsers.expat.errors.messages[exc.code]}", exc.lineno) from None
    except (ValueError, LookupError) as exc:  # LookupError: an encoding Python does not know
        raise _corrupt(path, f"cannot read the model: {exc}") from None
    try:
        reader = _Reader(data)
        if not reader.net:
            raise _corrupt(path, "not an OpenVINO IR: no <net> root element", 1)
        if not reader.layers:
            raise _corrupt(path, "the IR has no <layers>", reader.net_line)
        return _summarise(path, reader)
    except (KeyError, ValueError, IndexError) as exc:  # well-formed XML that is not a sane IR
        raise _corrupt(path, f"unexpected IR structure ({type(exc).__name__}: {exc})", 1) from None


def _summarise(path: str, r: _Reader) -> ModelInfo:
    version = r.net.get("version")
    ir_version = int(version) if version and version.isdigit() else None

    inputs, outputs = [], []
    for layer in r.layers:
        if layer.type == "Parameter":
            port = r.port(layer.id, "output")
            name = (port.get("names") or layer.name).split(",")[0]
            inputs.append(TensorInfo(name, port.get("dims", []), layer.element_type or "", r.line(layer)))
        elif layer.type == "Result":
            port = r.port(layer.id, "input")
            # A Result's name is its producer's port name, found through the edges.
            src = next(((e[0], e[1]) for e in r.edges(to=layer.id) if e[3] == port.get("id", "0")), None)
            names = (r.port(src[0], "output", src[1]).get("names") if src else None) or layer.name
            precision = port.get("precision", "").lower().replace("fp", "f")
            outputs.append(TensorInfo(names.split(",")[0], port.get("dims", []), precision, r.line(layer)))

    const_types = r.const_types
    compute = [layer for layer in r.layers if layer.type in INT8_ABLE_TYPES]
    precision = _precision(inputs, compute)
    fq = [layer for layer in r.layers if layer.type == "FakeQuantize"]
    low_bit = [layer for layer in r.layers if layer.type == "Const" and _feeds(layer, r, "Convert")]
    evidence, q_line = None, None
    if fq:
        evidence, q_line = f"{len(fq)} FakeQuantize layers", r.line(fq[0])
    elif low_bit:
        evidence, q_line = f"{len(low_bit)} {low_bit[0].element_type} weight constants", r.line(low_bit[0])

    bin_path = str(Path(path).with_suffix(".bin"))
    expected = r.bin_expected
    try:
        bin_size: int | None = os.path.getsize(bin_path)
    except OSError:
        bin_size = None
    return ModelInfo(
        path=path, name=r.net.get("name", Path(path).stem), ir_version=ir_version, version_line=r.net_line,
        inputs=inputs, outputs=outputs, precision=precision,
        fp16_compressed_weights=precision == "FP32" and "f16" in const_types,
        int8_layers=[{"name": c.name, "type": c.type, "line": r.line(c)} for c in compute],
        layer_count=r.layer_count, quantized=bool(evidence), quantized_evidence=evidence,
        quantized_line=q_line, derived=r.rt.get(MARK) if isinstance(r.rt.get(MARK), dict) else None,
        bin_path=bin_path, bin_expected_size=expected, bin_size=bin_size,
    )


def _feeds(layer: Layer, r: _Reader, type_: str) -> bool:
    return any(r.types.get(to) == type_ for _, _, to, _ in r.edges(source=layer.id))


def _precision(inputs: list[TensorInfo], compute: list[Layer]) -> str:
    """What the model computes in: its compute layers' output precision, else its inputs'."""
    for layer in compute:
        for p in layer.out_precisions:
            if p.upper() in ("FP32", "FP16", "BF16", "FP64"):
                return p.upper()
    for t in inputs:
        if t.element_type in FLOAT_TYPES:
            return FLOAT_TYPES[t.element_type]
    return "unknown"
