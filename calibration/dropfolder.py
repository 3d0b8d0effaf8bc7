"""Drop-folder automation: every IR model dropped in an inbox comes out calibrated, nothing lost.

An inbox is a folder holding a policy file, `calibration.toml` (POLICY_NAME): a calibration spec
*without* `model` (and without `[output]`), plus a `[drop]` table that says where results go. Every
path in it is relative to the policy file. A model dropped anywhere below the inbox (`*.xml` with
its `.bin`) is

1. taken once complete: its `.xml`/`.bin` sizes and mtimes unchanged for `settle` seconds and the
   `.bin` holding every byte the XML's Const layers point at (`weights_complete`); copies in
   progress, `.bin` before `.xml` or the reverse, renames and whole folders moved in all end there;
2. keyed by content: sha256 over the `.xml` then the `.bin` (cached per path, size and mtime_ns).
   A content already processed is never calibrated again: the same model under another name gets
   an entry that says whose result it shares; a changed model under the same name is processed again;
3. checked (`check_model`), snapshotted into `INBOX/.int8wb/work/` (so the original is only read)
   and calibrated through the job runner (`calibration.jobs`, one worker process per model);
4. published: `OUTBOX/<name>/` gets `<stem>.int8.xml/.bin/.json/.report.html` and `drop.json`;
   a refused or failed model gets `FAILED/<name>/reason.txt` (one `file:line: key: message (fix: …)`
   line per problem) and `drop.json`. An entry is assembled in a hidden staging folder beside the
   outbox (same filesystem) and renamed in whole, so no partial entry is ever visible.

State lives in `INBOX/.int8wb/jobs.sqlite` (the job store plus the tables `drop_files` and
`drop_models`), the log in `INBOX/.int8wb/dropfolder.log`. After a crash or `kill -9` of the watcher a
restart re-queues the jobs it had started (the orphaned worker is stopped) and finishes publishing
whatever was complete; a job whose worker died is retried `retries` times (default once).

No editor protocol and no OpenVINO here: the workers import it, the watcher does not.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

try:
    import fcntl
except ImportError:  # Windows: no advisory lock, one watcher per inbox is then up to the user
    fcntl = None

from .jobs import FINAL, STORE_DIR, JobStore, Runner, alive, store_path
from .problems import CalibrationError, Problem
from .spec import Spec, located, read_toml
from .trust import trusted
from .toml_lines import line_of

POLICY_NAME = "calibration.toml"
LOG_NAME = "dropfolder.log"
LOCK_NAME = "watch.lock"
# File states: settling (changed lately), incomplete (settled but not a complete pair), processing,
# waiting (same content as a model being processed), done, failed, duplicate, ignored (not an IR).
FILE_FINAL = frozenset({"done", "failed", "duplicate", "ignored"})
MODEL_ACTIVE = ("queued", "running")

_SCHEMA = """
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


# -- the policy ---------------------------------------------------------------------------------

class DropSettings(BaseModel):
    """The `[drop]` table of a policy."""
    model_config = ConfigDict(extra="forbid")
    outbox: str = Field("../outbox", description="Where calibrated models go, one folder per model")
    failed: str = Field("../failed", description="Where refused and failed models go, with reason.txt")
    move: bool = Field(False, description="Move the original pair into the entry's source/ once published")
    jobs: int = Field(1, ge=1, le=64, description="Calibrations at a time")
    settle: float = Field(2.0, ge=0, le=3600, description="Seconds a pair must stay unchanged before it is taken")
    incomplete_after: float = Field(
        60.0, gt=0, description="Seconds an incomplete or unreadable pair may stay unchanged before it is refused")
    retries: int = Field(1, ge=0, le=5, description="Re-runs of a job whose worker process died")


@dataclass
class Policy:
    path: Path
    text: str
    data: dict                   # the spec tables as written (no model, no [output], no [drop])
    spec: Spec                   # validated with a placeholder model; resolves paths against the policy
    drop: DropSettings
    outbox: Path = field(init=False)
    failed: Path = field(init=False)

    def __post_init__(self) -> None:
        self.outbox = (self.path.parent / self.drop.outbox).resolve()
        self.failed = (self.path.parent / self.drop.failed).resolve()

    def problem(self, message: str, *keys: str, rule: str = "policy", fix: str | None = None) -> Problem:
        return Problem(message, path=str(self.path), line=line_of(self.text, keys), key=".".join(keys) or None,
                       rule=rule, fix=fix)


def policy_path(inbox: str | os.PathLike) -> Path:
    return Path(inbox) / POLICY_NAME


def is_inbox(folder: str | os.PathLike) -> bool:
    return policy_path(folder).is_file()


