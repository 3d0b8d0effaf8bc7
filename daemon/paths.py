"""Paths and URIs the editor or the workspace hands us, made safe to use: a symlink loop makes
`Path.resolve()` raise RuntimeError, a NUL makes most calls raise ValueError, a non-file URI has no
path, and pygls keys open documents by the *unquoted* URI while we build quoted ones."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote

from pygls.uris import from_fs_path, to_fs_path

if TYPE_CHECKING:
    from pygls.workspace import TextDocument

    from int8wb.daemon.server import Int8Server


def resolved(path: str | os.PathLike) -> Path:
    """`path` made absolute with its symlinks followed as far as they lead (never raises)."""
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError, ValueError):  # a loop, a NUL, a name too long
        return Path(os.path.abspath(path))


def exists(path: Path) -> bool:
    """Whether `path` names something (False for a loop, a name too long, a NUL: nothing to check)."""
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def path_of(uri: str) -> Path | None:
    """The file a URI names; None for other schemes (untitled:, …) and names no file can have."""
    raw = to_fs_path(uri) if isinstance(uri, str) else None
    return Path(raw) if raw and "\0" not in raw else None


def uri_of(path: str | os.PathLike) -> str:
    return from_fs_path(str(path))


def key_of(uri: str) -> str:
    """One key per document, whichever quoting the URI came with."""
    return unquote(uri)


def document(ls: Int8Server, uri: str) -> TextDocument | None:
    """The editor's buffer of `uri` if it is open (never a read of the file, as pygls would do)."""
    return ls.workspace.text_documents.get(key_of(uri))
