"""The int8wb language server (pygls 2, stdio): its lifecycle, and the one table of what it serves.

Each feature lives in a small module and never sees JSON-RPC; this file wires them together:
- config.py        the settings, read once from the environment
- watching.py      file events (watchdog, the editor's, a periodic walk) -> debounced, settled checks
- checking.py      the checker processes (check_worker.py): every read of a workspace file's content
- diagnostics.py   engine problems -> published diagnostics (spec buffers and files, IR models)
- paths.py         URIs and paths made safe (symlink loops, NULs, untitled buffers)
- commands.py      the int8wb.* commands and the progress of the jobs they queue
- comparing.py     two-model comparisons, run as jobs of the daemon
- lens.py, hover.py, code_actions.py   what the editor shows on a spec file
- markup.py         hovers as Markdown, or plain text for clients that do not read it
- completion.py    spec keys and values from the spec's schema; layer names (layers.py) in the ignored scope
- layers.py        layer names in [calibration.ignored_scope]: completion, hover, "pin" quick fix
Problems come from `calibration.checker` and model facts from `calibration.inspection`, both run in
checker processes; jobs from `calibration.jobs` (worker subprocesses). Nothing here imports openvino
or nncf, so the daemon stays small; other blocking work runs in threads, never on the event loop.
"""
from __future__ import annotations

import asyncio
import inspect
import os
import logging
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer

from int8wb.calibration.jobs import STORE_DIR, JobStore, Runner, Slots
from int8wb.calibration.jobs.ray_backend import RayBackend
from int8wb.calibration.trust import trusted
from int8wb.daemon import code_actions, commands, completion, diagnostics, hover, lens, watching
from int8wb.daemon.checking import Checker
from int8wb.daemon.comparing import Comparisons
from int8wb.daemon.commands import CommandError, JobProgress
from int8wb.daemon.config import Settings, with_options
from int8wb.daemon.diagnostics import Diagnostics
from int8wb.daemon.paths import path_of, resolved
from int8wb.daemon.watching import Watching


class Int8Server(LanguageServer):
    """The state the features share, reached through the `ls` every handler gets: settings, the
    workspace folders (each with its job store, runner and maybe an inbox), and the parts."""

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__("int8wb", "0.1.0", text_document_sync_kind=types.TextDocumentSyncKind.Full)
        self.settings = settings or Settings.from_env()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.roots: dict[Path, dict] = {}  # workspace folder -> {"store", "runner", "drop", "trusted"}
        self.slots = Slots(self.settings.max_jobs)  # calibrations at a time over all folders
        # Every folder's jobs on one Ray cluster when INT8WB_RAY says so; joined at the first job, not here.
        self.backend = RayBackend(self.settings.ray, self.settings.ray_cpus, connect=False) \
            if self.settings.ray else None
        self.checker = Checker(self.settings.check_workers, self.settings.check_s, self.settings.check_memory_mb)
        self.watching = Watching(self)
        self.diagnostics = Diagnostics(self)
        self.job_progress = JobProgress(self)
        self.comparisons = Comparisons(self)  # int8wb.compare of two models: the daemon's own jobs
        self.hover_cache: dict[tuple, str] = {}
        self.initialization_options = None  # the client's, from initialize (the `int8wb` section is ours)
        self.layer_cache: dict[tuple, dict] = {}  # (model, signature) -> its layer table (layers.py)

    # -- plumbing -----------------------------------------------------------------------------
    def from_thread(self, fn, *args) -> None:
        """Runs `fn(*args)` on the server's loop (watchdog, runner and inbox threads call this)."""
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(fn, *args)

    def running_loop(self) -> asyncio.AbstractEventLoop:
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        return self.loop

    def supports_progress(self) -> bool:
        window = self.client_capabilities.window
        return bool(window and window.work_done_progress)

    def log(self, message: str, kind=types.MessageType.Info) -> None:
        self.window_log_message(types.LogMessageParams(type=kind, message=message))

    def show(self, message: str, kind=types.MessageType.Info) -> None:
        """A message the user sees (not only the log): for what the daemon declined to do."""
        self.log(message, kind)
        self.window_show_message(types.ShowMessageParams(type=kind, message=message))

    def refresh_lenses(self) -> None:
        ws = self.client_capabilities.workspace
        if ws and ws.code_lens and ws.code_lens.refresh_support:
            self.workspace_code_lens_refresh(None)

    # -- workspace folders: each has its job store and runner, maybe an inbox ------------------
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
        runner = self.roots.get(root, {}).get("runner")
        if runner is None:
            raise CommandError(f"{root} cannot hold jobs (its {STORE_DIR}/ could not be opened; see the log)")
        return runner

    def store_for(self, path: Path) -> JobStore | None:
        entry = self.roots.get(self.root_of(path))
        return entry.get("store") if entry else None

    def add_root(self, root: Path, watch: bool = True) -> None:
        """A workspace folder: its job store and runner, its inbox if it holds a drop policy, and the
        watch of its files. Whatever the folder holds, the watch starts: a job store that cannot be
        opened (`.int8wb` a file, a FIFO, a loop) or an inbox that cannot start only loses its part."""
        root = resolved(root)
        if root in self.roots or not root.is_dir():
            return
        if root == Path(root.anchor):  # watching and walking the whole file system helps no one
            self.show(f"int8wb: {root} is the whole file system: its files are not watched or checked; open a "
                      "project folder instead", types.MessageType.Warning)
            return
        entry: dict = {"store": None, "runner": None, "drop": None, "trusted": False}
        self.roots[root] = entry
        try:
            entry["trusted"] = self.settings.trust_custom_metrics or trusted(folder=root)
            store = JobStore(root)
            entry["runner"] = Runner(store, self.settings.max_jobs,
                                     on_change=lambda job: self.from_thread(self.job_progress.changed, job),
                                     trust_custom_metrics=entry["trusted"], slots=self.slots,
                                     backend=self.backend).start()
            entry["store"] = store
        except Exception as exc:  # noqa: BLE001
            self.show(f"int8wb: {root}: cannot keep jobs in {STORE_DIR}/ ({type(exc).__name__}: {exc}); "
                      "calibrations from this folder are refused, its files are still checked",
                      types.MessageType.Warning)
        if not watch:
            return
        if entry["runner"] is not None:
            try:
                self.start_inbox(root, entry)
            except Exception as exc:  # noqa: BLE001
                self.show(f"int8wb: {root}: its drop folder did not start ({type(exc).__name__}: {exc})",
                          types.MessageType.Warning)
        self.watching.watch(root)

    def start_inbox(self, root: Path, entry: dict) -> None:
        """A workspace folder holding a drop policy is also an inbox (calibration.dropfolder), run in a
        thread with this root's store and runner."""
        from int8wb.calibration.dropfolder import DropFolder, is_inbox
        from int8wb.calibration.problems import CalibrationError

        if not is_inbox(root):
            return
        if not entry.get("trusted"):  # a policy calibrates whatever lands here: only where the user said so
            self.show(f"int8wb: {root} holds a drop policy (calibration.toml) that is not run: the folder is "
                      f"not trusted. Trust it with `int8wb trust {root}` (or INT8WB_TRUST=1), then reopen it.",
                      types.MessageType.Warning)
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
        root = resolved(root)
        entry = self.roots.pop(root, None)
        if entry is None:
            return
        if entry.get("drop") is not None:
            entry["drop"].stop()
        self.watching.unwatch(root)
        if entry.get("runner") is not None:
            entry["runner"].stop()
        self.diagnostics.forget_folder(root)

    def stop_all(self) -> None:
        self.comparisons.stop_all()
        for entry in self.roots.values():
            if entry.get("drop") is not None:
                entry["drop"].stop()
            if entry.get("runner") is not None:
                entry["runner"].stop()
        self.watching.stop()


