"""The int8wb language server (pygls 2, stdio): every protocol handler lives in this file.

Handlers are thin: problems come from `calibration.checker`, model facts from
`calibration.inspection`, jobs from `calibration.jobs` (worker subprocesses). Nothing here imports
openvino or nncf, so the daemon stays small; blocking work runs in threads, never on the event loop.

What it does
- watches every workspace folder (one watchdog observer, one dispatching handler per root,
  debounced), plus `workspace/didChangeWatchedFiles` and a periodic rescan for lost events;
- publishes diagnostics for spec files (from the editor buffer when open) and IR models
  (eligibility), code = the rule id, source = "int8wb"; a model pair is checked once complete;
- commands int8wb.calibrate / cancel / jobs / compare / check / openReport / status;
- work-done progress (cancellable) when the client supports it, else window/logMessage;
- code lens, hover on `model = ...`, code actions for fixable rules.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInternalError, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.uris import from_fs_path, to_fs_path

from int8wb.calibration.inspection import is_ir
from int8wb.calibration.jobs import FINAL, STORE_DIR, JobStore, Runner, Slots
from int8wb.calibration.spec import SPEC_SUFFIX
from int8wb.calibration.trust import trusted

log = logging.getLogger("int8wb.daemon")

SOURCE = "int8wb"
DEBOUNCE_S = float(os.environ.get("INT8WB_DEBOUNCE_SECONDS", "0.15"))
SETTLE_S = float(os.environ.get("INT8WB_SETTLE_SECONDS", "1.0"))  # an incomplete pair is re-checked after this
RESCAN_S = float(os.environ.get("INT8WB_RESCAN_SECONDS", "30"))
MAX_JOBS = int(os.environ.get("INT8WB_MAX_JOBS", "1"))
SEVERITY = {"error": types.DiagnosticSeverity.Error, "warning": types.DiagnosticSeverity.Warning,
            "info": types.DiagnosticSeverity.Information}
_MODEL_LINE = re.compile(r"^\s*model\s*=")
_FIXES = {  # rule -> (key regex, replacement value, title)
    "unannotated-accuracy-aware": (r"method", '"default"', 'Set method = "default"'),
    "device-without-int8": (r"device", '"CPU"', 'Set device = "CPU"'),
    "device-missing": (r"device", '"CPU"', 'Set device = "CPU"'),
}
COMMANDS = ["int8wb.calibrate", "int8wb.cancel", "int8wb.jobs", "int8wb.compare", "int8wb.check",
            "int8wb.openReport", "int8wb.status"]


def _kind(path: Path) -> str | None:
    name = path.name
    if name.endswith(SPEC_SUFFIX):
        return "spec"
    if name.endswith(".xml"):
        return "model"
    if name.endswith(".bin"):
        return "weights"
    return None


def _hidden(path: Path, root: Path) -> bool:
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        parts = path.parts
    return any(p.startswith(".") for p in parts)



def _signature(path: Path) -> tuple:
    out = []
    for p in (path, path.with_suffix(".bin")) if path.suffix == ".xml" else (path,):
        try:
            st = p.stat()
            out.append((st.st_size, st.st_mtime_ns))
        except OSError:
            out.append(None)
    return tuple(out)


class _Dispatch:
    """The watchdog handler of one root: forwards relevant paths to the server's loop."""

    def __init__(self, server: "Int8Server", root: Path):
        self.server, self.root = server, root

    def dispatch(self, event) -> None:  # watchdog calls this for every event
        if event.event_type in ("opened", "closed_no_write"):
            return
        if event.is_directory and event.event_type not in ("moved", "deleted"):
            return
        for raw in (event.src_path, getattr(event, "dest_path", "") or ""):
            if raw:
                path = Path(os.fsdecode(raw))
                if event.is_directory or _kind(path):
                    self.server.from_thread(self.server.path_changed, path, event.is_directory)


