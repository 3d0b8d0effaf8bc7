"""An IR model on disk: the `.xml` with its `.bin` beside it, seen as files that may still be arriving.

One answer to "has this pair finished arriving?" for every front end that finds models in folders
(the drop folder, the language server): copies in progress, the `.bin` before the `.xml` or the
reverse, renames and whole folders moved in all end up here.

- `sniff`: is it an IR, from its head alone (None: too short to tell yet);
- `finished`: the XML closes `</net>`, so it is whole, whatever else is wrong with it;
- `arrival`: complete, still arriving, broken for good, or not an IR at all;
- `signature`: sizes and mtimes of the pair (changes while a copy is in progress);
- `Settle`: a signature unchanged for N seconds;
- `content_hash`: sha256 of the pair's bytes (the identity of a model, whatever its name);
- `walk`: the model files below a folder;
- `files_of`: the files a model is made of (an IR: the pair; a `.pdmodel`: it and its `.pdiparams`;
  a SavedModel: every file of its folder; an `.onnx` or `.tflite`: the file alone).

Reads files only: no OpenVINO (inspection is expat over the XML).
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Hashable, Iterable, Iterator

from .conversion import source_kind
from .guarded import UnreadableFile, open_regular, read_bytes
from .inspection import inspect_model
from .problems import CalibrationError
from .source_check import PADDLE_PARAMS, SAVED_MODEL, missing_member

HEAD = 1024          # bytes read to tell an IR from other XML
TAIL = 64            # bytes read to find the closing tag
STILL_WRITING = "the .bin is missing or still being written"
# What a folder of models may hold: IR pairs, ONNX, TFLite and Paddle files, SavedModel folders (found
# by their saved_model.pb, taken as the folder).
MODEL_ENDINGS = (".xml", ".onnx", ".tflite", ".pdmodel", SAVED_MODEL)


def sniff(path: str | os.PathLike) -> bool | None:
    """True when the head of the file names a `<net>`, False when it is some other file, None when
    it is too short (or unreadable) to tell: a copy that has only just begun."""
    try:
        head = read_bytes(path, head=HEAD)
    except UnreadableFile:
        return False  # a FIFO or a folder named *.xml never becomes a model
    except OSError:
        return None
    if b"<net" in head:
        return True
    return False if len(head) >= HEAD or (head.strip() and not head.lstrip().startswith(b"<")) else None


def finished(xml: str | os.PathLike) -> bool:
    """The XML ends with the IR's closing tag: whatever is wrong with it, it is not still arriving."""
    try:
        with open_regular(xml) as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - TAIL))
            return fh.read().rstrip().endswith(b"</net>")
    except OSError:
        return False


@dataclass(frozen=True)
class Arrival:
    """Where a pair stands. `state`: "complete" (the XML parses and the `.bin` holds every byte its
    Const layers point at), "arriving" (not yet: `why`), "broken" (the XML is whole yet unreadable:
    no amount of waiting mends it) or "not-ir" (some other XML)."""
    state: str
    why: str = ""

    @property
    def complete(self) -> bool:
        return self.state == "complete"


def arrival(xml: str | os.PathLike) -> Arrival:
    if source_kind(Path(xml)):
        # Protobuf and flatbuffers have no closing mark to wait for: a model that needs conversion has
        # arrived once every file it is made of is there and settled, and one that does not convert is
        # broken (the conversion says why).
        missing = missing_member(Path(xml))
        return Arrival("arriving", f"{missing} is not there yet") if missing else Arrival("complete")
    ir = sniff(xml)
    if ir is False:
        return Arrival("not-ir", "not an OpenVINO IR")
    if ir is None:
        return Arrival("arriving", STILL_WRITING)
    try:
        info = inspect_model(xml)
    except CalibrationError as exc:
        why = "; ".join(p.message for p in exc.problems)
        broken = finished(xml) and any(p.rule == "corrupt-model" for p in exc.problems)
        return Arrival("broken" if broken else "arriving", why)
    return Arrival("complete") if info.weights_complete else Arrival("arriving", STILL_WRITING)


