"""Reading a file the workspace handed us: regular files only, bounded in size, never blocking.

A workspace is untrusted input: a FIFO named `model.xml` blocks a plain open() for ever, a
device file never ends, and a symlink loop or a 10 GB "spec" must not take the process down.
Every read of a user-named spec, model XML or list file goes through here.
"""
from __future__ import annotations

import errno
import os
import stat

# Far above any real spec or IR XML (a 1 GB model's XML is a few MB), far below memory trouble.
TEXT_LIMIT = 16 << 20
XML_LIMIT = 512 << 20


class UnreadableFile(OSError):
    """Not a regular file, or over the size limit; str() says which, for a one-line problem."""

    def __str__(self) -> str:
        return self.strerror


def read_bytes(path: str | os.PathLike, limit: int = XML_LIMIT, head: int | None = None) -> bytes:
    """The file's bytes (only the first `head` bytes when given). Raises OSError (UnreadableFile for
    a FIFO, device or folder, or a file over `limit`) without ever blocking on the open."""
    # O_NONBLOCK: opening a FIFO with no writer returns at once instead of waiting for one.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a folder" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode) else \
                "a device or socket"
            raise UnreadableFile(errno.EINVAL, f"not a regular file ({kind})")
        if head is None and st.st_size > limit:
            raise UnreadableFile(errno.EFBIG, f"too large ({st.st_size:,} bytes; the limit is {limit:,})")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=True) as fh:
            fd = -1
            if head is not None:
                return fh.read(head)
            data = fh.read(limit + 1)  # a file that grows past its stat size is still bounded
    finally:
        if fd >= 0:
            os.close(fd)
    if len(data) > limit:
        raise UnreadableFile(errno.EFBIG, f"too large (over {limit:,} bytes)")
    return data


def read_text(path: str | os.PathLike, limit: int = TEXT_LIMIT) -> str:
    """UTF-8 text of a regular file (OSError or UnicodeDecodeError otherwise)."""
    return read_bytes(path, limit).decode("utf-8")