class Int8Server(LanguageServer):
    def __init__(self) -> None:
        super().__init__("int8wb", "0.1.0", text_document_sync_kind=types.TextDocumentSyncKind.Full)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.roots: dict[Path, dict] = {}      # root -> {"store", "runner", "watch"}
        self.observer = None
        self.published: dict[str, list] = {}   # uri -> last diagnostics
        self.known: dict[Path, tuple] = {}     # file -> signature at its last check
        self.pending: dict[Path, tuple] = {}   # file -> (signature, first seen) while incomplete
        self.timers: dict[Path, asyncio.TimerHandle] = {}
        self.progress_tokens: dict[str, str] = {}  # token -> job id
        self.job_tokens: dict[str, str] = {}       # job id -> token
        self.last_phase: dict[str, str] = {}
        self.hover_cache: dict[tuple, str] = {}
        self._rescan_task: asyncio.Task | None = None
        self.slots = Slots(MAX_JOBS)  # INT8WB_MAX_JOBS calibrations at a time over all folders

    # -- plumbing -----------------------------------------------------------------------------
    def from_thread(self, fn, *args) -> None:
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(fn, *args)

    def supports_progress(self) -> bool:
        window = self.client_capabilities.window
        return bool(window and window.work_done_progress)

    def log(self, message: str, kind=types.MessageType.Info) -> None:
        self.window_log_message(types.LogMessageParams(type=kind, message=message))

    def root_of(self, path: Path) -> Path:
        best = None
        for root in self.roots:
            if path == root or root in path.parents:
                if best is None or len(root.parts) > len(best.parts):
                    best = root
        return best or path.parent

    def runner_for(self, path: Path) -> Runner:
        root = self.root_of(path)
        if root not in self.roots:
            self.add_root(root, watch=False)
        return self.roots[root]["runner"]

    # -- roots and watching -------------------------------------------------------------------
    def add_root(self, root: Path, watch: bool = True) -> None:
        root = root.resolve()
        if root in self.roots or not root.is_dir():
            return
        store = JobStore(root)
        runner = Runner(store, MAX_JOBS, on_change=lambda job: self.from_thread(self.job_changed, job),
                        trust_custom_metrics=trusted(), slots=self.slots).start()
        entry = {"store": store, "runner": runner, "watch": None, "drop": None}
        self.roots[root] = entry
        if watch:
            self.start_inbox(root, entry)
        if watch:
            if self.observer is None:
                from watchdog.observers import Observer
                self.observer = Observer()
                self.observer.daemon = True
                self.observer.start()
            try:
                entry["watch"] = self.observer.schedule(_Dispatch(self, root), str(root), recursive=True)
            except OSError as exc:
                self.log(f"int8wb: cannot watch {root}: {exc}", types.MessageType.Warning)
            asyncio.ensure_future(self.rescan([root]))

    def start_inbox(self, root: Path, entry: dict) -> None:
        """A workspace folder holding a drop policy is also an inbox (calibration.dropfolder), run in a
        thread with this root's store and runner."""
        from int8wb.calibration.dropfolder import DropFolder, is_inbox
        from int8wb.calibration.problems import CalibrationError

        if not is_inbox(root):
            return
        try:
            drop = DropFolder(root, store=entry["store"], runner=entry["runner"],
                              echo=lambda line: self.from_thread(self.log, f"int8wb inbox: {line}"))
        except CalibrationError as exc:
            self.log(f"int8wb: {root} holds an invalid drop policy: {exc}", types.MessageType.Warning)
            return
        try:
            drop.start()
        except CalibrationError as exc:  # inbox-busy: an `int8wb watch` already serves it
            self.log(f"int8wb: {root}: {exc}; the daemon leaves this inbox to it", types.MessageType.Info)
            return
        entry["drop"] = drop
        threading.Thread(target=lambda: (drop.run(), drop.close()), name=f"int8wb-inbox-{root.name}",
                         daemon=True).start()

    def remove_root(self, root: Path) -> None:
        root = root.resolve()
        entry = self.roots.pop(root, None)
        if entry is None:
            return
        if entry.get("drop") is not None:
            entry["drop"].stop()
        if entry["watch"] is not None and self.observer is not None:
            self.observer.unschedule(entry["watch"])
        entry["runner"].stop()
        for uri in list(self.published):
            p = Path(to_fs_path(uri))
            if root in p.parents and not any(r in p.parents for r in self.roots):
                self.publish(uri, [])
        for p in [p for p in self.known if root in p.parents]:
            self.known.pop(p, None)

    def path_changed(self, path: Path, is_dir: bool = False) -> None:
        """A file event (watcher, didChangeWatchedFiles or rescan); debounced per file."""
        if is_dir:  # a folder moved or deleted: reconcile what we knew below it
            for known in [p for p in self.known if path in p.parents]:
                self.schedule(known)
            asyncio.ensure_future(self.rescan([path])) if path.is_dir() else None
            return
        root = self.root_of(path)
        if _hidden(path, root):
            return
        kind = _kind(path)
        if kind == "weights":
            path = path.with_suffix(".xml")
            kind = "model"
        if kind is None:
            return
        self.schedule(path)

    def _loop(self) -> asyncio.AbstractEventLoop:
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        return self.loop

    def schedule(self, path: Path, delay: float = DEBOUNCE_S) -> None:
        old = self.timers.pop(path, None)
        if old is not None:
            old.cancel()
        self.timers[path] = self._loop().call_later(delay, lambda: asyncio.ensure_future(self.refresh(path)))

    async def refresh(self, path: Path) -> None:
        self.timers.pop(path, None)
        uri = from_fs_path(str(path))
        kind = _kind(path)
        if not path.exists():
            self.known.pop(path, None)
            self.pending.pop(path, None)
            doc = self.workspace.text_documents.get(uri)
            if kind == "spec" and doc is not None:
                await self.check_spec_doc(uri)  # still open: the buffer is what counts
            elif uri in self.published:
                self.publish(uri, [])
            return
        sig = _signature(path)
        if kind == "spec":
            self.known[path] = sig
            if uri in self.workspace.text_documents:
                return  # the editor's buffer wins; didChange/didSave drive it
            problems = await asyncio.to_thread(_check_spec, path, None)
            self.publish(uri, _diagnostics(problems, path, None))
            return
        if not is_ir(path):
            if self.unsettled(path, sig):  # maybe an IR still being written: look again later
                return
            self.known[path] = sig
            if uri in self.published:
                self.publish(uri, [])
            return
        problems, complete = await asyncio.to_thread(_check_model, path)
        if not complete and self.unsettled(path, sig):
            return  # a half-written pair is never reported; looked at again once the copy settles
        self.known[path] = sig
        self.pending.pop(path, None)
        self.publish(uri, _diagnostics(problems, path, None))
        await self.recheck_specs_using(path)

    def unsettled(self, path: Path, sig: tuple) -> bool:
        """True (and a later look scheduled) until `sig` has been unchanged for SETTLE_S."""
        now = time.monotonic()
        seen = self.pending.get(path)
        if seen is None or seen[0] != sig:
            self.pending[path] = (sig, now)
            self.schedule(path, SETTLE_S)
            return True
        if now - seen[1] < SETTLE_S:
            self.schedule(path, SETTLE_S - (now - seen[1]))
            return True
        return False

    async def recheck_specs_using(self, model: Path) -> None:
        """Open specs whose model just changed get fresh diagnostics."""
        for uri, doc in list(self.workspace.text_documents.items()):
            if uri.endswith(SPEC_SUFFIX) and model.name in doc.source:
                self.schedule_spec(uri, 0.0)

    async def rescan(self, roots: list[Path] | None = None) -> None:
        """Reconciliation: every spec/model below the roots whose signature changed, and every
        file we knew that is gone, is checked again (catches events the watcher lost)."""
        roots = roots or list(self.roots)
        found = await asyncio.to_thread(_walk, roots)
        for path, sig in found.items():
            if self.known.get(path) != sig:
                self.schedule(path, 0.0)
        for path in list(self.known):
            if path not in found and any(r == path or r in path.parents for r in roots) and not path.exists():
                self.schedule(path, 0.0)

    async def rescan_forever(self) -> None:
        while True:
            await asyncio.sleep(RESCAN_S)
            try:
                await self.rescan()
            except Exception as exc:  # noqa: BLE001
                log.exception("rescan failed: %s", exc)

    # -- spec documents -----------------------------------------------------------------------
    def schedule_spec(self, uri: str, delay: float = DEBOUNCE_S) -> None:
        key = Path("<doc>") / uri
        old = self.timers.pop(key, None)
        if old is not None:
            old.cancel()
        self.timers[key] = self._loop().call_later(delay, lambda: asyncio.ensure_future(self.check_spec_doc(uri)))

    async def check_spec_doc(self, uri: str) -> None:
        self.timers.pop(Path("<doc>") / uri, None)
        doc = self.workspace.text_documents.get(uri)
        path = Path(to_fs_path(uri))
        if doc is None:
            return await self.refresh(path)
        text, version = doc.source, doc.version
        problems = await asyncio.to_thread(_check_spec, path, text)
        current = self.workspace.text_documents.get(uri)
        if current is not None and current.version != version:
            return  # a newer edit is on its way
        self.publish(uri, _diagnostics(problems, path, text), version)

    def publish(self, uri: str, diagnostics: list, version: int | None = None) -> None:
        if not diagnostics and uri not in self.published:
            return
        if diagnostics:
            self.published[uri] = diagnostics
        else:
            self.published.pop(uri, None)
        self.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics, version=version))

    # -- jobs ---------------------------------------------------------------------------------
    def find_job(self, job_id: str) -> tuple[dict, Runner] | None:
        for entry in self.roots.values():
            job = entry["store"].get(job_id)
            if job is not None:
                return job, entry["runner"]
        return None

    def all_jobs(self) -> list[dict]:
        rows = [j for e in self.roots.values() for j in e["store"].list()]
        return sorted(rows, key=lambda j: j["created"], reverse=True)

    def job_changed(self, job: dict) -> None:
        """Runs on the loop for every state/progress change of any job."""
        job_id = job["id"]
        token = self.job_tokens.get(job_id)
        name = Path(job["spec"]).name
        if job["state"] in FINAL:
            message = _job_line(job)
            if token is not None:
                self.work_done_progress.end(token, types.WorkDoneProgressEnd(message=message))
                self.job_tokens.pop(job_id, None)
                self.progress_tokens.pop(token, None)
                self.work_done_progress.tokens.pop(token, None)
            kind = types.MessageType.Info if job["state"] == "done" else types.MessageType.Warning
            self.log(f"int8wb: {name}: {message}", kind)
            self.last_phase.pop(job_id, None)
            self.refresh_lenses()
            return
        if job["state"] != "running":
            return
        pct = int(job["percent"] or 0)
        phase = job["phase"] or "starting"
        if token is not None:
            self.work_done_progress.report(token, types.WorkDoneProgressReport(
                message=phase, percentage=pct, cancellable=True))
        elif self.last_phase.get(job_id) != phase:
            self.log(f"int8wb: {name}: job {job_id} {pct}% {phase}")
        if self.last_phase.get(job_id) != phase:
            self.last_phase[job_id] = phase
            self.refresh_lenses()

    def refresh_lenses(self) -> None:
        ws = self.client_capabilities.workspace
        if ws and ws.code_lens and ws.code_lens.refresh_support:
            self.workspace_code_lens_refresh(None)

    async def start_progress(self, job_id: str, title: str) -> None:
        if not self.supports_progress():
            self.log(f"int8wb: {title}: job {job_id} queued")
            return
        token = f"int8wb/job/{job_id}"
        try:
            await self.work_done_progress.create_async(token)
        except Exception as exc:  # noqa: BLE001  (the client refused: fall back to log messages)
            self.log(f"int8wb: {title}: job {job_id} queued ({exc})")
            return
        job = self.find_job(job_id)
        if job is not None and job[0]["state"] in FINAL:
            return
        self.job_tokens[job_id] = token
        self.progress_tokens[token] = job_id
        self.work_done_progress.begin(token, types.WorkDoneProgressBegin(
            title=title, message="queued", percentage=0, cancellable=True))


