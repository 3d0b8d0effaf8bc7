"""Is a model that needs conversion whole? Read from its bytes alone: no OpenVINO, no framework.

What the checker, the editor and the drop folder say about an `.onnx`, `.tflite`, `.pdmodel` (with its
`.pdiparams`) or SavedModel folder before any conversion: a truncated or foreign file is its format's
own rule with a fix (`broken-onnx`, `broken-tflite`, `broken-paddle`, `broken-savedmodel`), never
`malformed XML`; a format OpenVINO does not read (PaddlePaddle 3's PIR `.json`) is `unsupported-format`.

Each walk follows the file's own framing (protobuf fields, flatbuffer offsets, Paddle's tensor records,
the SavedModel's SSTable index) and only checks that every length and offset lies inside the file, so
it costs a pass over the headers, not a parse of the model.
"""
from __future__ import annotations

import mmap
import os
import struct
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .guarded import open_regular
from .problems import Problem

RULES = {"ONNX": "broken-onnx", "TensorFlow Lite": "broken-tflite", "PaddlePaddle": "broken-paddle",
         "TensorFlow SavedModel": "broken-savedmodel"}
FIXES = {"ONNX": "export the model again (or copy the whole file again)",
         "TensorFlow Lite": "convert the model again with tf.lite.TFLiteConverter (or copy the whole file again)",
         "PaddlePaddle": "save it again with paddle.jit.save and copy the .pdmodel with its .pdiparams",
         "TensorFlow SavedModel": "save it again with tf.saved_model.save and copy the whole folder"}
UNSUPPORTED = "unsupported-format"
PADDLE_PARAMS = ".pdiparams"
SAVED_MODEL = "saved_model.pb"
SSTABLE_MAGIC = 0xdb4775248b80fb57
# Paddle's VarType codes -> bytes per element (bool, int16, int32, int64, fp16, fp32, fp64, uint8, int8, bf16)
PADDLE_SIZES = {0: 1, 1: 2, 2: 4, 3: 8, 4: 2, 5: 4, 6: 8, 20: 1, 21: 1, 22: 2}


class Broken(Exception):
    """Where the framing stops making sense: str() is the reason."""


def a_model(kind: str) -> str:
    """"ONNX model", but "TensorFlow SavedModel" (a SavedModel is a model already)."""
    return kind if kind.endswith("SavedModel") else f"{kind} model"