def load_policy(path: str | os.PathLike, text: str | None = None) -> Policy:
    """Parses and validates a policy; raises CalibrationError whose problems name file, line and key."""
    path = Path(path).resolve()
    text, data = read_toml(path, text, "drop policy", fix=f"create {POLICY_NAME} in the inbox")
    at = lambda *keys: line_of(text, keys)  # noqa: E731
    problems: list[Problem] = []
    if "model" in data:
        problems.append(Problem("a drop policy names no model: every model dropped in the inbox is calibrated "
                                "with it", path=str(path), line=at("model"), key="model", rule="policy",
                                fix="remove the model key"))
    if "output" in data:
        problems.append(Problem("a drop policy has no [output]: results go to [drop] outbox", path=str(path),
                                line=at("output"), key="output", rule="policy",
                                fix='replace [output] by [drop] outbox = "..."'))
    raw_drop = data.get("drop", {})
    drop = DropSettings()
    if not isinstance(raw_drop, dict):
        problems.append(Problem("[drop] must be a table", path=str(path), line=at("drop"), key="drop",
                                rule="policy"))
    else:
        try:
            drop = DropSettings.model_validate(raw_drop)
        except ValidationError as exc:
            for err in exc.errors():
                loc = ("drop",) + tuple(err["loc"])
                msg = err["msg"]
                if err["type"] == "extra_forbidden":
                    close = difflib.get_close_matches(str(loc[-1]), list(DropSettings.model_fields), n=1)
                    msg = f"unknown key '{loc[-1]}'" + (f"; did you mean '{close[0]}'?" if close else
                                                         f"; allowed: {', '.join(DropSettings.model_fields)}")
                problems.append(Problem(msg, path=str(path), line=at(*loc), key=".".join(map(str, loc)),
                                        rule="policy"))
    tables = {k: v for k, v in data.items() if k not in ("model", "output", "drop")}
    spec = None
    try:
        spec = Spec.model_validate({**tables, "model": "<dropped model>.xml"})
    except ValidationError as exc:
        problems += [located(path, text, err) for err in exc.errors()]
    if spec is not None:
        spec._path, spec._text = path, text
        for role in ("dataset", "validation", "evaluation"):
            ds = getattr(spec, role)
            if ds is not None and ds.kind != "generated" and ds.path and not spec.resolve(ds.path).exists():
                problems.append(spec.problem(f"{role} not found: {spec.resolve(ds.path)}", role, "path",
                                             rule="dataset-missing", fix="paths are relative to the policy file"))
    if problems:
        raise CalibrationError(problems)
    policy = Policy(path, text, tables, spec, drop)
    inbox = path.parent
    for key, box in (("outbox", policy.outbox), ("failed", policy.failed)):
        if box == inbox or box in inbox.parents:
            problems.append(policy.problem(f"{key} {box} must not be the inbox or hold it", "drop", key,
                                           fix=f'e.g. {key} = "../{key}"'))
    if policy.outbox == policy.failed:
        problems.append(policy.problem("outbox and failed must be different folders", "drop", "failed"))
    if problems:
        raise CalibrationError(problems)
    return policy


def spec_text(policy: Policy, model: Path, output_dir: Path) -> str:
    """The spec of one dropped model: the policy's tables with every path made absolute."""
    data = json.loads(json.dumps(policy.data))
    base = policy.path.parent
    for role in ("dataset", "validation", "evaluation"):
        if isinstance(data.get(role), dict) and data[role].get("path"):
            data[role]["path"] = str((base / data[role]["path"]).resolve())
    custom = (data.get("accuracy") or {}).get("custom")
    if custom and ":" in custom:
        file, fn = custom.rsplit(":", 1)
        data["accuracy"]["custom"] = f"{(base / file).resolve()}:{fn}"
    data["model"] = str(model)
    data["output"] = {"dir": str(output_dir)}
    return _toml(data)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _toml(data: dict) -> str:
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for table, values in data.items():
        if isinstance(values, dict):
            lines += ["", f"[{table}]"] + [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


# -- files ----------------------------------------------------------------------------------------

def _stat_sig(xml: Path) -> list | None:
    out = []
    for p in (xml, xml.with_suffix(".bin")):
        try:
            st = p.stat()
            out += [st.st_size, st.st_mtime_ns]
        except OSError:
            if p == xml:
                return None
            out += [None, None]
    return out


def _is_ir_head(path: Path) -> bool | None:
    """True when the head of the file says IR, False when it is some other XML, None when too short to tell."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(1024)
    except OSError:
        return None
    if b"<net" in head:
        return True
    return False if len(head) >= 1024 or (head.strip() and not head.lstrip().startswith(b"<")) else None


def _finished(xml: Path) -> bool:
    """The XML ends with the IR's closing tag: whatever is wrong with it, it is not still arriving."""
    try:
        with open(xml, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 64))
            return fh.read().rstrip().endswith(b"</net>")
    except OSError:
        return False


def content_hash(xml: Path, copy_to: Path | None = None) -> str:
    """sha256 over the .xml then the .bin; with `copy_to` (a folder) the bytes hashed are also copied there."""
    h = hashlib.sha256()
    if copy_to is not None:
        copy_to.mkdir(parents=True, exist_ok=True)
    for src in (xml, xml.with_suffix(".bin")):
        with open(src, "rb") as fh:
            dst = open(copy_to / src.name, "wb") if copy_to is not None else None
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


def entry_name(rel: str) -> str:
    """`resnet/model.xml` -> `resnet__model`: one flat folder per model in the outbox."""
    return rel.removesuffix(".xml").replace("/", "__").replace(os.sep, "__")