def _walk(roots: list[Path]) -> dict[Path, tuple]:
    out = {}
    for root in roots:
        if root.is_file():
            root = root.parent
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in files:
                if name.startswith("."):
                    continue
                p = Path(folder) / name
                if name.endswith(SPEC_SUFFIX) or (name.endswith(".xml") and is_ir(p)):
                    out[p] = _signature(p)
    return out


def _check_spec(path: Path, text: str | None):
    from int8wb.calibration.checker import check_spec
    return check_spec(path, text)


def _check_model(path: Path):
    """(problems, complete): complete is False while the pair may still be being copied."""
    from int8wb.calibration.checker import check_model
    problems = check_model(path, scanned=True)
    incomplete = {"missing-weights", "truncated-weights", "corrupt", "not-ir"}
    complete = not any(p.rule in incomplete for p in problems)
    return problems, complete


def _line_text(path: Path, text: str | None, line: int) -> str:
    if text is not None:
        lines = text.splitlines()
        return lines[line - 1] if 0 < line <= len(lines) else ""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for i, row in enumerate(fh, 1):
                if i == line:
                    return row.rstrip("\r\n")
    except OSError:
        pass
    return ""


def _diagnostics(problems, path: Path, text: str | None) -> list[types.Diagnostic]:
    out = []
    for p in problems:
        if p.path and Path(p.path).resolve() != path.resolve():
            continue  # located in another file: that file's diagnostics show it
        line = max(1, p.line or 1)
        length = len(_line_text(path, text, line))
        message = p.message + (f" (fix: {p.fix})" if p.fix else "")
        if p.key:
            message = f"{p.key}: {message}"
        out.append(types.Diagnostic(
            range=types.Range(start=types.Position(line=line - 1, character=0),
                              end=types.Position(line=line - 1, character=length)),
            message=message, severity=SEVERITY.get(p.severity, types.DiagnosticSeverity.Error),
            code=p.rule, source=SOURCE, data={"fix": p.fix, "key": p.key}))
    return out


