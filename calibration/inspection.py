"""Model inspection from the IR's XML alone: no weights are loaded, so a whole zoo scans fast.

Reads with expat directly (not ElementTree) to keep source line numbers for diagnostics
and to skip building a tree we would only walk once.
"""
from __future__ import annotations

import os
import xml.parsers.expat
from dataclasses import asdict, dataclass, field
from pathlib import Path

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


@dataclass
class Layer:
    id: str
    name: str
    type: str
    line: int
    element_type: str | None = None
    offset: int | None = None
    size: int | None = None
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


class _Reader:
    """Collects layers, ports, edges and rt_info in a single expat pass."""

    def __init__(self) -> None:
        self.parser = xml.parsers.expat.ParserCreate()
        self.parser.StartElementHandler = self.start
        self.parser.EndElementHandler = self.end
        self.parser.CharacterDataHandler = self.chars
        self.stack: list[str] = []
        self.net: dict = {}
        self.net_line: int | None = None
        self.layers: list[Layer] = []
        self.ports: dict[tuple[str, str], dict] = {}  # (layer id, port id) -> {names, dims}
        self.edges: list[tuple[str, str, str, str]] = []
        self.rt: dict = {}
        self._layer: Layer | None = None
        self._port: dict | None = None
        self._dim: list[str] | None = None
        self._rt_path: list[str] = []

    def start(self, tag: str, attrs: dict) -> None:
        parent = self.stack[-1] if self.stack else None
        self.stack.append(tag)
        line = self.parser.CurrentLineNumber
        if tag == "net" and parent is None:
            self.net, self.net_line = attrs, line
        elif tag == "layer" and parent == "layers":
            self._layer = Layer(attrs.get("id", ""), attrs.get("name", ""), attrs.get("type", ""), line)
            self.layers.append(self._layer)
        elif tag == "data" and self._layer is not None and parent == "layer":
            self._layer.element_type = attrs.get("element_type")
            if "offset" in attrs and "size" in attrs:
                self._layer.offset, self._layer.size = int(attrs["offset"]), int(attrs["size"])
        elif tag == "port" and self._layer is not None and parent in ("input", "output"):
            self._port = {"names": attrs.get("names", ""), "dims": [], "kind": parent,
                          "precision": attrs.get("precision", "")}
            if parent == "output":
                self._layer.out_precisions.append(attrs.get("precision", ""))
            self.ports[(self._layer.id, attrs.get("id", ""), parent)] = self._port  # type: ignore[index]
        elif tag == "dim" and self._port is not None:
            self._dim = []
        elif tag == "edge" and parent == "edges":
            self.edges.append((attrs["from-layer"], attrs["from-port"], attrs["to-layer"], attrs["to-port"]))
        elif "rt_info" in self.stack[:-1] and self.stack[1:2] == ["rt_info"]:
            self._rt_path.append(tag)
            if "value" in attrs:
                self._set_rt(attrs["value"])

    def _set_rt(self, value: str) -> None:
        node = self.rt
        for key in self._rt_path[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                return
        node[self._rt_path[-1]] = value

    def end(self, tag: str) -> None:
        self.stack.pop()
        if tag == "layer" and self.stack and self.stack[-1] == "layers":
            self._layer = None
        elif tag == "port":
            self._port = None
        elif tag == "dim" and self._dim is not None and self._port is not None:
            text = "".join(self._dim).strip()
            self._port["dims"].append(int(text) if text.lstrip("-").isdigit() else -1)
            self._dim = None
        elif self._rt_path and "rt_info" in self.stack:
            self._rt_path.pop()

    def chars(self, data: str) -> None:
        if self._dim is not None:
            self._dim.append(data)


def _corrupt(path: str, message: str, line: int | None = None) -> CalibrationError:
    return CalibrationError(Problem(message, path=path, line=line, rule="corrupt-model",
                                    fix="re-export the model (e.g. openvino.save_model) and copy it again"))


def inspect_model(xml_path: str | os.PathLike) -> ModelInfo:
    """Reads `model.xml` (and only the size of `model.bin`) into a ModelInfo.

    Raises CalibrationError(corrupt-model) for a file that is not a readable IR XML.
    """
    path = str(xml_path)
    reader = _Reader()
    try:
        with open(path, "rb") as fh:
            reader.parser.ParseFile(fh)
    except xml.parsers.expat.ExpatError as exc:
        raise _corrupt(path, f"malformed XML: {xml.parsers.expat.errors.messages[exc.code]}", exc.lineno) from None
    except (OSError, ValueError) as exc:
        raise _corrupt(path, f"cannot read the model: {exc}") from None
    if not reader.net:
        raise _corrupt(path, "not an OpenVINO IR: no <net> root element", 1)
    if not reader.layers:
        raise _corrupt(path, "the IR has no <layers>", reader.net_line)
    return _summarise(path, reader)


def _summarise(path: str, r: _Reader) -> ModelInfo:
    version = r.net.get("version")
    ir_version = int(version) if version and version.isdigit() else None
    by_id = {layer.id: layer for layer in r.layers}
    # Result ports get their names from the producing port, found through the edges.
    producer = {(to_l, to_p): (fr_l, fr_p) for fr_l, fr_p, to_l, to_p in r.edges}

    inputs, outputs = [], []
    for layer in r.layers:
        if layer.type == "Parameter":
            port = r.ports.get((layer.id, "0", "output")) or {}
            name = (port.get("names") or layer.name).split(",")[0]
            inputs.append(TensorInfo(name, port.get("dims", []), layer.element_type or "", layer.line))
        elif layer.type == "Result":
            port = r.ports.get((layer.id, "0", "input")) or {}
            src = producer.get((layer.id, "0"))
            src_port = r.ports.get((src[0], src[1], "output")) if src else None
            names = (src_port or {}).get("names") or layer.name
            precision = port.get("precision", "").lower().replace("fp", "f")
            outputs.append(TensorInfo(names.split(",")[0], port.get("dims", []), precision, layer.line))

    consts = [layer for layer in r.layers if layer.type == "Const"]
    const_types = {layer.element_type for layer in consts}
    compute = [layer for layer in r.layers if layer.type in INT8_ABLE_TYPES]
    precision = _precision(inputs, compute, r.layers)
    fq = [layer for layer in r.layers if layer.type == "FakeQuantize"]
    low_bit = [layer for layer in consts if layer.element_type in LOW_BIT_WEIGHTS
               and _feeds(layer, r.edges, by_id, "Convert")]
    evidence, q_line = None, None
    if fq:
        evidence, q_line = f"{len(fq)} FakeQuantize layers", fq[0].line
    elif low_bit:
        evidence, q_line = f"{len(low_bit)} {low_bit[0].element_type} weight constants", low_bit[0].line

    bin_path = str(Path(path).with_suffix(".bin"))
    expected = max((layer.offset + layer.size for layer in consts if layer.offset is not None), default=0)
    try:
        bin_size: int | None = os.path.getsize(bin_path)
    except OSError:
        bin_size = None
    return ModelInfo(
        path=path, name=r.net.get("name", Path(path).stem), ir_version=ir_version, version_line=r.net_line,
        inputs=inputs, outputs=outputs, precision=precision,
        fp16_compressed_weights=precision == "FP32" and "f16" in const_types,
        int8_layers=[{"name": c.name, "type": c.type, "line": c.line} for c in compute],
        layer_count=len(r.layers), quantized=bool(evidence), quantized_evidence=evidence,
        quantized_line=q_line, derived=r.rt.get(MARK) if isinstance(r.rt.get(MARK), dict) else None,
        bin_path=bin_path, bin_expected_size=expected, bin_size=bin_size,
    )


def _feeds(layer: Layer, edges, by_id: dict, type_: str) -> bool:
    return any(fr == layer.id and by_id.get(to) is not None and by_id[to].type == type_
               for fr, _, to, _ in edges)


def _precision(inputs: list[TensorInfo], compute: list[Layer], layers: list[Layer]) -> str:
    """What the model computes in: its compute layers' output precision, else its inputs'."""
    for layer in compute or layers:
        for p in layer.out_precisions:
            if p.upper() in ("FP32", "FP16", "BF16", "FP64"):
                return p.upper()
    for t in inputs:
        if t.element_type in FLOAT_TYPES:
            return FLOAT_TYPES[t.element_type]
    return "unknown"