def _install(src: Path, dest: Path) -> None:
    """Renames the finished folder `src` to `dest`, replacing an older entry (never a partial one)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if dest.exists():
        old = dest.parent / f".{dest.name}.replaced-{uuid.uuid4().hex[:8]}"
        os.rename(dest, old)
    os.rename(src, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


# -- the watcher ----------------------------------------------------------------------------------

class DropFolder:
    """Watches one inbox. `scan()` is one bounded pass; `run()` loops (watchdog events + polling).

    `store`/`runner` may be shared with a caller (the daemon); otherwise they are created here.
    `echo(line)` receives every log line (the CLI prints them to stderr)."""

    def __init__(self, inbox: str | os.PathLike, *, policy: str | os.PathLike | None = None,
                 jobs: int | None = None, settle: float | None = None, trust_custom_metrics: bool = False,
                 python: str | None = None, echo: Callable[[str], None] | None = None,
                 store: JobStore | None = None, runner: Runner | None = None, poll: float = 0.25):
        self.inbox = Path(inbox).resolve()
        if not self.inbox.is_dir():
            raise CalibrationError(Problem(f"inbox is not a folder: {self.inbox}", path=str(self.inbox),
                                           rule="policy"))
        self.policy_file = Path(policy).resolve() if policy else policy_path(self.inbox)
        self.policy = load_policy(self.policy_file)
        self._policy_sig = _stat_sig(self.policy_file)
        self.policy_problems: list[Problem] = []
        self.jobs_override, self.settle_override = jobs, settle
        self.echo = echo
        self.poll = poll
        self.state_dir = self.inbox / STORE_DIR
        self.own_runner = runner is None
        self.store = store or JobStore(self.inbox)
        self.work = self.state_dir / "work"
        self.spec_dir = self.state_dir / "specs"
        self._db = sqlite3.connect(store_path(self.inbox), timeout=10, check_same_thread=False,
                                   isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        with self._lock:
            self._db.executescript(_SCHEMA)
        self._log_file = open(self.state_dir / LOG_NAME, "a", encoding="utf-8", buffering=1)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._observer = None
        self.failures: list[str] = []    # names that failed in this process's lifetime
        self.published: list[str] = []
        self._orphaned: set[str] = set()  # jobs whose watcher died: re-queued without counting an attempt
        self.runner = runner or Runner(self.store, self.max_jobs, on_change=lambda job: self._wake.set(),
                                       trust_custom_metrics=trust_custom_metrics, python=python)
        self._started = False
        self._claim_file = None

    # -- settings -------------------------------------------------------------------------------
    @property
    def max_jobs(self) -> int:
        return self.jobs_override or self.policy.drop.jobs

    @property
    def settle(self) -> float:
        return self.policy.drop.settle if self.settle_override is None else self.settle_override

    def _staging(self, box: Path) -> Path:
        return box.parent / f".{box.name}.int8wb-staging"

    # -- logging --------------------------------------------------------------------------------
    def log(self, name: str, state: str, detail: str = "") -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {name}: {state}" + (f" ({detail})" if detail else "")
        try:
            self._log_file.write(line + "\n")
        except ValueError:  # closed
            pass
        if self.echo is not None:
            self.echo(line)

    # -- database -------------------------------------------------------------------------------
    def _q(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _file(self, rel: str) -> sqlite3.Row | None:
        rows = self._q("SELECT * FROM drop_files WHERE xml = ?", (rel,))
        return rows[0] if rows else None

    def _set_file(self, rel: str, **fields) -> None:
        fields["updated"] = time.time()
        sets = ", ".join(f"{k} = ?" for k in fields)
        self._q(f"UPDATE drop_files SET {sets} WHERE xml = ?", (*fields.values(), rel))

    def _model(self, digest: str) -> sqlite3.Row | None:
        rows = self._q("SELECT * FROM drop_models WHERE hash = ?", (digest,))
        return rows[0] if rows else None

    def _set_model(self, digest: str, **fields) -> None:
        sets = ", ".join(f"{k} = ?" for k in fields)
        self._q(f"UPDATE drop_models SET {sets} WHERE hash = ?", (*fields.values(), digest))

    # -- lifecycle ------------------------------------------------------------------------------
    def _claim(self) -> None:
        """One watcher per inbox: two would take the same files and publish each model twice.
        An advisory lock the kernel drops with the process, so a crash never leaves it held."""
        if fcntl is None:
            return
        claim = open(self.state_dir / LOCK_NAME, "a+", encoding="utf-8")
        try:
            fcntl.flock(claim, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            claim.seek(0)
            owner = claim.read().strip()
            claim.close()
            self.close()
            raise CalibrationError(Problem(
                f"another watcher{f' (pid {owner})' if owner else ''} is already processing this inbox",
                path=str(self.inbox), rule="inbox-busy",
                fix="stop that watcher first, or leave the inbox to it: it picks up every model dropped here"))
        claim.seek(0)
        claim.truncate()
        claim.write(str(os.getpid()))
        claim.flush()
        self._claim_file = claim

    def start(self, watch: bool = True) -> "DropFolder":
        """Claims the inbox (CalibrationError `inbox-busy` when another watcher has it), then watches."""
        if self._started:
            return self
        self._claim()
        self._started = True
        if self.own_runner:
            # Rows left running by a watcher that died: its workers are stopped by reconcile() and
            # the models re-queued (a dead watcher is not the model's fault).
            for job in self.store.list(limit=10_000, states=("running",)):
                if job["owner"] and not alive(job["owner"]):
                    self._orphaned.add(job["id"])
            self.runner.start()
        self._recover()
        if watch:
            self._watch()
        self.log("inbox", "watching", f"{self.inbox}; outbox {self.policy.outbox}; failed {self.policy.failed}; "
                 f"{self.max_jobs} job(s) at a time")
        return self

    def _watch(self) -> None:
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:  # polling still works
            return
        wake = self._wake
        own = os.sep + STORE_DIR  # our own state (job database, logs, work folders) changes all the time

        class _Handler(FileSystemEventHandler):
            def on_any_event(self, event):  # noqa: N802 - watchdog's name
                if event.event_type in ("opened", "closed_no_write"):
                    return
                paths = [str(event.src_path), str(getattr(event, "dest_path", "") or "")]
                if all(own + os.sep in p or p.endswith(own) or not p for p in paths):
                    return
                wake.set()

        self._observer = Observer()
        self._observer.daemon = True
        self._observer.schedule(_Handler(), str(self.inbox), recursive=True)
        if self.policy_file.parent != self.inbox:
            self._observer.schedule(_Handler(), str(self.policy_file.parent), recursive=False)
        self._observer.start()

    def close(self, cancel_running: bool = True) -> None:
        """Stops watching; running jobs are cancelled and re-queued for the next start."""
        self._stop.set()
        self._wake.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(2)
            self._observer = None
        if self.own_runner and self._started:
            active = {r["job"]: r["hash"] for r in self._q(
                "SELECT * FROM drop_models WHERE state IN ('queued', 'running')") if r["job"]}
            self.runner.stop(cancel_running=cancel_running)
            for job_id, digest in active.items():
                job = self.store.get(job_id)
                if job and job["state"] == "cancelled":  # our own shutdown: run it again next time
                    self._set_model(digest, state="queued", job=None)
                    self.log(self._model(digest)["name"], "interrupted", "re-queued for the next start")
        self._started = False
        if self._claim_file is not None:
            self._claim_file.close()  # closing releases the lock
            self._claim_file = None
        with self._lock:
            self._db.close()
        if self.own_runner:
            self.store.close()
        self._log_file.close()

    def stop(self) -> None:
        """Asks `run()` to return (thread-safe; also what SIGTERM does under the CLI)."""
        self._stop.set()
        self._wake.set()

    def _recover(self) -> None:
        """Staging folders of models that are not being processed are leftovers of a crash."""
        active = {r["hash"][:16] for r in self._q("SELECT hash FROM drop_models WHERE state IN ('queued', 'running')")}
        for box in (self.policy.outbox, self.policy.failed):
            stage = self._staging(box)
            if stage.is_dir():
                for child in stage.iterdir():
                    if child.name[:16] not in active or box == self.policy.failed:
                        shutil.rmtree(child, ignore_errors=True)
        for child in (self.work.iterdir() if self.work.is_dir() else []):
            if child.name not in active:
                shutil.rmtree(child, ignore_errors=True)

    # -- the loop -------------------------------------------------------------------------------
    def run(self, once: bool = False, timeout: float | None = None, watch: bool | None = None) -> int:
        """Processes the inbox; with `once`, what is there, then returns. 0 when nothing failed, else 1.

        Bounded: returns at `timeout` seconds (raising TimeoutError with `once`)."""
        self.start(watch=not once if watch is None else watch)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stop.is_set():
            try:
                self.scan()
            except (OSError, sqlite3.Error) as exc:  # a full disk or a locked store: say so, try again
                self.log("inbox", "error", f"{type(exc).__name__}: {exc}; retrying")
                time.sleep(1.0)
            if once and self.idle():
                break
            if deadline is not None and time.monotonic() >= deadline:
                if once:
                    raise TimeoutError(f"inbox {self.inbox} not processed after {timeout} s")
                break
            woke = self._wake.wait(self.poll if once else max(self.poll, min(self.settle / 2, 2.0)))
            if woke and not self._stop.is_set():
                time.sleep(0.1)  # debounce a burst of events into one pass
            self._wake.clear()
        return 1 if self.failures else 0

    def idle(self) -> bool:
        """Nothing settling, queued or running (incomplete pairs are left for a later run)."""
        if self.policy_problems:
            return True
        busy = self._q("SELECT COUNT(*) FROM drop_files WHERE state IN ('settling', 'processing', 'waiting')")[0][0]
        active = self._q("SELECT COUNT(*) FROM drop_models WHERE state IN ('queued', 'running')")[0][0]
        return busy == 0 and active == 0

    def scan(self) -> None:
        """One pass: reload a changed policy, look at every model file, advance every job."""
        self._reload_policy()
        now = time.time()
        seen: set[str] = set()
        for xml in self._walk():
            rel = xml.relative_to(self.inbox).as_posix()
            seen.add(rel)
            sig = _stat_sig(xml)
            if sig is None:
                continue
            row = self._file(rel)
            sig_text = json.dumps(sig)
            if row is None:
                self._q("INSERT INTO drop_files (xml, name, sig, since, state, updated) VALUES (?, ?, ?, ?, ?, ?)",
                        (rel, entry_name(rel), sig_text, now, "settling", now))
                self.log(entry_name(rel), "seen", rel)
                continue
            if row["sig"] != sig_text:
                was_final = row["state"] in FILE_FINAL
                self._set_file(rel, sig=sig_text, since=now, hash=None, state="settling", note=None)
                if was_final:
                    self.log(row["name"], "changed", "it will be processed again if its content is new")
                continue
            if row["state"] not in FILE_FINAL and not self.policy_problems:
                try:
                    self._advance(xml, rel, row, now)
                except OSError as exc:  # vanished or unreadable mid-way: look again next pass
                    self._set_file(rel, state="settling", since=now, note=f"{type(exc).__name__}: {exc}")
        for row in self._q("SELECT * FROM drop_files WHERE state IN ('settling', 'incomplete', 'processing', "
                           "'waiting')"):
            if row["xml"] in seen:
                continue
            if row["state"] in ("settling", "incomplete"):  # removed before it was taken
                self._q("DELETE FROM drop_files WHERE xml = ?", (row["xml"],))
                self.log(row["name"], "gone", "removed before it was complete")
                continue
            model = self._model(row["hash"]) if row["hash"] else None
            if model is None or model["state"] in ("done", "failed"):  # removed while processed (the
                if model is not None and model["xml"] == row["xml"]:  # snapshot was calibrated)
                    self._set_file(row["xml"], state=model["state"])
                else:
                    self._q("DELETE FROM drop_files WHERE xml = ?", (row["xml"],))
                    self.log(row["name"], "gone", "removed while it waited")
        self._advance_jobs()

    def _walk(self):
        skip = {self.policy.outbox, self.policy.failed, self._staging(self.policy.outbox),
                self._staging(self.policy.failed)}
        for root, dirs, files in os.walk(self.inbox):
            here = Path(root)
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and here / d not in skip)
            for name in sorted(files):
                if name.endswith(".xml") and not name.startswith("."):
                    yield here / name

    def _reload_policy(self) -> None:
        sig = _stat_sig(self.policy_file)
        if sig == self._policy_sig:
            return
        self._policy_sig = sig
        try:
            self.policy = load_policy(self.policy_file)
        except CalibrationError as exc:
            self.policy_problems = exc.problems
            for p in exc.problems:
                self.log("policy", "invalid", str(p))
            self.log("policy", "paused", "no new model is taken until the policy is fixed")
            return
        if self.policy_problems:
            self.log("policy", "valid again", "resuming")
        else:
            self.log("policy", "reloaded", "applies to models taken from now on")
        self.policy_problems = []

    # -- one file -------------------------------------------------------------------------------
    def _advance(self, xml: Path, rel: str, row: sqlite3.Row, now: float) -> None:
        name, state = row["name"], row["state"]
        if state in ("processing", "waiting"):
            model = self._model(row["hash"])
            if model is None:  # forgotten (should not happen): start over
                self._set_file(rel, state="settling", since=now)
            elif model["state"] in ("done", "failed"):
                if model["xml"] == rel:
                    self._set_file(rel, state=model["state"])
                else:
                    self._duplicate(xml, rel, row, model)
            return
        if now - row["since"] < self.settle:
            return
        ir = _is_ir_head(xml)
        if ir is False:
            self._set_file(rel, state="ignored", note="not an OpenVINO IR")
            self.log(name, "ignored", "not an OpenVINO IR .xml")
            return
        from .inspection import inspect_model  # light: expat and regular expressions
        complete, why = False, "the .bin is missing or still being written"
        try:
            complete = inspect_model(xml).weights_complete if ir else False
        except CalibrationError as exc:
            why = "; ".join(p.message for p in exc.problems)
            if _finished(xml) and any(p.rule == "corrupt-model" for p in exc.problems):
                # The whole document is there (it closes </net>) and still does not parse: no
                # amount of waiting mends it, so say so now rather than after incomplete_after.
                self._refuse_file(xml, rel, row, None)
                return
        if not complete:
            if state != "incomplete":
                self._set_file(rel, state="incomplete", note=why)
                self.log(name, "waiting", f"incomplete: {why}")
            if now - row["since"] >= self.policy.drop.incomplete_after:
                self._refuse_file(xml, rel, row, None)
            return
        if row["hash"] is None:
            digest = content_hash(xml)
            if json.dumps(_stat_sig(xml)) != row["sig"]:
                return  # changed while hashing: the next pass sees a new signature
            self._set_file(rel, hash=digest)
        else:
            digest = row["hash"]
        model = self._model(digest)
        if model is None:
            self._take(xml, rel, row, digest)
        elif model["state"] in MODEL_ACTIVE:
            if model["xml"] == rel:
                self._set_file(rel, state="processing")
            else:
                self._set_file(rel, state="waiting", hash=digest, note=f"same content as {model['name']}")
                self.log(name, "waiting", f"same content as {model['name']}, which is being processed")
        elif model["xml"] == rel:
            self._set_file(rel, state=model["state"], hash=digest, note="already processed")
        else:
            self._duplicate(xml, rel, self._file(rel), model)

    def _take(self, xml: Path, rel: str, row: sqlite3.Row, digest: str) -> None:
        from .checker import check_model

        name = row["name"]
        errors = [p for p in check_model(xml) if p.severity == "error"]
        now = time.time()
        self._q("INSERT INTO drop_models (hash, name, xml, state, created) VALUES (?, ?, ?, 'queued', ?)",
                (digest, name, rel, now))
        if errors:
            self._set_file(rel, hash=digest, state="processing")
            self._publish_failure(digest, "refused", errors)
            self._set_file(rel, state="failed")
            return
        self._set_file(rel, hash=digest, state="processing")
        self.log(name, "taken", f"sha256 {digest[:12]}")
        self._submit(digest)

    def _submit(self, digest: str) -> None:
        """Snapshots the model (if not already) and queues its job."""
        model = self._model(digest)
        name, rel = model["name"], model["xml"]
        snap = self.work / digest[:16]
        xml = self.inbox / rel
        snap_xml = snap / xml.name
        if not (snap_xml.is_file() and snap_xml.with_suffix(".bin").is_file()):
            shutil.rmtree(snap, ignore_errors=True)
            try:
                copied = content_hash(xml, copy_to=snap)
            except OSError as exc:
                copied = f"unreadable: {exc}"
            if copied != digest:  # changed or removed since it was hashed
                shutil.rmtree(snap, ignore_errors=True)
                self._q("DELETE FROM drop_models WHERE hash = ?", (digest,))
                self._set_file(rel, state="settling", since=time.time(), hash=None)
                self.log(name, "changed", "its content changed while it was copied; taken again once settled")
                return
        out = self._staging(self.policy.outbox) / digest[:16]
        shutil.rmtree(out, ignore_errors=True)  # a previous attempt's outputs, if any
        out.parent.mkdir(parents=True, exist_ok=True)
        self.spec_dir.mkdir(parents=True, exist_ok=True)
        spec_file = self.spec_dir / f"{digest[:16]}.toml"
        spec_file.write_text(f"# generated by int8wb watch from {self.policy.path} for {rel}\n"
                             + spec_text(self.policy, snap_xml, out), encoding="utf-8")
        try:
            job_id = self.runner.submit(spec_file)
        except CalibrationError as exc:
            self._publish_failure(digest, "refused", self._policy_problems(exc.problems, digest))
            return
        self._set_model(digest, state="queued", job=job_id)
        self.log(name, "queued", f"job {job_id}")

    def _duplicate(self, xml: Path, rel: str, row: sqlite3.Row, model: sqlite3.Row) -> None:
        """Same content as a model already processed: an entry that points at its result."""
        name = row["name"]
        ok = model["state"] == "done"
        box = self.policy.outbox if ok else self.policy.failed
        stage = self._staging(box) / f"dup-{uuid.uuid4().hex[:12]}"
        stage.mkdir(parents=True)
        source = Path(model["entry"]) if model["entry"] else None
        note = (f"{name} has the same content (sha256 {model['hash']}) as {model['name']}, "
                f"{'calibrated' if ok else 'refused or failed'} before; it is not processed again.\n")
        if ok and source is not None and source.is_dir():
            for f in source.iterdir():
                if f.is_file() and f.name != "drop.json":
                    _link_or_copy(f, stage / f.name)
            note += f"The files here are the result of {model['name']}: {source}\n"
        elif not ok:
            note += f"Its reason:\n{model['reason'] or ''}\n"
        (stage / ("duplicate.txt" if ok else "reason.txt")).write_text(note, encoding="utf-8")
        manifest = {"name": name, "source": str(xml), "sha256": model["hash"], "state": "duplicate",
                    "duplicate_of": model["name"], "entry_of_original": model["entry"], "time": time.time()}
        (stage / "drop.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        self._maybe_move_originals(stage, xml, row["sig"])
        dest = box / name
        _install(stage, dest)
        self._remove_stale(name, keep=box)
        self._set_file(rel, state="duplicate", hash=model["hash"], note=f"same content as {model['name']}")
        self.log(name, "duplicate", f"same content as {model['name']}; {dest}")
        if self.policy.drop.move:
            self._remove_originals(xml, row["sig"])

    def _refuse_file(self, xml: Path, rel: str, row: sqlite3.Row, digest: str | None) -> None:
        """A pair that never became complete and readable within incomplete_after."""
        from .checker import check_model

        problems = [p for p in check_model(xml) if p.severity == "error"] or [Problem(
            f"the pair stayed incomplete for {self.policy.drop.incomplete_after:g} s: {row['note'] or ''}",
            path=str(xml), rule="truncated-weights", fix="copy the .xml and its .bin again")]
        self._write_failed(row["name"], xml, row["sig"], digest, "refused", problems)
        self._set_file(rel, state="failed", note=problems[0].message)

    # -- jobs -----------------------------------------------------------------------------------
    def _advance_jobs(self) -> None:
        for model in self._q("SELECT * FROM drop_models WHERE state IN ('queued', 'running')"):
            digest = model["hash"]
            if model["job"] is None:  # interrupted by a clean stop, or never submitted
                if not self.policy_problems:
                    self._submit(digest)
                continue
            job = self.store.get(model["job"])
            if job is None:
                self._set_model(digest, job=None)
                continue
            if job["state"] == "running" and model["state"] == "queued":
                self._set_model(digest, state="running")
                self.log(model["name"], "running", f"job {job['id']}, worker pid {job['pid']}")
            if job["state"] not in FINAL:
                continue
            if job["state"] == "done":
                self._publish_result(digest, job)
                continue
            problems = (job.get("summary") or {}).get("problems") if isinstance(job.get("summary"), dict) else None
            if job["id"] in self._orphaned:
                self._orphaned.discard(job["id"])
                self.log(model["name"], "re-queued", f"the watcher that ran job {job['id']} died")
                self._submit(digest)
            elif not problems and job["state"] == "failed" and model["attempts"] < self.policy.drop.retries:
                self._set_model(digest, attempts=model["attempts"] + 1)
                self.log(model["name"], "retrying", f"job {job['id']} failed: {job['error']}")
                self._submit(digest)
            else:
                found = [Problem(**p) for p in problems] if problems else [Problem(
                    f"calibration failed: {job['error']}", path=str(self.inbox / model["xml"]), rule="job-failed",
                    fix=f"see the worker log {self.state_dir / 'logs' / (job['id'] + '.log')}")]
                self._publish_failure(digest, "failed", self._policy_problems(found, digest), job)

    def _policy_problems(self, problems: list[Problem], digest: str) -> list[Problem]:
        """Problems the worker found in the generated spec, located in the policy (or the model) instead."""
        model = self._model(digest)
        original = self.inbox / model["xml"]
        snap = str(self.work / digest[:16] / original.name)
        generated = str(self.spec_dir / f"{digest[:16]}.toml")
        out = []
        for p in problems:
            message = p.message.replace(snap, str(original))
            path, line = p.path, p.line
            if p.path == generated:
                if p.key and p.key.split(".")[0] == "model":
                    path, line = str(original), None
                else:
                    path = str(self.policy.path)
                    line = line_of(self.policy.text, tuple(p.key.split("."))) if p.key else None
            elif p.path == snap:
                path = str(original)
            out.append(Problem(message, path=path, line=line, key=p.key, rule=p.rule, severity=p.severity,
                               fix=p.fix))
        return out

    def _publish_result(self, digest: str, job: dict) -> None:
        model = self._model(digest)
        name, original = model["name"], self.inbox / model["xml"]
        stage = self._staging(self.policy.outbox) / digest[:16]
        dest = self.policy.outbox / name
        if not stage.is_dir():
            # published before a crash, after the rename but before this row was updated?
            manifest = dest / "drop.json"
            if manifest.is_file() and json.loads(manifest.read_text()).get("sha256") == digest:
                self._finish(digest, "done", dest, None)
                return
            self._set_model(digest, attempts=model["attempts"] + 1)
            self.log(name, "retrying", "the finished job's outputs are gone")
            self._submit(digest)
            return
        summary = job.get("summary") if isinstance(job.get("summary"), dict) else {}
        outputs = {}
        for role, path in (summary.get("output") or {}).items():
            outputs[role] = str(dest / Path(path).name)
        manifest = {"name": name, "source": str(original), "sha256": digest, "state": "done", "job": job["id"],
                    "policy": str(self.policy.path), "finished": job.get("finished"), "outputs": outputs,
                    "drop": summary.get("drop"), "accuracy": summary.get("accuracy"),
                    "speedup": summary.get("speedup"), "model_size": summary.get("model_size")}
        (stage / "drop.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")
        sig = self._file(model["xml"])["sig"] if self._file(model["xml"]) else None
        self._maybe_move_originals(stage, original, sig, snapshot=self.work / digest[:16])
        _install(stage, dest)
        self._remove_stale(name, keep=self.policy.outbox)
        self._finish(digest, "done", dest, None)
        drop = summary.get("drop")
        speed = (summary.get("speedup") or {}).get("vs_default")
        self.log(name, "done", f"{dest}" + (f"; drop {drop * 100:.2f} pp" if drop is not None else "")
                 + (f", {speed:.2f}x vs FP32 default" if speed else ""))
        if self.policy.drop.move and sig:
            self._remove_originals(original, sig)

    def _publish_failure(self, digest: str, verb: str, problems: list[Problem], job: dict | None = None) -> None:
        model = self._model(digest)
        original = self.inbox / model["xml"]
        row = self._file(model["xml"])
        extra = self._staging(self.policy.outbox) / digest[:16]
        reason = self._write_failed(model["name"], original, row["sig"] if row else None, digest, verb, problems,
                                    job, keep=extra if extra.is_dir() else None)
        shutil.rmtree(extra, ignore_errors=True)
        self._finish(digest, "failed", self.policy.failed / model["name"], reason)

    def _write_failed(self, name: str, original: Path, sig: str | None, digest: str | None, verb: str,
                      problems: list[Problem], job: dict | None = None, keep: Path | None = None) -> str:
        stage = self._staging(self.policy.failed) / f"{(digest or 'x' * 16)[:16]}-{uuid.uuid4().hex[:8]}"
        stage.mkdir(parents=True)
        lines = [str(p) for p in problems]
        reason = "\n".join(lines)
        header = [f"{name}: {verb} at {time.strftime('%Y-%m-%d %H:%M:%S')}", f"model: {original}"]
        if digest:
            header.append(f"sha256: {digest}")
        if job is not None:
            header.append(f"job: {job['id']} (worker log: {self.state_dir / 'logs' / (job['id'] + '.log')})")
        (stage / "reason.txt").write_text("\n".join(header) + "\n\n" + reason + "\n", encoding="utf-8")
        if keep is not None:  # e.g. an over-budget attempt is worth keeping
            for f in keep.iterdir():
                if f.is_file() and not f.name.startswith("."):
                    shutil.move(str(f), str(stage / f.name))
        manifest = {"name": name, "source": str(original), "sha256": digest, "state": verb,
                    "problems": [p.to_dict() for p in problems], "job": job["id"] if job else None,
                    "time": time.time()}
        (stage / "drop.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        self._maybe_move_originals(stage, original, sig, snapshot=self.work / digest[:16] if digest else None)
        _install(stage, self.policy.failed / name)
        self._remove_stale(name, keep=self.policy.failed)
        self.failures.append(name)
        self.log(name, verb, lines[0] if len(lines) == 1 else f"{len(lines)} problems; "
                 f"{self.policy.failed / name / 'reason.txt'}")
        if self.policy.drop.move and sig:
            self._remove_originals(original, sig)
        return reason

    def _finish(self, digest: str, state: str, entry: Path, reason: str | None) -> None:
        self._set_model(digest, state=state, entry=str(entry), reason=reason, finished=time.time())
        model = self._model(digest)
        row = self._file(model["xml"])
        if row is not None and row["hash"] == digest:
            self._set_file(model["xml"], state=state)
        if state == "done":
            self.published.append(model["name"])
        shutil.rmtree(self.work / digest[:16], ignore_errors=True)
        (self.spec_dir / f"{digest[:16]}.toml").unlink(missing_ok=True)

    def _remove_stale(self, name: str, keep: Path) -> None:
        """An entry of the same name in the other folder is an older content's: it goes."""
        other = self.policy.failed if keep == self.policy.outbox else self.policy.outbox
        stale = other / name
        if stale.is_dir():
            gone = other / f".{name}.replaced-{uuid.uuid4().hex[:8]}"
            os.rename(stale, gone)
            shutil.rmtree(gone, ignore_errors=True)

    # -- move policy ----------------------------------------------------------------------------
    def _maybe_move_originals(self, stage: Path, original: Path, sig: str | None, snapshot: Path | None = None):
        """With `move = true` the entry keeps a copy of the original pair in source/ (removed from the inbox
        only after the entry is in place)."""
        if not self.policy.drop.move or sig is None:
            return
        src = snapshot if snapshot is not None and (snapshot / original.name).is_file() else original.parent
        (stage / "source").mkdir(exist_ok=True)
        for f in (original.name, original.with_suffix(".bin").name):
            if (src / f).is_file():
                shutil.copy2(src / f, stage / "source" / f)

    def _remove_originals(self, original: Path, sig: str) -> None:
        if json.dumps(_stat_sig(original)) != sig:
            return  # changed since: it is a new drop, not ours to remove
        original.unlink(missing_ok=True)
        original.with_suffix(".bin").unlink(missing_ok=True)
        self._q("DELETE FROM drop_files WHERE xml = ?", (original.relative_to(self.inbox).as_posix(),))