def _job_line(job: dict) -> str:
    s = job.get("summary") or {}
    if job["state"] == "done":
        drop = s.get("drop")
        speed = s.get("speedup_vs_default")
        parts = [f"drop {drop * 100:.2f} pp" if isinstance(drop, (int, float)) else "drop ?",
                 f"{speed:.2f}x vs FP32 default" if isinstance(speed, (int, float)) else "speedup ?"]
        return "done: " + ", ".join(parts)
    return f"{job['state']}: {job.get('error') or ''}".strip()


# ---------------------------------------------------------------------------------------------
server = Int8Server()


def _path(arg: Any) -> Path:
    if isinstance(arg, dict):
        arg = arg.get("uri") or arg.get("path")
    if not isinstance(arg, str) or not arg:
        raise JsonRpcInvalidParams(message="expected a file URI or path as the first argument")
    return Path(to_fs_path(arg) if arg.startswith("file:") else arg).resolve()


def _first(args: tuple, what: str) -> Any:
    if not args:
        raise JsonRpcInvalidParams(message=f"missing argument: {what}")
    return args[0]


@server.feature(types.INITIALIZED)
async def initialized(ls: Int8Server, params: types.InitializedParams) -> None:
    ls.loop = asyncio.get_running_loop()
    folders = [Path(to_fs_path(f.uri)) for f in ls.workspace.folders.values()]
    if not folders and ls.workspace.root_path:
        folders = [Path(ls.workspace.root_path)]
    for folder in folders:
        ls.add_root(folder)
    ws = ls.client_capabilities.workspace
    if ws and ws.did_change_watched_files and ws.did_change_watched_files.dynamic_registration:
        watchers = [types.FileSystemWatcher(glob_pattern=g) for g in
                    ("**/*.xml", "**/*.bin", f"**/*{SPEC_SUFFIX}")]
        try:
            await ls.client_register_capability_async(types.RegistrationParams(registrations=[
                types.Registration(id="int8wb-watch", method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES,
                                   register_options=types.DidChangeWatchedFilesRegistrationOptions(watchers))]))
        except Exception as exc:  # noqa: BLE001
            log.warning("file watch registration refused: %s", exc)
    ls._rescan_task = asyncio.ensure_future(ls.rescan_forever())


