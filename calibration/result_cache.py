"""A content-addressed cache of calibration results, safe for parallel pytest-xdist workers.

The key is a SHA-256 over everything a calibration depends on:

- the spec's content, validated and with defaults filled in, **without `[gate]`**: budgets do
  not change a calibration, so tightening one re-checks the cached result instead of recalibrating
  (comments and formatting do not count either);
- the model's `.xml` and `.bin` contents;
- every file the spec's dataset tables (`[dataset]`, `[validation]`, `[evaluation]`) point to:
  a file's contents, a folder's sorted relative paths and contents, an image list's text and
  every image it names; and a custom metric's Python file;
- the versions of int8-workbench, openvino and nncf, and the host's CPU (speed figures are
  per machine).

Hashing is made cheap for re-runs: each file's digest is memoised in `files.json` by
(path, size, mtime_ns), so an unchanged gate stats its files instead of reading them. A file
modified less than two seconds before it is hashed is not memoised (its mtime may not yet tell
two writes apart, as in git's "racy clean" problem).

Entries hold the result in its JSON form (`calibration.result`); one that no longer reads as a
`Result`, or whose INT8 outputs changed on disk, is a miss.

Entries are written atomically (temporary file + `os.replace`); a per-key `fcntl.flock` lock
makes a second worker wait for the first one's calibration of the same key and reuse it.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from .datasets import image_list_lines
from .machine import host
from .private import STATE_DIR, private_folder
from .result import CacheInfo, Result
from .versions import versions

try:
    import fcntl
except ImportError:  # Windows: no cross-process lock; entries are still written atomically
    fcntl = None

FORMAT = 1
RACY_NS = 2_000_000_000
CHUNK = 1 << 20
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp's 0600 would hide the cache from other users
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class FileHashes:
    """SHA-256 of file contents, memoised by (path, size, mtime_ns) in a JSON file."""

    def __init__(self, path: Path | None):
        self.path = path
        self.memo: dict[str, list] = {}
        self.dirty = False
        self.read = 0  # files actually read (for tests and diagnostics)
        if path is not None:
            with contextlib.suppress(OSError, ValueError):
                self.memo = json.loads(path.read_text(encoding="utf-8"))

    def digest(self, file: str | Path) -> str:
        file = os.path.abspath(file)
        st = os.stat(file)
        known = self.memo.get(file)
        if known and known[0] == st.st_size and known[1] == st.st_mtime_ns:
            return known[2]
        h = hashlib.sha256()
        with open(file, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
        self.read += 1
        if time.time_ns() - st.st_mtime_ns > RACY_NS:
            self.memo[file] = [st.st_size, st.st_mtime_ns, h.hexdigest()]
            self.dirty = True
        return h.hexdigest()

    def save(self) -> None:
        if self.path is None or not self.dirty:
            return
        # Another worker may have saved meanwhile: merge, so neither loses the other's work.
        with contextlib.suppress(OSError, ValueError):
            on_disk = json.loads(self.path.read_text(encoding="utf-8"))
            self.memo = {**on_disk, **self.memo}
        _atomic_write(self.path, json.dumps(self.memo, separators=(",", ":")))
        self.dirty = False


def _image_list_files(list_file: Path) -> list[Path]:
    """The images an image list names; an unreadable list names none (the calibration reports it)."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        return [list_file.parent / parts[0] for _, parts in image_list_lines(list_file)]
    return []


def _tree_digest(path: Path, hashes: FileHashes) -> str:
    """A file's contents, or a folder's sorted relative paths and contents; missing paths hash
    to a marker (the calibration will report them)."""
    h = hashlib.sha256()
    if path.is_file():
        h.update(b"file\0" + hashes.digest(path).encode())
    elif path.is_dir():
        h.update(b"dir\0")
        files = []
        for folder, dirs, names in os.walk(path, followlinks=True):
            rel = os.path.relpath(folder, path)
            prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
            files += [(prefix + n, os.path.join(folder, n)) for n in names]
        for rel, full in sorted(files):
            if os.path.isfile(full):
                h.update(rel.encode() + b"\0" + hashes.digest(full).encode() + b"\n")
    else:
        h.update(b"missing\0" + str(path).encode())
    return h.hexdigest()


def fingerprint(spec, hashes: FileHashes) -> tuple[str, dict]:
    """(key, parts): the cache key of a loaded `calibration.spec.Spec`, and what it is made of."""
    content = spec.model_dump(mode="json", exclude={"gate"})
    parts: dict = {
        "format": FORMAT,
        "spec": hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest(),
        "model": "+".join(_tree_digest(p, hashes) for p in (spec.model_path, spec.model_path.with_suffix(".bin"))),
        "data": {},
        "versions": versions(),
        "host": host(),
    }
    for role in ("dataset", "validation", "evaluation"):
        table = getattr(spec, role)
        if table is None or table.path is None:
            continue
        path = spec.resolve(table.path)
        digest = _tree_digest(path, hashes)
        if table.kind == "image_list" and path.is_file():
            h = hashlib.sha256(digest.encode())
            for image in _image_list_files(path):
                h.update(b"\n" + _tree_digest(image, hashes).encode())
            digest = h.hexdigest()
        parts["data"][role] = digest
    if spec.accuracy.metric == "custom" and spec.accuracy.custom:
        parts["data"]["custom metric"] = _tree_digest(spec.resolve(spec.accuracy.custom.split(":", 1)[0]), hashes)
    key = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return key, parts


