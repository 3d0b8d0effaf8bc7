"""Reading a file the workspace handed us: regular files only, bounded in size, never blocking.

A workspace is untrusted input: a FIFO named `model.xml` blocks a plain open() for ever, a
device file never ends, and a symlink loop or a 10 GB "spec" must not take the process down.
Every read of a user-named spec, model XML or list file goes through here.
"""
from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO

# Far above any real spec or IR XML (a 1 GB model's XML is a few MB), far below memory trouble.
TEXT_LIMIT = 16 << 20
XML_LIMIT = 512 << 20


class UnreadableFile(OSError):
    """Not a regular file, or over the size limit; str() says which, for a one-line problem."""

    def __str__(self) -> str:
        return self.strerror


def open_regular(path: str | os.PathLike, limit: int | None = None) -> BinaryIO:
    """A binary file object, only for a regular file (UnreadableFile for a FIFO, device or folder,
    or one over `limit` bytes); the open itself never blocks."""
    # O_NONBLOCK: opening a FIFO with no writer returns at once instead of waiting for one.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a folder" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode) else \
                "a device or socket"
            raise UnreadableFile(errno.EINVAL, f"not a regular file ({kind})")
        if limit is not None and st.st_size > limit:
            raise UnreadableFile(errno.EFBIG, f"too large ({st.st_size:,} bytes; the limit is {limit:,})")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb", closefd=True)
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: str | os.PathLike, limit: int = XML_LIMIT, head: int | None = None) -> bytes:
    """The file's bytes (only the first `head` bytes when given): see `open_regular`."""
    with open_regular(path, None if head is not None else limit) as fh:
        if head is not None:
            return fh.read(head)
        data = fh.read(limit + 1)  # a file that grows past its stat size is still bounded
    if len(data) > limit:
        raise UnreadableFile(errno.EFBIG, f"too large (over {limit:,} bytes)")
    return data


def read_text(path: str | os.PathLike, limit: int = TEXT_LIMIT) -> str:
    """UTF-8 text of a regular file (OSError or UnicodeDecodeError otherwise)."""
    return read_bytes(path, limit).decode("utf-8")