@server.feature(types.SHUTDOWN)
def shutdown(ls: Int8Server, params: None) -> None:
    for entry in ls.roots.values():
        if entry.get("drop") is not None:
            entry["drop"].stop()
        entry["runner"].stop()
    if ls.observer is not None:
        ls.observer.stop()


@server.feature(types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS)
def folders_changed(ls: Int8Server, params: types.DidChangeWorkspaceFoldersParams) -> None:
    for f in params.event.removed:
        ls.remove_root(Path(to_fs_path(f.uri)))
    for f in params.event.added:
        ls.add_root(Path(to_fs_path(f.uri)))


@server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
def watched_files(ls: Int8Server, params: types.DidChangeWatchedFilesParams) -> None:
    for change in params.changes:
        ls.path_changed(Path(to_fs_path(change.uri)))


@server.feature(types.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: Int8Server, params: types.DidOpenTextDocumentParams) -> None:
    if params.text_document.uri.endswith(SPEC_SUFFIX):
        ls.schedule_spec(params.text_document.uri, 0.0)


@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: Int8Server, params: types.DidChangeTextDocumentParams) -> None:
    if params.text_document.uri.endswith(SPEC_SUFFIX):
        ls.schedule_spec(params.text_document.uri)


@server.feature(types.TEXT_DOCUMENT_DID_SAVE)
def did_save(ls: Int8Server, params: types.DidSaveTextDocumentParams) -> None:
    if params.text_document.uri.endswith(SPEC_SUFFIX):
        ls.schedule_spec(params.text_document.uri, 0.0)


