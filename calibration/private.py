"""Our state folder, `.int8wb/`, is for its owner only.

It holds job logs, job specs, results and reports of the user's models: private (folders 0700,
files 0600) whatever the umask, as the job store, the drop folder and the result cache create it.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

STATE_DIR = ".int8wb"


def private_folder(path: Path) -> Path:
    """Our folder, for its owner only (0700) whatever the umask; an existing one is tightened (an
    older version, or the pytest cache, made it 0755). A symlink is left as it is."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.is_symlink():
        with contextlib.suppress(PermissionError):
            os.chmod(path, 0o700)
    return path


def private_file(path: Path, truncate: bool = False, append: bool = False, read: bool = False) -> int:
    """An fd open for writing (and reading, with `read`) on `path`, created 0600 (or tightened)
    whatever the umask."""
    flags = (os.O_RDWR if read else os.O_WRONLY) | os.O_CREAT | (os.O_TRUNC if truncate else 0) | (os.O_APPEND if append else 0)
    fd = os.open(path, flags | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with contextlib.suppress(PermissionError):
        os.fchmod(fd, 0o600)
    return fd
