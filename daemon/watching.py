"""Which files changed, and when to look at them: the watchdog dispatch of every workspace folder,
the editor's own file events, debounced checks, the settle of half-written model pairs, and a
periodic walk that reconciles what the watcher lost.

What a file means is not decided here: a settled file goes to the server's `diagnostics`.
"A model pair has finished arriving" is the engine's `model_files`, shared with the drop folder.
"""
from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Hashable
from pathlib import Path
from typing import TYPE_CHECKING

from lsprotocol import types

from int8wb.calibration import model_files
from int8wb.calibration.model_files import Settle, signature, sniff
from int8wb.calibration.spec import SPEC_SUFFIX
from int8wb.daemon.paths import exists, path_of, uri_of

if TYPE_CHECKING:
    from int8wb.daemon.checking import Checked
    from int8wb.daemon.server import Int8Server

log = logging.getLogger("int8wb.daemon")

TIMEOUT_RETRIES = 3  # rescans that look again at a file whose check was stopped for time
CLIENT_GLOBS = ("**/*.xml", "**/*.bin", f"**/*{SPEC_SUFFIX}")  # asked of editors with dynamic file watching


def kind_of(path: Path) -> str | None:
    """What the daemon sees in a file name: spec, model (.xml), weights (.bin), or None (ignored)."""
    name = path.name
    if name.endswith(SPEC_SUFFIX):
        return "spec"
    if name.endswith(".xml"):
        return "model"
    if name.endswith(".bin"):
        return "weights"
    return None


def hidden(path: Path, root: Path) -> bool:
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        parts = path.parts
    return any(p.startswith(".") for p in parts)


def walk(roots: list[Path]) -> dict[Path, tuple]:
    """Every spec and IR model below `roots` (hidden folders skipped) -> its signature."""
    out = {}
    for root in roots:
        for p in model_files.walk(root.parent if root.is_file() else root, endings=(SPEC_SUFFIX, ".xml")):
            if p.name.endswith(SPEC_SUFFIX) or sniff(p) is True:
                out[p] = signature(p)
    return out


class _Dispatch:
    """The watchdog handler of one root: forwards relevant paths to the server's loop."""

    def __init__(self, watching: Watching, root: Path):
        self.watching, self.root = watching, root

    def dispatch(self, event) -> None:  # watchdog calls this for every event, on its own thread
        if event.event_type in ("opened", "closed_no_write"):
            return
        if event.is_directory and event.event_type not in ("moved", "deleted"):
            return
        for raw in (event.src_path, getattr(event, "dest_path", "") or ""):
            if raw:
                path = Path(os.fsdecode(raw))
                if event.is_directory or kind_of(path):
                    self.watching.ls.from_thread(self.watching.path_changed, path, event.is_directory)