@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: Int8Server, params: types.DidCloseTextDocumentParams) -> None:
    uri = params.text_document.uri
    if uri.endswith(SPEC_SUFFIX):
        ls.schedule(Path(to_fs_path(uri)), 0.0)  # back to what is on disk (or cleared if deleted)


@server.feature(types.WINDOW_WORK_DONE_PROGRESS_CANCEL)
def progress_cancel(ls: Int8Server, params: types.WorkDoneProgressCancelParams) -> None:
    job_id = ls.progress_tokens.get(str(params.token))
    found = ls.find_job(job_id) if job_id else None
    if found is not None:
        found[1].cancel(job_id)


# -- commands ---------------------------------------------------------------------------------
@server.command("int8wb.calibrate")
async def cmd_calibrate(ls: Int8Server, *args) -> str:
    spec = _path(_first(args, "spec URI"))
    if not spec.name.endswith(SPEC_SUFFIX):
        raise JsonRpcInvalidParams(message=f"not a calibration spec (*{SPEC_SUFFIX}): {spec}")
    if not spec.is_file():
        raise JsonRpcInvalidParams(message=f"spec not found: {spec}")
    doc = ls.workspace.text_documents.get(from_fs_path(str(spec)))
    if doc is not None and doc.source != spec.read_text(encoding="utf-8", errors="replace"):
        raise JsonRpcInvalidParams(message=f"{spec.name} has unsaved changes; save it before calibrating")
    problems = await asyncio.to_thread(_check_spec, spec, None)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise JsonRpcInvalidParams(message=f"{spec.name} cannot be calibrated: " +
                                   "; ".join(f"line {p.line}: {p.message}" for p in errors[:5]))
    runner = ls.runner_for(spec)
    try:
        job_id = await asyncio.to_thread(runner.submit, spec)
    except Exception as exc:  # noqa: BLE001
        raise JsonRpcInvalidParams(message=f"cannot queue {spec.name}: {exc}") from exc
    await ls.start_progress(job_id, f"Calibrating {spec.name}")
    ls.refresh_lenses()
    return job_id


@server.command("int8wb.cancel")
def cmd_cancel(ls: Int8Server, *args) -> dict:
    job_id = str(_first(args, "job id"))
    found = ls.find_job(job_id)
    if found is None:
        raise JsonRpcInvalidParams(message=f"no such job: {job_id}")
    job, runner = found
    if job["state"] in FINAL:
        return {"id": job_id, "cancelled": False, "state": job["state"]}
    return {"id": job_id, "cancelled": runner.cancel(job_id), "state": "cancelling"}


@server.command("int8wb.jobs")
def cmd_jobs(ls: Int8Server, *args) -> list[dict]:
    return ls.all_jobs()