# -- lifecycle handlers ---------------------------------------------------------------------------
def initialize(ls: Int8Server, params: types.InitializeParams) -> None:
    ls.initialization_options = params.initialization_options  # applied once the client is initialized


async def initialized(ls: Int8Server, params: types.InitializedParams) -> None:
    ls.loop = asyncio.get_running_loop()
    folders = [p for f in ls.workspace.folders.values() if (p := path_of(f.uri)) is not None]
    if not folders and ls.workspace.root_path:
        folders = [Path(ls.workspace.root_path)]
    for folder in folders:
        try:
            ls.add_root(folder)
        except Exception as exc:  # noqa: BLE001  (one folder never keeps the others from being watched)
            ls.show(f"int8wb: cannot open {folder}: {type(exc).__name__}: {exc}", types.MessageType.Warning)
    await ls.watching.ask_client_to_watch()
    ls.watching.start_rescans()
    await pull_configuration(ls)


def apply_settings(ls: Int8Server, options) -> None:
    """The editor's `int8wb` settings, applied at once (the watcher reads them at each use)."""
    ls.settings, refused = with_options(ls.settings, options)
    ls.watching.settings = ls.settings
    for why in refused:
        ls.show(f"int8wb: {why}", types.MessageType.Warning)


async def pull_configuration(ls: Int8Server) -> None:
    """initializationOptions first, then the client's `int8wb` section if it serves workspace/configuration."""
    if isinstance(ls.initialization_options, dict):
        apply_settings(ls, ls.initialization_options.get("int8wb"))
    workspace = ls.client_capabilities.workspace
    if workspace and workspace.configuration:
        try:
            [section] = await asyncio.wait_for(ls.workspace_configuration_async(
                types.ConfigurationParams(items=[types.ConfigurationItem(section="int8wb")])), 5)
        except Exception:  # noqa: BLE001  (a client that cannot answer keeps the environment's settings)
            return
        apply_settings(ls, section)