# -- reading the state (int8wb jobs INBOX) -------------------------------------------------------

def inbox_rows(folder: str | os.PathLike) -> list[dict] | None:
    """One row per model file of an inbox with its job, or None when `folder` is not an inbox."""
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


def main(argv: list[str] | None = None) -> int:
    """`python -m int8wb.calibration.dropfolder INBOX [--once]` (the same as `int8wb watch`)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m int8wb.calibration.dropfolder")
    add_arguments(parser)
    return run_cli(parser.parse_args(argv))


def add_arguments(parser) -> None:
    parser.add_argument("inbox", help=f"the inbox folder (holding {POLICY_NAME})")
    parser.add_argument("--once", action="store_true", help="process what is there, then exit (cron, CI)")
    parser.add_argument("--policy", help=f"the policy file (default INBOX/{POLICY_NAME})")
    parser.add_argument("--jobs", type=int, help="calibrations at a time (default: [drop] jobs, 1)")
    parser.add_argument("--timeout", type=float, help="give up after this many seconds")
    parser.add_argument("-q", "--quiet", action="store_true", help="log to INBOX/.int8wb/dropfolder.log only")
    parser.add_argument("--trust", action="store_true",
                        help="run the policy's custom metric (Python code); also INT8WB_TRUST=1")


def run_cli(args) -> int:
    """Exit status: 0 all succeeded, 1 any refused or failed (or an invalid policy), 2 usage."""
    def echo(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        drop = DropFolder(args.inbox, policy=args.policy, jobs=args.jobs, echo=None if args.quiet else echo,
                          trust_custom_metrics=trusted(args.trust))
    except CalibrationError as exc:
        for p in exc.problems:
            print(f"error: {p}", file=sys.stderr)
        return 1
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda *_: drop.stop())
    try:
        status = drop.run(once=args.once, timeout=args.timeout)
    except TimeoutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        status = 1
    finally:
        drop.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if args.once:
        left = [r for r in inbox_rows(drop.inbox) or [] if r["state"] in ("incomplete", "settling")]
        print(f"{len(drop.published)} calibrated, {len(drop.failures)} refused or failed"
              + (f", {len(left)} incomplete left for a later run" if left else ""), file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