@server.command("int8wb.compare")
async def cmd_compare(ls: Int8Server, *args) -> dict:
    """(spec URI): the spec's last calibration result. (model A URI, model B URI[, {device, batch,
    duration}]): any two IR models measured side by side, with an HTML report; run by the
    `int8wb compare` command line in a child process, so OpenVINO never loads in the daemon."""
    if len(args) < 2:
        spec = _path(_first(args, "spec URI"))
        root = ls.root_of(spec)
        entry = ls.roots.get(root)
        job = entry["store"].last_result(str(spec)) if entry else None
        if job is None:
            raise JsonRpcInvalidParams(message=f"no calibration result yet for {spec.name}; run int8wb.calibrate")
        return {"job": job["id"], "finished": job["finished"], **(job["summary"] or {})}
    a, b = _path(args[0]), _path(args[1])
    options = args[2] if len(args) > 2 and isinstance(args[2], dict) else {}
    for model in (a, b):
        if model.suffix != ".xml" or not model.is_file():
            raise JsonRpcInvalidParams(message=f"not an IR model (.xml): {model}")
    report = ls.root_of(a) / STORE_DIR / "compare" / f"{a.stem}-vs-{b.stem}.html"
    argv = [sys.executable, "-I", "-m", "int8wb.editor_client.cli", "compare", str(a), str(b), "--json", "--html", str(report),
            "--device", str(options.get("device", "CPU")), "--batch", str(int(options.get("batch", 1))),
            "--duration", str(float(options.get("duration", 3.0)))]
    ls.log(f"int8wb: comparing {a.name} and {b.name}")
    child = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                 cwd=str(Path(__file__).resolve().parents[1]))
    out, err = await child.communicate()
    if child.returncode != 0:
        why = err.decode(errors="replace").strip().splitlines()[-5:]
        raise JsonRpcInvalidParams(message=f"cannot compare {a.name} and {b.name}: " + " ".join(why))
    return json.loads(out)


@server.command("int8wb.check")
async def cmd_check(ls: Int8Server, *args) -> list[dict]:
    path = _path(_first(args, "file URI"))
    if not path.exists():
        raise JsonRpcInvalidParams(message=f"no such file: {path}")
    if path.name.endswith(SPEC_SUFFIX):
        doc = ls.workspace.text_documents.get(from_fs_path(str(path)))
        problems = await asyncio.to_thread(_check_spec, path, doc.source if doc else None)
    else:
        problems = (await asyncio.to_thread(_check_model, path))[0]
    return [p.to_dict() for p in problems]


@server.command("int8wb.openReport")
async def cmd_open_report(ls: Int8Server, *args) -> bool:
    report = _path(_first(args, "report path"))
    if not report.is_file():
        raise JsonRpcInvalidParams(message=f"report not found: {report}")
    result = await ls.window_show_document_async(types.ShowDocumentParams(uri=from_fs_path(str(report)),
                                                                          external=True))
    return bool(result and result.success)


@server.command("int8wb.status")
def cmd_status(ls: Int8Server, *args) -> dict:
    rss = None
    try:
        with open("/proc/self/status") as fh:
            rss = next(int(l.split()[1]) * 1024 for l in fh if l.startswith("VmRSS:"))
    except (OSError, StopIteration):
        pass
    return {"pid": os.getpid(), "roots": [str(r) for r in ls.roots], "rss_bytes": rss,
            "openvino_loaded": "openvino" in sys.modules, "nncf_loaded": "nncf" in sys.modules,
            "threads": threading.active_count(), "published": len(ls.published)}


# -- editor features --------------------------------------------------------------------------
@server.feature(types.TEXT_DOCUMENT_CODE_LENS)
def code_lens(ls: Int8Server, params: types.CodeLensParams) -> list[types.CodeLens]:
    uri = params.text_document.uri
    if not uri.endswith(SPEC_SUFFIX):
        return []
    spec = Path(to_fs_path(uri)).resolve()
    at = types.Range(start=types.Position(0, 0), end=types.Position(0, 0))
    entry = ls.roots.get(ls.root_of(spec))
    lenses = []
    active = entry["store"].active_for(str(spec)) if entry else None
    if active is not None:
        what = "queued" if active["state"] == "queued" else f"{active['percent']:.0f}% {active['phase'] or ''}"
        lenses.append(types.CodeLens(range=at, command=types.Command(
            title=f"Calibrating… {what.strip()} (cancel)", command="int8wb.cancel", arguments=[active["id"]])))
    else:
        lenses.append(types.CodeLens(range=at, command=types.Command(
            title="▶ Calibrate", command="int8wb.calibrate", arguments=[uri])))
    last = entry["store"].last_result(str(spec)) if entry else None
    if last is not None:
        s = last["summary"] or {}
        lenses.append(types.CodeLens(range=at, command=types.Command(
            title=f"Last result: {_job_line(last).removeprefix('done: ')}", command="int8wb.compare",
            arguments=[uri])))
        if s.get("report"):
            lenses.append(types.CodeLens(range=at, command=types.Command(
                title=f"Open report ({Path(s['report']).name})", command="int8wb.openReport",
                arguments=[from_fs_path(s["report"])])))
    return lenses