def signature(path: str | os.PathLike) -> tuple | None:
    """(size, mtime_ns) of the file, followed by its `.bin`'s for an `.xml` (None, None while the
    `.bin` is missing); None when the file itself is missing."""
    path = Path(path)
    out: list = []
    if path.is_dir():  # a SavedModel: a file added, grown or renamed inside changes it
        return tuple(x for f in files_of(path) for x in (f.relative_to(path).as_posix(), *stamp(f))) or None
    for p in files_of(path):
        try:
            st = p.stat()
        except OSError:
            if p == path:
                return None
            out += [None, None]
            continue
        out += [st.st_size, st.st_mtime_ns]
    return tuple(out)


class Settle:
    """A file has settled once its signature stayed the same for `seconds`: a copy in progress keeps
    changing it. `observe` remembers, per key, the signature and when it was first seen; a caller
    that keeps that moment itself (the drop folder, in its database) asks `left(since)`."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.seconds = seconds
        self.clock = clock
        self._seen: dict[Hashable, tuple] = {}

    def left(self, since: float, now: float | None = None) -> float:
        """Seconds still to wait for a signature first seen at `since` (0.0: settled)."""
        now = self.clock() if now is None else now
        return max(0.0, self.seconds - (now - since))

    def observe(self, key: Hashable, sig) -> float:
        """Seconds until `key` is settled at `sig` (0.0: it is); a new signature starts the wait again."""
        now = self.clock()
        seen = self._seen.get(key)
        if seen is None or seen[0] != sig:
            seen = self._seen[key] = (sig, now)
        return self.left(seen[1], now)

    def since(self, key: Hashable) -> float | None:
        """When the current signature of `key` was first seen (None: never observed)."""
        seen = self._seen.get(key)
        return None if seen is None else seen[1]

    def forget(self, key: Hashable) -> None:
        self._seen.pop(key, None)


def stamp(path: Path) -> tuple:
    try:
        st = path.stat()
    except OSError:  # gone meanwhile: the next look sees a new signature
        return None, None
    return st.st_size, st.st_mtime_ns


def files_of(model: str | os.PathLike) -> tuple[Path, ...]:
    """The files of a model: an `.xml` and its `.bin`, a `.pdmodel` and its `.pdiparams`, every file of a
    SavedModel folder (sorted), or any other model file (`.onnx`, `.tflite`) alone."""
    model = Path(model)
    if model.is_dir():
        return tuple(sorted(p for p in model.rglob("*") if p.is_file()))
    pair = {".xml": ".bin", ".pdmodel": PADDLE_PARAMS}.get(model.suffix)
    return (model, model.with_suffix(pair)) if pair else (model,)


def content_hash(xml: str | os.PathLike, copy_to: Path | None = None) -> str:
    """sha256 over the .xml then the .bin (a .pdmodel then its .pdiparams; a SavedModel: each file's
    name and bytes; another model file: its bytes); with `copy_to` (a folder) the bytes hashed are
    also copied there, under the same names (a SavedModel: its folder), so the copy is exactly what
    was hashed."""
    xml = Path(xml)
    h = hashlib.sha256()
    if copy_to is not None:
        copy_to.mkdir(parents=True, exist_ok=True)
    for src in files_of(xml):
        if xml.is_dir():
            h.update(src.relative_to(xml).as_posix().encode() + b"\0")
        to = copy_to / src.relative_to(xml.parent) if copy_to is not None else None
        if to is not None:
            to.parent.mkdir(parents=True, exist_ok=True)
        with open_regular(src) as fh:
            dst = open(to, "wb") if to is not None else None
            try:
                while chunk := fh.read(1 << 20):
                    h.update(chunk)
                    if dst is not None:
                        dst.write(chunk)
            finally:
                if dst is not None:
                    dst.close()
        if src is xml:
            h.update(b"\0int8wb-bin\0")
    return h.hexdigest()


def walk(root: str | os.PathLike, skip: Iterable[Path] = (), endings: tuple[str, ...] = (".xml",)) -> Iterator[Path]:
    """Files below `root` whose names end in one of `endings`, in a stable order. Hidden files and
    folders (ours: `.int8wb/`, staging folders; editors', VCS') and the folders in `skip` are not entered.
    With `saved_model.pb` among `endings`, a folder below `root` holding one is yielded, not entered."""
    skip = {Path(p) for p in skip}
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        if SAVED_MODEL in endings and SAVED_MODEL in files and here != Path(root):
            dirs[:] = []
            yield here
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and here / d not in skip)
        for name in sorted(files):
            if name.endswith(endings) and not name.startswith("."):
                yield here / name