class Watching:
    """One watchdog observer for all workspace folders; every file event ends in a debounced
    `refresh` of that file, which hands settled files to the server's diagnostics."""

    def __init__(self, ls: Int8Server):
        self.ls = ls
        self.settings = ls.settings
        self.observer = None
        self.watches: dict[Path, object] = {}  # root -> its watchdog watch
        self.known: dict[Path, tuple] = {}     # file -> signature at its last check
        self.settle = Settle(ls.settings.settle_s)  # files still arriving
        self.timers: dict[Hashable, asyncio.TimerHandle] = {}
        self.running = 0                       # debounced looks under way
        self.timeouts: dict[Path, int] = {}    # file -> its checks stopped for time in a row
        self.rescan_task: asyncio.Task | None = None

    # -- folders ------------------------------------------------------------------------------
    def watch(self, root: Path) -> None:
        if self.observer is None:
            from watchdog.observers import Observer
            self.observer = Observer()
            self.observer.daemon = True
            self.observer.start()
        try:
            self.watches[root] = self.observer.schedule(_Dispatch(self, root), str(root), recursive=True)
        except OSError as exc:
            self.ls.log(f"int8wb: cannot watch {root}: {exc}", types.MessageType.Warning)
        asyncio.ensure_future(self.rescan([root]))

    def unwatch(self, root: Path) -> None:
        watch = self.watches.pop(root, None)
        if watch is not None and self.observer is not None:
            self.observer.unschedule(watch)
        for p in [p for p in self.known if root in p.parents]:
            self.known.pop(p, None)

    def stop(self) -> None:
        if self.observer is not None:
            self.observer.stop()

    async def ask_client_to_watch(self) -> None:
        """Editors that announce dynamic file watching send their own events too (ours keep running)."""
        ws = self.ls.client_capabilities.workspace
        if not (ws and ws.did_change_watched_files and ws.did_change_watched_files.dynamic_registration):
            return
        watchers = [types.FileSystemWatcher(glob_pattern=g) for g in CLIENT_GLOBS]
        try:
            await self.ls.client_register_capability_async(types.RegistrationParams(registrations=[
                types.Registration(id="int8wb-watch", method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES,
                                   register_options=types.DidChangeWatchedFilesRegistrationOptions(watchers))]))
        except Exception as exc:  # noqa: BLE001
            log.warning("file watch registration refused: %s", exc)

    def start_rescans(self) -> None:
        self.rescan_task = asyncio.ensure_future(self.rescan_forever())

    # -- events -------------------------------------------------------------------------------
    def path_changed(self, path: Path, is_dir: bool = False) -> None:
        """A file event (watcher, didChangeWatchedFiles or rescan); debounced per file."""
        if is_dir:  # a folder moved or deleted: reconcile what we knew below it
            for known in [p for p in self.known if path in p.parents]:
                self.schedule(known)
            asyncio.ensure_future(self.rescan([path])) if path.is_dir() else None
            return
        if hidden(path, self.ls.root_of(path)):
            return
        kind = kind_of(path)
        if kind == "weights":
            path = path.with_suffix(".xml")
            kind = "model"
        if kind is None:
            return
        self.schedule(path)

    def debounce(self, key: Hashable, delay: float, run: Callable[[], Awaitable]) -> None:
        """`run()` after `delay` seconds, unless asked again for the same key before then."""
        old = self.timers.pop(key, None)
        if old is not None:
            old.cancel()

        def fire() -> None:
            self.timers.pop(key, None)
            self.running += 1
            asyncio.ensure_future(run()).add_done_callback(self._ran)

        self.timers[key] = self.ls.running_loop().call_later(delay, fire)

    def _ran(self, task: asyncio.Future) -> None:
        self.running -= 1
        if not task.cancelled() and task.exception() is not None:
            log.error("a check failed", exc_info=task.exception())

    @property
    def pending(self) -> int:
        """Looks scheduled or under way (with the checker's queue: int8wb.status's "checks")."""
        return len(self.timers) + self.running

    def schedule(self, path: Path, delay: float | None = None) -> None:
        self.debounce(path, self.settings.debounce_s if delay is None else delay, lambda: self.refresh(path))

    async def refresh(self, path: Path) -> None:
        """Looks at one file now; a model pair is handed on only once it has finished arriving."""
        diagnostics = self.ls.diagnostics
        if not exists(path):
            self.known.pop(path, None)
            self.settle.forget(path)
            await diagnostics.file_gone(path)
            return
        sig = signature(path)
        if kind_of(path) == "spec":
            self.known[path] = sig
            self.remember(path, sig, await diagnostics.spec_file_changed(path))
            return
        ticket = diagnostics.begin(uri_of(path))
        left = self.settle.observe(path, sig)
        checked = await self.ls.checker.model(path, settled=left == 0)
        if checked is None:
            return  # a newer look at this file replaced this one
        if checked.problems is None:  # a half-written pair is never reported; looked at again once settled
            self.schedule(path, left)
            return
        self.remember(path, sig, checked)
        self.settle.forget(path)
        if checked.state == "not-ir":
            diagnostics.publish(uri_of(path), [], ticket=ticket)
            return
        diagnostics.model_checked(path, checked.problems, checked.lengths, ticket)

    def remember(self, path: Path, sig: tuple, checked: Checked | None) -> None:
        """`path` was looked at in state `sig`: the rescan leaves it be until it changes. A check stopped
        for time says more about the machine's load than about the file: the next rescans try again, a
        few times."""
        tries = self.timeouts.pop(path, 0) + 1
        if checked is not None and checked.stopped == "check-timeout" and tries <= TIMEOUT_RETRIES:
            self.timeouts[path] = tries
            self.known.pop(path, None)
        else:
            self.known[path] = sig

    async def rescan(self, roots: list[Path] | None = None) -> None:
        """Reconciliation: every spec/model below the roots whose signature changed, and every
        file we knew that is gone, is checked again (catches events the watcher lost)."""
        roots = roots or list(self.ls.roots)
        found = await asyncio.to_thread(walk, roots)
        for path, sig in found.items():
            if self.known.get(path) != sig:
                self.schedule(path, 0.0)
        for path in list(self.known):
            if path not in found and any(r == path or r in path.parents for r in roots) and not exists(path):
                self.schedule(path, 0.0)

    async def rescan_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.rescan_s)
            try:
                await self.rescan()
            except Exception as exc:  # noqa: BLE001
                log.exception("rescan failed: %s", exc)


def watched_files(ls: Int8Server, params: types.DidChangeWatchedFilesParams) -> None:
    """workspace/didChangeWatchedFiles: the editor's file events join the watcher's."""
    for change in params.changes:
        path = path_of(change.uri)
        if path is not None:
            ls.watching.path_changed(path)
