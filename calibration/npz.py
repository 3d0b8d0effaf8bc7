"""Lazy reading of .npz files: each member's .npy header is parsed when the file is opened, rows are
read when asked for, so a file larger than memory can feed a run.

Stored members (np.savez) are read by mapping just the rows asked for (np.memmap at the member's
data offset in the zip) and copying them out; the map is dropped at once, because pages a
long-lived map has touched count in the process's resident memory. Compressed members
(np.savez_compressed) are read through the member's inflating stream: fast in sample order (the
workflow's order), slow for random access, since going back means inflating from the member's
start again.
"""
from __future__ import annotations

import math
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, fixed fields, name length, extra length
LOCAL_SIGNATURE = b"PK\x03\x04"


class NpzError(ValueError):
    """The file is not a readable .npz (the message says which member and why)."""


class NpzArray:
    """One member: its shape and dtype from the header, its rows on demand."""

    def __init__(self, npz: "NpzFile", info: zipfile.ZipInfo, name: str):
        self.npz, self.info, self.name = npz, info, name
        with npz.zip.open(info) as stream:
            version = np.lib.format.read_magic(stream)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
            else:
                raise NpzError(f"array {name!r}: .npy format version {version} is not supported (1.0 and 2.0 are)")
            self.header_bytes = stream.tell()
        if dtype.hasobject:
            raise NpzError(f"array {name!r} holds Python objects, which are not read (pickle is not allowed)")
        self.shape, self.dtype, self.fortran = tuple(shape), dtype, fortran
        self.row_bytes = math.prod(self.shape[1:]) * dtype.itemsize
        nbytes = math.prod(self.shape) * dtype.itemsize
        if info.file_size < self.header_bytes + nbytes:
            raise NpzError(f"array {name!r} is truncated: {info.file_size - self.header_bytes} of {nbytes} bytes")
        self.stored = info.compress_type == zipfile.ZIP_STORED
        self.offset = npz.data_start(info) + self.header_bytes if self.stored else None
        self.stream = None    # compressed members: the open inflating stream, positioned after the last read
        self.whole = None     # compressed Fortran-ordered members: rows are not contiguous, so read once whole

    def __len__(self) -> int:
        if not self.shape:
            raise NpzError(f"array {self.name!r} is a scalar: it has no sample axis")
        return self.shape[0]

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) as a fresh, writable, C-ordered array."""
        stop = min(stop, len(self))
        shape = (max(stop - start, 0), *self.shape[1:])
        if shape[0] == 0 or self.row_bytes == 0:
            return np.empty(shape, self.dtype)
        try:
            if self.stored:
                return self.mapped(start, stop, shape)
            if self.fortran:
                if self.whole is None:
                    self.whole = self.fortran_whole()
                return np.ascontiguousarray(self.whole[start:stop])
            return self.streamed(start, shape)
        except (OSError, EOFError, zlib.error, zipfile.BadZipFile) as exc:
            raise NpzError(f"array {self.name!r}, rows {start}–{stop - 1}: {exc}") from None

    def read(self) -> np.ndarray:
        """The whole array (for small members such as labels)."""
        if not self.shape:
            with self.npz.zip.open(self.info) as stream:
                return np.lib.format.read_array(stream, allow_pickle=False)
        return self.rows(0, len(self)) if self.stored or not self.fortran else self.fortran_whole()

    def mapped(self, start: int, stop: int, shape: tuple) -> np.ndarray:
        if self.fortran:  # a row is spread over the member: map it whole, copy the rows out
            whole = np.memmap(self.npz.path, self.dtype, "r", offset=self.offset, shape=self.shape, order="F")
            return np.ascontiguousarray(whole[start:stop])
        part = np.memmap(self.npz.path, self.dtype, "r", offset=self.offset + start * self.row_bytes, shape=shape)
        return np.array(part)

    def streamed(self, start: int, shape: tuple) -> np.ndarray:
        if self.stream is None:
            self.stream = self.npz.zip.open(self.info)
        self.stream.seek(self.header_bytes + start * self.row_bytes)  # forward: inflates and skips; back: restarts
        out = np.empty(shape, self.dtype)
        want = out.nbytes
        if self.stream.readinto(out.data.cast("B")) != want:
            raise NpzError(f"array {self.name!r} ended early")
        return out

    def fortran_whole(self) -> np.ndarray:
        with self.npz.zip.open(self.info) as stream:
            return np.ascontiguousarray(np.lib.format.read_array(stream, allow_pickle=False))


class NpzFile:
    """The arrays of a .npz by name (a member `x.npy` is array `x`), headers parsed, data unread."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.zip = zipfile.ZipFile(self.path)
            self.arrays = {info.filename[:-4]: NpzArray(self, info, info.filename[:-4])
                           for info in self.zip.infolist() if info.filename.endswith(".npy")}
        except (OSError, EOFError, ValueError, zlib.error, zipfile.BadZipFile,
                RuntimeError, NotImplementedError) as exc:  # encrypted member; unknown compression
            raise NpzError(str(exc)) from None

    def data_start(self, info: zipfile.ZipInfo) -> int:
        """Where a member's bytes begin in the file: after its local header, whose extra field may
        differ from the central directory's."""
        with open(self.path, "rb") as fh:
            fh.seek(info.header_offset)
            raw = fh.read(LOCAL_HEADER.size)
        if len(raw) != LOCAL_HEADER.size:
            raise NpzError(f"member {info.filename!r}: local header cut short")
        signature, name_len, extra_len = LOCAL_HEADER.unpack(raw)
        if signature != LOCAL_SIGNATURE:
            raise NpzError(f"member {info.filename!r}: bad local header")
        return info.header_offset + LOCAL_HEADER.size + name_len + extra_len
