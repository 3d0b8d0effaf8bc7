"""An output set (model .xml and .bin, result .json, report .html) committed as one unit.

The files are staged under temporary names in the output folder. `commit_set` then writes a journal,
the commit point: before it the old set stands, after it the new one will. Then it renames each
file into place. A process killed between two renames leaves its journal, and `roll_forward`
finishes the renames later. The next commit into that folder does so (`recover`), and so does the
job runner when it finds a worker dead. Commits into one folder take turns (an advisory lock on the
folder), so two sets never interleave. The final names stay what they always were.

Each move records the identity (device, inode) of its staged file and of the file it replaces.
Rolling forward therefore never puts an older set over a newer one, and a reader can tell whether
the files on disk are this commit's. A journal is written by one process and read by another.
No OpenVINO here: the job runner reads journals.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

try:
    import fcntl
except ImportError:  # Windows: commits into one folder are then not serialized
    fcntl = None

FOLDER_JOURNAL = ".int8wb-commit-"  # + token + ".json": the journal of a commit made outside a job
LOCK_TIMEOUT = 60.0
Ident = tuple[int, int]


def ident(path: str | os.PathLike) -> Ident | None:
    """What a name holds now (the link itself, never what it points at); None: nothing."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def replace(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """os.replace. Every step of a commit goes through this one name, so a test can stop a commit
    between any two steps."""
    os.replace(src, dst)


def temporary(folder: Path, role: str, suffix: str) -> Path:
    """A staged file's name: hidden, with the pid (so a runner finds a dead worker's) and a token
    (so a reused pid never writes over a dead process's staged file that a journal still names)."""
    return folder / f".{role}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}"


def _fsync(path: str | os.PathLike, directory: bool = False) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # a filesystem that cannot sync a folder: the rename is still atomic
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def folder_lock(folder: Path, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Commits into `folder` one at a time, across processes and threads (flock on the folder
    itself: no lock file beside the outputs; the kernel drops it with a killed process)."""
    if fcntl is None:
        yield
        return
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"another commit has held {folder} for over {timeout:g} s") from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)  # releases the lock


@dataclass(frozen=True)
class Move:
    role: str
    tmp: str
    final: str
    new: Ident         # the staged file: the final holds it once moved
    old: Ident | None  # what the final held at the commit point (None: nothing)


@dataclass(frozen=True)
class Resolution:
    """What a commit became. "committed": every file of the set is in place. "superseded": a later
    commit replaced the set, so nothing of this one was kept. "incomplete": a staged file is gone,
    so some finals still hold older files."""
    state: str
    finals: dict[str, str]
    detail: str = ""


@dataclass(frozen=True)
class Journal:
    path: Path
    moves: tuple[Move, ...]

    def write(self) -> None:
        """Atomically, and durably: this rename is the commit point."""
        tmp = temporary(self.path.parent, "journal", ".json")
        data = {"version": 1, "time": time.time(), "moves": [m.__dict__ for m in self.moves]}
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync(self.path.parent, directory=True)

    @classmethod
    def read(cls, path: Path) -> Journal | None:
        """None when there is none, or when it is not one (a journal is renamed into place whole, so
        a half-written one is never read; anything else is not ours to act on)."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            moves = tuple(Move(m["role"], m["tmp"], m["final"], tuple(m["new"]),
                               tuple(m["old"]) if m["old"] is not None else None) for m in data["moves"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return cls(path, moves)

    @property
    def folder(self) -> Path:
        return Path(self.moves[0].final).parent if self.moves else self.path.parent


def roll_forward(journal: Journal) -> Resolution:
    """Finishes the renames of `journal` (call it under the folder's lock). Every final is judged
    before anything moves. If one already holds a later commit's file, the set was superseded. If
    a staged file is gone, the set cannot be finished. Either way nothing more is moved, and the
    staged files go: a mix of two sets is exactly what this prevents."""
    finals = {m.role: m.final for m in journal.moves}
    newer = [m for m in journal.moves if ident(m.final) not in (m.new, m.old)]
    left = [m for m in journal.moves if ident(m.final) != m.new]
    gone = [m for m in left if ident(m.tmp) != m.new]
    if newer or gone:
        for m in left:
            if ident(m.tmp) == m.new:
                Path(m.tmp).unlink(missing_ok=True)
        if newer:
            names = ", ".join(Path(m.final).name for m in newer)
            return Resolution("superseded", finals, f"a later commit replaced {names}; nothing of this job was kept")
        names = ", ".join(Path(m.tmp).name for m in gone)
        moved = [Path(m.final).name for m in journal.moves if m not in left]
        kept = f"{', '.join(moved)} hold this job's files, the rest older ones" if moved else "nothing was written"
        return Resolution("incomplete", finals, f"its staged {names} vanished before the commit was done; {kept}")
    for m in left:
        replace(m.tmp, m.final)
    _fsync(journal.folder, directory=True)
    return Resolution("committed", finals)


def resolve(path: Path) -> Resolution | None:
    """Rolls forward the journal at `path` (None: there is none). The caller removes it once it
    has recorded the answer."""
    journal = Journal.read(path)
    if journal is None or not journal.folder.is_dir():
        return None
    with folder_lock(journal.folder):
        return roll_forward(journal)


def recover(folder: Path) -> list[Resolution]:
    """Finishes what killed commits left in `folder` (their journals), oldest first."""
    if not folder.is_dir() or not any(folder.glob(f"{FOLDER_JOURNAL}*.json")):
        return []
    with folder_lock(folder):
        return _recover(folder)


def _recover(folder: Path) -> list[Resolution]:
    found = []
    for path in sorted(folder.glob(f"{FOLDER_JOURNAL}*.json"), key=lambda p: p.stat().st_mtime_ns):
        journal = Journal.read(path)
        if journal is not None:
            found.append(roll_forward(journal))
        path.unlink(missing_ok=True)
    return found


def commit_set(pending: dict[str, Path], finals: dict[str, Path], journal: Path | None = None,
               guard: Callable[[], None] | None = None) -> Resolution:
    """Puts the staged files `pending` (by role) in place as `finals`, as one unit.

    `guard` runs under the folder's lock just before the commit point: what it raises leaves the
    finals untouched (e.g. a result another run committed meanwhile must not be replaced).

    `pending` is emptied at the commit point: from then on the staged files belong to the journal,
    and a caller that cleans up after an error must not remove them. With `journal` (a job's, in the
    job store), the journal stays after the commit: the runner reads it to know what was written
    even if this process dies before it can say so, and removes it. Without, it lives in the output
    folder and goes once the set is in place."""
    if not pending:
        return Resolution("committed", {})
    # .bin before .xml: a watcher that sees the .xml finds the pair complete
    roles = sorted(pending, key=lambda r: r == "model")
    folder = finals[roles[0]].parent
    for role in roles:
        _fsync(pending[role])
    with folder_lock(folder):
        _recover(folder)  # a killed commit's set goes first, so this one is the newest
        if guard is not None:
            guard()
        moves = tuple(Move(r, str(pending[r]), str(finals[r]), ident(pending[r]), ident(finals[r])) for r in roles)
        record = Journal(journal or folder / f"{FOLDER_JOURNAL}{os.getpid()}-{uuid.uuid4().hex[:8]}.json", moves)
        record.write()
        pending.clear()
        done = roll_forward(record)
        if done.state != "committed":  # a staged file vanished under the lock: say so, never report success
            raise OSError(f"the output set in {folder} was not committed: {done.detail}")
        if journal is None:
            record.path.unlink(missing_ok=True)
    return done