@server.feature(types.TEXT_DOCUMENT_HOVER)
async def hover(ls: Int8Server, params: types.HoverParams) -> types.Hover | None:
    uri = params.text_document.uri
    if not uri.endswith(SPEC_SUFFIX):
        return None
    doc = ls.workspace.get_text_document(uri)
    lines = doc.source.splitlines()
    n = params.position.line
    if n >= len(lines) or not _MODEL_LINE.match(lines[n]):
        return None
    m = re.search(r'=\s*["\']([^"\']+)["\']', lines[n])
    if not m:
        return None
    model = (Path(to_fs_path(uri)).parent / m.group(1)).resolve()
    text = await asyncio.to_thread(_model_markdown, ls.hover_cache, model)
    return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=text),
                       range=types.Range(start=types.Position(n, 0), end=types.Position(n, len(lines[n]))))


def _model_markdown(cache: dict, model: Path) -> str:
    key = (model, _signature(model))
    if key in cache:
        return cache[key]
    from int8wb.calibration.problems import CalibrationError
    from int8wb.calibration.inspection import inspect_model
    try:
        info = inspect_model(model)
    except CalibrationError as exc:
        return f"**{model.name}**: " + "; ".join(p.message for p in exc.problems)
    except OSError as exc:
        return f"**{model.name}**: {exc}"
    problems, _ = _check_model(model)
    errors = [p for p in problems if p.severity == "error"]
    shape = lambda t: "[" + ",".join("?" if d < 0 else str(d) for d in t.shape) + "]"  # noqa: E731
    rows = [f"**{info.name}** (`{model.name}`)", "",
            f"- IR version: {info.ir_version}",
            f"- precision: {info.precision}" + (" (FP16-compressed weights)" if info.fp16_compressed_weights else ""),
            "- inputs: " + ", ".join(f"`{t.name}` {shape(t)} {t.element_type}" for t in info.inputs),
            f"- layers: {info.layer_count} ({len(info.int8_layers)} INT8-able)",
            "- eligibility: " + ("✅ can be calibrated" if not errors else
                                 "❌ " + "; ".join(f"{p.rule}: {p.message}" for p in errors))]
    text = "\n".join(rows)
    if len(cache) > 256:
        cache.clear()
    cache[key] = text
    return text


@server.feature(types.TEXT_DOCUMENT_CODE_ACTION,
                types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix]))
def code_action(ls: Int8Server, params: types.CodeActionParams) -> list[types.CodeAction]:
    uri = params.text_document.uri
    if not uri.endswith(SPEC_SUFFIX):
        return []
    lines = ls.workspace.get_text_document(uri).source.splitlines()
    actions = []
    for diag in params.context.diagnostics:
        fix = _FIXES.get(str(diag.code)) if diag.source in (SOURCE, None) else None
        if fix is None:
            continue
        key, value, title = fix
        n = diag.range.start.line
        target = _find_key_line(lines, key, n)
        if target is None:
            continue
        old = lines[target]
        new = re.sub(rf'^(\s*{key}\s*=\s*)("[^"]*"|\'[^\']*\'|[^#\s]+)', rf"\g<1>{value}", old, count=1)
        if new == old:
            continue
        edit = types.TextEdit(range=types.Range(start=types.Position(target, 0),
                                                end=types.Position(target, len(old))), new_text=new)
        actions.append(types.CodeAction(title=title, kind=types.CodeActionKind.QuickFix, diagnostics=[diag],
                                        is_preferred=True,
                                        edit=types.WorkspaceEdit(changes={uri: [edit]})))
    return actions


def _find_key_line(lines: list[str], key: str, near: int) -> int | None:
    pattern = re.compile(rf"^\s*{key}\s*=")
    if 0 <= near < len(lines) and pattern.match(lines[near]):
        return near
    hits = [i for i, line in enumerate(lines) if pattern.match(line)]
    return min(hits, key=lambda i: abs(i - near)) if hits else None


def main() -> None:
    logging.basicConfig(level=os.environ.get("INT8WB_LOG", "WARNING"), stream=sys.stderr,
                        format="int8wb-daemon %(levelname)s %(message)s")
    server.start_io()
