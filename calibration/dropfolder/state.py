"""What the drop folder remembers, in the inbox's job store (`INBOX/.int8wb/jobs.sqlite`):

- `drop_files`: one row per model file seen in the inbox, with its signature and state;
- `drop_models`: one row per content (sha256), processed exactly once, with its job and entry.

Every SQL statement of the drop folder is here. Thread-safe: the watcher's loop and the runner's
callbacks share one connection.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path

from ..jobs import store_path
from .policy import is_inbox

# File states: settling (changed lately), incomplete (settled but not a complete pair), processing,
# waiting (same content as a model being processed), done, failed, duplicate, ignored (not an IR).
FILE_FINAL = frozenset({"done", "failed", "duplicate", "ignored"})
FILE_BUSY = ("settling", "processing", "waiting")
FILE_OPEN = ("settling", "incomplete", "processing", "waiting")
MODEL_ACTIVE = ("queued", "running")

SCHEMA = """
CREATE TABLE IF NOT EXISTS drop_files (
    xml TEXT PRIMARY KEY,   -- path relative to the inbox
    name TEXT NOT NULL,     -- its entry name in the outbox / failed folder
    sig TEXT NOT NULL,      -- json [xml size, xml mtime_ns, bin size, bin mtime_ns]
    since REAL NOT NULL,    -- when this signature was first seen
    hash TEXT,              -- sha256 of this signature's content, once known
    state TEXT NOT NULL,
    note TEXT,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS drop_models (
    hash TEXT PRIMARY KEY,  -- one row per content: processed exactly once
    name TEXT NOT NULL,
    xml TEXT NOT NULL,
    state TEXT NOT NULL,    -- queued | running | done | failed
    job TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    entry TEXT,
    reason TEXT,
    created REAL NOT NULL,
    finished REAL
);
"""


def stored_signature(sig: tuple | None) -> str:
    """A pair's signature (`model_files.signature`) as drop_files.sig holds it."""
    return json.dumps(list(sig) if sig is not None else None)


def _in(states: tuple[str, ...]) -> str:
    return f"({', '.join('?' * len(states))})"


class DropState:
    """The `drop_files` and `drop_models` rows of one inbox."""

    def __init__(self, inbox: Path):
        self._db = sqlite3.connect(store_path(inbox), timeout=10, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        with self._lock:
            self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _q(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # -- files ----------------------------------------------------------------------------------
    def file(self, rel: str) -> sqlite3.Row | None:
        rows = self._q("SELECT * FROM drop_files WHERE xml = ?", (rel,))
        return rows[0] if rows else None

    def entry_name_for(self, rel: str, name: str) -> str:
        """`name`, unless another file (now or before) was given it: `a/m.xml` and `a__m.xml` both
        read `a__m`, so the later one gets `a__m~<digest of its path>` and neither replaces the other."""
        taken = self._q("SELECT 1 FROM drop_files WHERE name = ? AND xml != ? UNION ALL "
                        "SELECT 1 FROM drop_models WHERE name = ? AND xml != ? LIMIT 1", (name, rel, name, rel))
        return f"{name}~{hashlib.sha1(rel.encode()).hexdigest()[:8]}" if taken else name

    def add_file(self, rel: str, name: str, sig: str, now: float) -> None:
        name = self.entry_name_for(rel, name)
        self._q("INSERT INTO drop_files (xml, name, sig, since, state, updated) VALUES (?, ?, ?, ?, ?, ?)",
                (rel, name, sig, now, "settling", now))

    def set_file(self, rel: str, **fields) -> None:
        fields["updated"] = time.time()
        sets = ", ".join(f"{k} = ?" for k in fields)
        self._q(f"UPDATE drop_files SET {sets} WHERE xml = ?", (*fields.values(), rel))

    def forget_file(self, rel: str) -> None:
        self._q("DELETE FROM drop_files WHERE xml = ?", (rel,))

    def open_files(self) -> list[sqlite3.Row]:
        """Files not yet in a final state."""
        return self._q(f"SELECT * FROM drop_files WHERE state IN {_in(FILE_OPEN)}", FILE_OPEN)

    # -- models ---------------------------------------------------------------------------------
    def model(self, digest: str) -> sqlite3.Row | None:
        rows = self._q("SELECT * FROM drop_models WHERE hash = ?", (digest,))
        return rows[0] if rows else None

    def add_model(self, digest: str, name: str, rel: str, now: float) -> None:
        self._q("INSERT INTO drop_models (hash, name, xml, state, created) VALUES (?, ?, ?, 'queued', ?)",
                (digest, name, rel, now))

    def set_model(self, digest: str, **fields) -> None:
        sets = ", ".join(f"{k} = ?" for k in fields)
        self._q(f"UPDATE drop_models SET {sets} WHERE hash = ?", (*fields.values(), digest))

    def forget_model(self, digest: str) -> None:
        self._q("DELETE FROM drop_models WHERE hash = ?", (digest,))

    def active_models(self) -> list[sqlite3.Row]:
        """Models queued or running."""
        return self._q(f"SELECT * FROM drop_models WHERE state IN {_in(MODEL_ACTIVE)}", MODEL_ACTIVE)

    def idle(self) -> bool:
        """Nothing settling, processing or waiting, and no model queued or running."""
        busy = self._q(f"SELECT COUNT(*) FROM drop_files WHERE state IN {_in(FILE_BUSY)}", FILE_BUSY)[0][0]
        active = self._q(f"SELECT COUNT(*) FROM drop_models WHERE state IN {_in(MODEL_ACTIVE)}", MODEL_ACTIVE)[0][0]
        return busy == 0 and active == 0


def inbox_rows(folder: str | os.PathLike) -> list[dict] | None:
    """One row per model file of an inbox with its job (`int8wb jobs INBOX`), or None when `folder`
    is not an inbox."""
    path = store_path(folder)
    if not path.exists():
        return None if not is_inbox(folder) else []
    db = sqlite3.connect(path, timeout=10)
    db.row_factory = sqlite3.Row
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "drop_files" not in tables:
            return None if not is_inbox(folder) else []
        rows = db.execute(
            "SELECT f.xml, f.name, f.state, f.hash, f.note, f.updated, m.name AS processed_as, m.state AS model_state, "
            "m.job, m.entry, m.attempts, m.reason, j.state AS job_state, j.percent, j.phase, j.error, j.started, "
            "j.finished FROM drop_files f LEFT JOIN drop_models m ON m.hash = f.hash "
            "LEFT JOIN jobs j ON j.id = m.job ORDER BY f.updated DESC").fetchall()
        return [dict(r) for r in rows]
    finally:
        db.close()