def what_changed(old: dict, new: dict) -> list[str]:
    """Names of the parts that differ between two fingerprints, for "recalibrated because …"."""
    changed = []
    for name in ("spec", "model", "versions", "host", "format"):
        if old.get(name) != new.get(name):
            changed.append({"spec": "spec content", "model": "model (.xml/.bin)"}.get(name, name))
    for role in sorted(set(old.get("data", {})) | set(new.get("data", {}))):
        if old.get("data", {}).get(role) != new.get("data", {}).get(role):
            changed.append(f"[{role}] data" if role != "custom metric" else "custom metric file")
    return changed


def _outputs_state(result: Result) -> dict:
    state = {}
    for name in ("model", "weights", "result"):
        p = getattr(result.output, name)
        if p:
            with contextlib.suppress(OSError):
                st = os.stat(p)
                state[p] = [st.st_size, st.st_mtime_ns]
    return state


@dataclass
class Outcome:
    result: Result
    cached: bool
    key: str
    entry_path: Path | None
    created: float
    seconds: float                       # calibration time of this run (0 when cached)
    why: list[str] = field(default_factory=list)  # why it was (re)calibrated

    def describe(self) -> str:
        if self.cached:
            return f"cached ({time.strftime('%Y-%m-%d %H:%M', time.localtime(self.created))})"
        because = f"; {', '.join(self.why)}" if self.why else ""
        return f"calibrated in {self.seconds:.1f} s{because}"

    def info(self) -> CacheInfo:
        """Where the result came from, as the gate reports it (`Result.cache`)."""
        return CacheInfo(hit=self.cached, key=self.key, entry=str(self.entry_path) if self.entry_path else None,
                         created=self.created, seconds=round(self.seconds, 3), why=self.why, source=self.describe())


class ResultCache:
    """Entries under `root`: `<key>.json` (the result and its fingerprint), `locks/<key>.lock`,
    `latest/<spec path hash>` (the spec's last key, to explain a miss) and `files.json`."""

    def __init__(self, root: Path | None, session: str = ""):
        self.root = Path(root) if root is not None else None
        self.session = session
        self.hashes = FileHashes(self.root / "files.json" if self.root else None)

    def _entry_path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def _latest_path(self, spec_path: Path) -> Path:
        return self.root / "latest" / hashlib.sha256(str(spec_path).encode()).hexdigest()[:32]

    def _read(self, key: str) -> dict | None:
        """The entry of `key` with its result as the model, or None when it is missing or stale."""
        if self.root is None:
            return None
        try:
            entry = json.loads(self._entry_path(key).read_text(encoding="utf-8"))
            if entry.get("format") != FORMAT or entry.get("key") != key:
                return None
            entry["result"] = Result.model_validate(entry["result"])
        except (OSError, ValueError, KeyError, AttributeError):  # ValidationError is a ValueError
            return None
        # The INT8 model and result on disk must still be the ones this entry describes.
        if _outputs_state(entry["result"]) != entry.get("outputs"):
            return None
        return entry

    @contextlib.contextmanager
    def _lock(self, key: str) -> Iterator[None]:
        if self.root is None or fcntl is None:
            yield
            return
        path = self.root / "locks" / f"{key}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def _hit(self, entry: dict, key: str) -> Outcome:
        return Outcome(entry["result"], True, key, self._entry_path(key), entry["created"], 0.0)

    def obtain(self, spec, compute: Callable[[], Result | dict], force: bool = False) -> Outcome:
        """The cached result of `spec`, or `compute()`'s, stored. With `force`, only a result made
        in this session (by another worker) is reused."""
        key, parts = fingerprint(spec, self.hashes)
        self.hashes.save()
        usable = (lambda e: e is not None and (not force or e.get("session") == self.session))
        entry = self._read(key)
        if usable(entry):
            return self._hit(entry, key)
        if self.root is not None:
            if self.root.parent.name == STATE_DIR:  # the default, in the project: private like the rest of it
                private_folder(self.root.parent)
            self.root.mkdir(parents=True, exist_ok=True)
            ignore = self.root.parent / ".gitignore"
            if self.root.parent.name == STATE_DIR and not ignore.exists():
                with contextlib.suppress(OSError):
                    _atomic_write(ignore, "# created by int8-workbench's pytest plugin\n*\n")
        with self._lock(key):
            entry = self._read(key)  # another worker may have finished it while we waited
            if usable(entry):
                return self._hit(entry, key)
            why = ["--int8-rerun"] if force else self._why(spec.path, parts)
            t0 = time.perf_counter()
            result = Result.of(compute())
            seconds = time.perf_counter() - t0
            created = time.time()
            if self.root is not None:
                entry = {"format": FORMAT, "key": key, "created": created, "session": self.session,
                         "spec_path": str(spec.path), "parts": parts, "seconds": round(seconds, 3),
                         "outputs": _outputs_state(result), "result": result.to_json()}
                _atomic_write(self._entry_path(key), json.dumps(entry))
                _atomic_write(self._latest_path(spec.path), key)
        return Outcome(result, False, key, self._entry_path(key) if self.root else None, created, seconds, why)

    def _why(self, spec_path: Path, parts: dict) -> list[str]:
        if self.root is None:
            return []
        try:
            old_key = self._latest_path(spec_path).read_text(encoding="utf-8").strip()
            old = json.loads(self._entry_path(old_key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return ["not cached yet"]
        changed = what_changed(old.get("parts", {}), parts)
        if changed:
            return [f"{', '.join(changed)} changed"]
        return ["INT8 outputs changed or removed"]