def configuration_changed(ls: Int8Server, params: types.DidChangeConfigurationParams) -> None:
    settings = params.settings
    apply_settings(ls, settings.get("int8wb") if isinstance(settings, dict) else None)


async def shutdown(ls: Int8Server, params: None) -> None:
    ls.stop_all()
    await ls.checker.aclose()


def exit_(ls: Int8Server, params: None) -> None:
    ls.checker.close()  # an exit without shutdown: the checker processes go too


def folders_changed(ls: Int8Server, params: types.DidChangeWorkspaceFoldersParams) -> None:
    for f in params.event.removed:
        if (path := path_of(f.uri)) is not None:
            ls.remove_root(path)
    for f in params.event.added:
        if (path := path_of(f.uri)) is not None:
            ls.add_root(path)


# -- the one registration table -------------------------------------------------------------------
FEATURES = [  # (LSP method, handler, options); `async` handlers are the ones that wait on threads
    (types.INITIALIZE, initialize, None),
    (types.INITIALIZED, initialized, None),
    (types.SHUTDOWN, shutdown, None),
    (types.EXIT, exit_, None),
    (types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS, folders_changed, None),
    (types.WORKSPACE_DID_CHANGE_CONFIGURATION, configuration_changed, None),
    (types.WORKSPACE_DID_CHANGE_WATCHED_FILES, watching.watched_files, None),
    (types.TEXT_DOCUMENT_DID_OPEN, diagnostics.did_open, None),
    (types.TEXT_DOCUMENT_DID_CHANGE, diagnostics.did_change, None),
    (types.TEXT_DOCUMENT_DID_SAVE, diagnostics.did_save, None),
    (types.TEXT_DOCUMENT_DID_CLOSE, diagnostics.did_close, None),
    (types.WINDOW_WORK_DONE_PROGRESS_CANCEL, commands.progress_cancel, None),
    (types.TEXT_DOCUMENT_CODE_LENS, lens.code_lens, None),
    (types.TEXT_DOCUMENT_HOVER, hover.hover, None),
    (types.TEXT_DOCUMENT_CODE_ACTION, code_actions.code_actions, code_actions.OPTIONS),
    (types.TEXT_DOCUMENT_COMPLETION, completion.completion, completion.OPTIONS),
]
COMMANDS = {  # workspace/executeCommand name -> handler(ls, *arguments)
    "int8wb.calibrate": commands.calibrate,
    "int8wb.cancel": commands.cancel,
    "int8wb.jobs": commands.jobs,
    "int8wb.compare": commands.compare,
    "int8wb.check": commands.check,
    "int8wb.openReport": commands.open_report,
    "int8wb.status": commands.status,
}


def as_lsp_command(handler: Callable) -> Callable:
    """The handler as pygls calls it, its CommandError an InvalidParams reply. Stays `async` (run on
    the loop, awaiting threads) or plain (run inline) like the handler."""
    if inspect.iscoroutinefunction(handler):
        async def run(ls, *args):
            try:
                return await handler(ls, *args)
            except CommandError as exc:
                raise JsonRpcInvalidParams(message=str(exc)) from exc
    else:
        def run(ls, *args):
            try:
                return handler(ls, *args)
            except CommandError as exc:
                raise JsonRpcInvalidParams(message=str(exc)) from exc
    run.__name__ = run.__qualname__ = handler.__name__
    return run


class _RefusalsAreAnswers(logging.Filter):
    """pygls logs a traceback for every error reply; a refused command (CommandError: a spec with
    unsaved changes, a folder that cannot hold jobs) is an answer to the editor, not a fault."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, JsonRpcInvalidParams) and isinstance(exc.__cause__, CommandError))


def create_server(settings: Settings | None = None) -> Int8Server:
    ls = Int8Server(settings)
    rpc_log = logging.getLogger("pygls.protocol.json_rpc")
    if not any(isinstance(f, _RefusalsAreAnswers) for f in rpc_log.filters):
        rpc_log.addFilter(_RefusalsAreAnswers())
    for method, handler, options in FEATURES:
        ls.feature(method, options)(handler)
    for name, handler in COMMANDS.items():
        ls.command(name)(as_lsp_command(handler))
    return ls


def _children_watched_by_the_loop() -> None:
    """Python 3.11 reaps child processes in a thread that reports to the loop: a checker killed as the
    daemon exits may end after the loop has closed, and that thread then logs a warning. With pidfds
    (3.12's default) the loop itself watches its children and nothing is said after it is gone."""
    if sys.version_info < (3, 12) and hasattr(os, "pidfd_open"):
        try:
            os.close(os.pidfd_open(os.getpid()))
        except OSError:  # a kernel or sandbox without pidfds: keep the thread
            return
        asyncio.set_child_watcher(asyncio.PidfdChildWatcher())


def main() -> None:
    settings = Settings.from_env()
    logging.basicConfig(level=settings.log_level, stream=sys.stderr, format="int8wb-daemon %(levelname)s %(message)s")
    _children_watched_by_the_loop()
    create_server(settings).start_io()