@contextmanager
def mapped(path: Path) -> Iterator[bytes]:
    with open_regular(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            raise Broken("the file is empty")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            yield data


def varint(data, pos: int, end: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= end or shift > 63:
            raise Broken(f"a number runs past byte {end}")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, pos


def protobuf_fields(data, pos: int = 0, end: int | None = None) -> Iterator[tuple[int, int, int, int]]:
    """(field, wire type, value or start, stop) of each field in data[pos:end]; Broken when a length
    points past the end (truncated) or a tag is impossible (not protobuf)."""
    end = len(data) if end is None else end
    while pos < end:
        tag, pos = varint(data, pos, end)
        field, wire = tag >> 3, tag & 7
        if field == 0 or wire not in (0, 1, 2, 5):
            raise Broken(f"byte {pos} is not a protobuf field (tag {tag})")
        if wire == 0:
            value, pos = varint(data, pos, end)
            yield field, wire, value, pos
            continue
        if wire == 2:
            length, pos = varint(data, pos, end)
        else:
            length = 8 if wire == 1 else 4
        if pos + length > end:
            raise Broken(f"a field of {length:,} bytes at byte {pos:,} runs past the end ({end:,} bytes): "
                         "the file is cut short")
        yield field, wire, pos, pos + length
        pos += length


def needs_fields(data, wanted: dict[int, str]) -> None:
    seen = {field for field, *_ in protobuf_fields(data)}
    for field, what in wanted.items():
        if field not in seen:
            raise Broken(f"it has no {what}")


# The parts of TFLite's schema that hold offsets: per table, field index -> what it points to ("vec", element
# bytes), ("tables", table) or ("str",). The converter writes the model back to front, so its names, shapes and
# operator codes lie at the end of the file: a file cut by a few bytes is caught only by walking them.
_TFLITE = {
    "Model": {1: ("tables", "OperatorCode"), 2: ("tables", "SubGraph"), 3: ("str",), 4: ("tables", "Buffer"),
              5: ("vec", 4), 6: ("tables", "Metadata"), 7: ("tables", "SignatureDef")},
    "OperatorCode": {1: ("str",)},
    "SubGraph": {0: ("tables", "Tensor"), 1: ("vec", 4), 2: ("vec", 4), 3: ("tables", "Operator"), 4: ("str",)},
    "Tensor": {0: ("vec", 4), 3: ("str",), 4: ("table", "Quantization"), 7: ("vec", 4)},
    "Quantization": {0: ("vec", 4), 1: ("vec", 4), 2: ("vec", 4), 3: ("vec", 8)},
    "Operator": {1: ("vec", 4), 2: ("vec", 4), 4: ("table", "Options"), 5: ("vec", 1), 8: ("vec", 4)},
    "Options": {},  # a union of per-operator option tables: only their own extent is checked
    "Buffer": {0: ("vec", 1)},
    "Metadata": {0: ("str",)},
    "SignatureDef": {0: ("tables", "TensorMap"), 1: ("tables", "TensorMap"), 2: ("str",)},
    "TensorMap": {0: ("str",)},
}


def check_tflite(data) -> None:
    if data[4:8] != b"TFL3":
        raise Broken("it does not carry the TensorFlow Lite mark (TFL3)")
    size = len(data)
    cut = f"the file is cut short ({size:,} bytes)"

    def u32(pos: int) -> int:
        if pos < 0 or pos + 4 > size:
            raise Broken(f"an offset points past the end: {cut}")
        return struct.unpack_from("<I", data, pos)[0]

    def table(pos: int) -> int:
        """The vtable of the table at `pos`, once the table's own bytes are known to be inside the file."""
        if pos < 0 or pos + 4 > size:
            raise Broken(f"a table lies past the end: {cut}")
        vtable = pos - struct.unpack_from("<i", data, pos)[0]
        if vtable < 0 or vtable + 4 > size:
            raise Broken(f"a table's layout lies outside the file: {cut}")
        vsize, inline = struct.unpack_from("<HH", data, vtable)
        if vtable + vsize > size or pos + inline > size:
            raise Broken(f"a table runs past the end: {cut}")
        return vtable

    def field(pos: int, index: int) -> int | None:
        vtable = table(pos)
        vsize = struct.unpack_from("<H", data, vtable)[0]
        slot = 4 + 2 * index
        off = struct.unpack_from("<H", data, vtable + slot)[0] if slot + 2 <= vsize else 0
        return pos + off if off else None

    def vector(pos: int, item: int) -> tuple[int, int]:
        start = pos + u32(pos)
        count = u32(start)
        if start + 4 + count * item > size:
            raise Broken(f"a list of {count:,} items runs past the end: {cut}")
        return start + 4, count

    def walk(pos: int, kind: str) -> None:
        for index, (what, *arg) in _TFLITE[kind].items():
            at = field(pos, index)
            if at is None:
                continue
            if what == "str":
                start, length = vector(at, 1)
                if start + length + 1 > size:  # and its closing zero
                    raise Broken(f"a name runs past the end: {cut}")
            elif what == "vec":
                vector(at, arg[0])
            elif what == "table":
                walk(at + u32(at), arg[0])
            else:
                first, count = vector(at, 4)
                for i in range(count):
                    walk(first + 4 * i + u32(first + 4 * i), arg[0])

    model = u32(0)
    if field(model, 2) is None:
        raise Broken("it has no subgraph")
    walk(model, "Model")
    if (at := field(model, 4)) is None:  # buffers: weights inside the flatbuffer, or after it at an offset
        return
    first, count = vector(at, 4)
    for i in range(count):
        buf = first + 4 * i + u32(first + 4 * i)
        if (off_at := field(buf, 1)) is not None and (size_at := field(buf, 2)) is not None:
            offset, length = (struct.unpack_from("<Q", data, p)[0] for p in (off_at, size_at))
            if offset > 1 and offset + length > size:
                raise Broken(f"weights buffer {i} ends at byte {offset + length:,}, past the end ({size:,} bytes)")


def check_pdiparams(data) -> None:
    """Paddle's combined parameters: per tensor a version, its LoD, a TensorDesc and the raw data."""
    pos, size, n = 0, len(data), 0
    while pos < size:
        try:
            pos += 4
            (lod_levels,) = struct.unpack_from("<Q", data, pos)
            pos += 8
            for _ in range(lod_levels):
                pos += 8 + struct.unpack_from("<Q", data, pos)[0]
            pos += 4
            (desc,) = struct.unpack_from("<i", data, pos)
            pos += 4
        except struct.error:
            raise Broken(f"tensor {n} stops at byte {size:,}: the file is cut short") from None
        if desc < 0 or pos + desc > size:
            raise Broken(f"tensor {n}'s description runs past the end ({size:,} bytes): the file is cut short")
        dtype, count = None, 1
        for field, wire, value, stop in protobuf_fields(data, pos, pos + desc):
            if field == 1 and wire == 0:
                dtype = value
            elif field == 2 and wire == 0:
                count *= value
            elif field == 2 and wire == 2:  # packed dims
                p = value
                while p < stop:
                    dim, p = varint(data, p, stop)
                    count *= dim
        if dtype not in PADDLE_SIZES:
            raise Broken(f"tensor {n} has no known element type: not a .pdiparams file")
        pos += desc + count * PADDLE_SIZES[dtype]
        if pos > size:
            raise Broken(f"tensor {n}'s values run past the end ({size:,} bytes): the file is cut short")
        n += 1


def sstable_entries(data) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) of an uncompressed LevelDB-format table (a SavedModel's variables.index)."""
    if len(data) < 48 or struct.unpack_from("<Q", data, len(data) - 8)[0] != SSTABLE_MAGIC:
        raise Broken("variables/variables.index does not end with its table mark: it is cut short")
    pos = len(data) - 48  # the footer: the metaindex's handle, then the index's (offset, size varints)
    for _ in range(2):
        _, pos = varint(data, pos, len(data))
    offset, pos = varint(data, pos, len(data))
    length, pos = varint(data, pos, len(data))
    for _, handle in block_entries(data, offset, length):
        offset, p = varint(handle, 0, len(handle))
        yield from block_entries(data, offset, varint(handle, p, len(handle))[0])


def block_entries(data, offset: int, length: int) -> Iterator[tuple[bytes, bytes]]:
    if offset + length + 5 > len(data) or length < 4:
        raise Broken("variables/variables.index points past its end: it is cut short")
    if data[offset + length] != 0:
        raise Broken("variables/variables.index is compressed, which TensorFlow never writes")
    restarts = struct.unpack_from("<I", data, offset + length - 4)[0]
    pos, end, key = offset, offset + length - 4 - 4 * restarts, b""
    while pos < end:
        shared, pos = varint(data, pos, end)
        fresh, pos = varint(data, pos, end)
        size, pos = varint(data, pos, end)
        key = key[:shared] + bytes(data[pos:pos + fresh])
        pos += fresh
        yield key, bytes(data[pos:pos + size])
        pos += size


def check_savedmodel(folder: Path) -> None:
    """saved_model.pb is a whole protobuf with a MetaGraph; every variable lies inside its data shard."""
    with mapped(folder / SAVED_MODEL) as data:
        needs_fields(data, {2: "MetaGraph"})
    index = folder / "variables" / "variables.index"
    if not index.is_file():
        return  # a model without variables has none
    with mapped(index) as data:
        ends: dict[int, int] = {}
        shards = 1
        for key, value in sstable_entries(data):
            fields = {f: v for f, w, v, _ in protobuf_fields(value) if w == 0}
            if key == b"":
                shards = fields.get(1, 1)  # BundleHeaderProto.num_shards
                continue
            shard = fields.get(3, 0)
            ends[shard] = max(ends.get(shard, 0), fields.get(4, 0) + fields.get(5, 0))
    for shard in range(shards):
        f = folder / "variables" / f"variables.data-{shard:05d}-of-{shards:05d}"
        if not f.is_file():
            raise Broken(f"{f.relative_to(folder)} is missing")
        if f.stat().st_size < ends.get(shard, 0):
            raise Broken(f"{f.relative_to(folder)} holds {f.stat().st_size:,} bytes, its variables need "
                         f"{ends[shard]:,}: it is cut short")


def missing_member(path: Path) -> str | None:
    """A file the model needs that is not there (yet): a `.pdmodel`'s `.pdiparams`, a SavedModel's
    variable index or one of its data shards (None: all there, or nothing else is needed)."""
    if path.suffix.lower() == ".pdmodel":
        params = path.with_suffix(PADDLE_PARAMS)
        return None if params.is_file() else params.name
    if not path.is_dir():
        return None
    variables = path / "variables"
    if not (variables / "variables.index").is_file():
        return "variables/variables.index"
    counts = [f.name.rsplit("-", 1)[1] for f in variables.glob("variables.data-*-of-*")]
    total = max((int(c) for c in counts if c.isdigit()), default=1)
    for shard in range(total):
        if not (variables / f"variables.data-{shard:05d}-of-{total:05d}").is_file():
            return f"variables/variables.data-{shard:05d}-of-{total:05d}"
    return None


def unsupported(path: Path) -> Problem | None:
    """A model in a format OpenVINO cannot convert, said plainly (None: not one we know)."""
    if path.suffix.lower() == ".json" and path.with_suffix(PADDLE_PARAMS).is_file():
        return Problem("a PaddlePaddle 3 PIR program (.json): OpenVINO's Paddle frontend reads the .pdmodel "
                       "program format only", path=str(path), rule=UNSUPPORTED,
                       fix="save it again with FLAGS_enable_pir_api=0 set before paddle is imported (paddle.jit.save "
                           "then writes .pdmodel + .pdiparams) and point `model` at the .pdmodel")
    return None


def source_problems(path: Path, kind: str) -> list[Problem]:
    """The problems of a model of framework `kind` (conversion.source_kind) that make it unconvertible."""
    path = Path(path)
    try:
        if kind == "TensorFlow SavedModel":
            check_savedmodel(path)
        else:
            with mapped(path) as data:
                if kind == "TensorFlow Lite":
                    check_tflite(data)
                elif kind == "ONNX":
                    needs_fields(data, {7: "graph"})
                elif kind == "PaddlePaddle":
                    needs_fields(data, {1: "program block"})
            if kind == "PaddlePaddle":
                params = path.with_suffix(PADDLE_PARAMS)
                if not params.is_file():
                    raise Broken(f"its weights, {params.name}, are not beside it")
                with mapped(params) as data:
                    check_pdiparams(data)
    except (Broken, OSError) as exc:
        return [Problem(f"{'not a whole' if isinstance(exc, Broken) else 'cannot read this'} {a_model(kind)}: {exc}",
                        path=str(path), rule=RULES[kind], fix=FIXES[kind])]
    return []
