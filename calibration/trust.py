"""Whether the user trusts a workspace: one answer for custom metrics (the workspace's own Python)
and for automation (a drop policy that calibrates whatever lands in the folder).

Trust is given from outside the workspace, never by a file in it, in one of three ways:
- a command-line flag (`--trust`), for one run;
- `INT8WB_TRUST=1` in the environment the editor or the shell starts us with: everything is trusted;
- the user's list of trusted folders (`int8wb trust FOLDER`), kept in the user's configuration
  folder like VS Code's workspace trust: a folder and everything below it.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

ENV = "INT8WB_TRUST"
FILE_ENV = "INT8WB_TRUST_FILE"  # where the list lives (tests and unusual set-ups); default below


def trust_file() -> Path:
    if os.environ.get(FILE_ENV):
        return Path(os.environ[FILE_ENV])
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "int8wb" / "trusted-folders.json"


def trusted_folders() -> list[Path]:
    """The user's trusted folders; an unreadable list trusts nothing (and is left for the user to mend)."""
    try:
        entries = json.loads(trust_file().read_text(encoding="utf-8")).get("folders", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [Path(e) for e in entries if isinstance(e, str) and os.path.isabs(e)]


def trusted(flag: bool = False, folder: str | os.PathLike | None = None) -> bool:
    """`flag` (e.g. --trust), INT8WB_TRUST=1, or `folder` lies in a folder the user trusts."""
    if flag or os.environ.get(ENV) == "1":
        return True
    if folder is None:
        return False
    here = Path(os.path.realpath(folder))
    return any(here == t or t in here.parents for t in trusted_folders())


def set_trusted(folder: str | os.PathLike, on: bool = True) -> list[Path]:
    """Adds (or removes) `folder` to the user's list; returns the new list. The list is written to a
    temporary name and renamed, readable by the user alone."""
    here = Path(os.path.realpath(folder))
    folders = [f for f in trusted_folders() if f != here] + ([here] if on else [])
    path = trust_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".trusted-", dir=path.parent)  # mkstemp creates it 0600
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"folders": [str(f) for f in folders]}, fh, indent=2)
    os.replace(tmp, path)
    return folders
