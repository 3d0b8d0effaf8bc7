"""Engine problems become LSP diagnostics, published per file: spec files (from the editor's buffer
while open, else from disk) and IR models (eligibility). code = the rule id, source = "int8wb".

Problems come from `calibration.checker`, always off the event loop (asyncio.to_thread).
"""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from lsprotocol import types
from pygls.uris import from_fs_path, to_fs_path

from int8wb.calibration.spec import SPEC_SUFFIX

if TYPE_CHECKING:
    from int8wb.daemon.server import Int8Server

SOURCE = "int8wb"
SEVERITY = {"error": types.DiagnosticSeverity.Error, "warning": types.DiagnosticSeverity.Warning,
            "info": types.DiagnosticSeverity.Information}


def check_spec(path: Path, text: str | None):
    """The spec's problems; `text` is the editor's buffer, or None to read the file."""
    from int8wb.calibration.checker import check_spec as check
    return check(path, text)


def check_model(path: Path):
    """The IR model's problems (eligibility, or a pair that is incomplete)."""
    from int8wb.calibration.checker import check_model as check
    return check(path, scanned=True)


def line_text(path: Path, text: str | None, line: int) -> str:
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


def to_diagnostics(problems, path: Path, text: str | None) -> list[types.Diagnostic]:
    """The problems located in `path` (`text`: its buffer, if open), each spanning its whole line."""
    out = []
    for p in problems:
        if p.path and Path(p.path).resolve() != path.resolve():
            continue  # located in another file: that file's diagnostics show it
        line = max(1, p.line or 1)
        length = len(line_text(path, text, line))
        message = p.message + (f" (fix: {p.fix})" if p.fix else "")
        if p.key:
            message = f"{p.key}: {message}"
        out.append(types.Diagnostic(
            range=types.Range(start=types.Position(line=line - 1, character=0),
                              end=types.Position(line=line - 1, character=length)),
            message=message, severity=SEVERITY.get(p.severity, types.DiagnosticSeverity.Error),
            code=p.rule, source=SOURCE, data={"fix": p.fix, "key": p.key}))
    return out


class Diagnostics:
    """What was last published per URI, and the checks that replace it."""

    def __init__(self, ls: Int8Server):
        self.ls = ls
        self.published: dict[str, list] = {}  # uri -> last diagnostics

    def publish(self, uri: str, diagnostics: list, version: int | None = None) -> None:
        if not diagnostics and uri not in self.published:
            return
        if diagnostics:
            self.published[uri] = diagnostics
        else:
            self.published.pop(uri, None)
        self.ls.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics, version=version))

    def clear(self, path: Path) -> None:
        self.publish(from_fs_path(str(path)), [])

    def forget_folder(self, root: Path) -> None:
        """A workspace folder was removed: its files' diagnostics go, unless another folder holds them."""
        for uri in list(self.published):
            p = Path(to_fs_path(uri))
            if root in p.parents and not any(r in p.parents for r in self.ls.roots):
                self.publish(uri, [])

    # -- files on disk (called by watching once a file has settled) -----------------------------
    async def file_gone(self, path: Path) -> None:
        uri = from_fs_path(str(path))
        if path.name.endswith(SPEC_SUFFIX) and uri in self.ls.workspace.text_documents:
            await self.check_document(uri)  # still open: the buffer is what counts
        else:
            self.clear(path)

    async def spec_file_changed(self, path: Path) -> None:
        uri = from_fs_path(str(path))
        if uri in self.ls.workspace.text_documents:
            return  # the editor's buffer wins; didChange/didSave drive it
        problems = await asyncio.to_thread(check_spec, path, None)
        self.publish(uri, to_diagnostics(problems, path, None))

    def model_checked(self, model: Path, problems) -> None:
        self.publish(from_fs_path(str(model)), to_diagnostics(problems, model, None))
        for uri, doc in list(self.ls.workspace.text_documents.items()):
            if uri.endswith(SPEC_SUFFIX) and model.name in doc.source:
                self.schedule_document(uri, 0.0)  # open specs naming the model: fresh diagnostics

    # -- spec documents open in the editor ----------------------------------------------------
    def schedule_document(self, uri: str, delay: float | None = None) -> None:
        delay = self.ls.settings.debounce_s if delay is None else delay
        self.ls.watching.debounce(("document", uri), delay, lambda: self.check_document(uri))

    async def check_document(self, uri: str) -> None:
        doc = self.ls.workspace.text_documents.get(uri)
        path = Path(to_fs_path(uri))
        if doc is None:  # closed meanwhile: back to what is on disk (or cleared if deleted)
            return await self.ls.watching.refresh(path)
        text, version = doc.source, doc.version
        problems = await asyncio.to_thread(check_spec, path, text)
        current = self.ls.workspace.text_documents.get(uri)
        if current is not None and current.version != version:
            return  # a newer edit is on its way
        self.publish(uri, to_diagnostics(problems, path, text), version)


# -- document sync handlers (registered in server.py) --------------------------------------------
def did_open(ls: Int8Server, params: types.DidOpenTextDocumentParams) -> None:
    if params.text_document.uri.endswith(SPEC_SUFFIX):
        ls.diagnostics.schedule_document(params.text_document.uri, 0.0)


def did_change(ls: Int8Server, params: types.DidChangeTextDocumentParams) -> None:
    if params.text_document.uri.endswith(SPEC_SUFFIX):
        ls.diagnostics.schedule_document(params.text_document.uri)


def did_save(ls: Int8Server, params: types.DidSaveTextDocumentParams) -> None:
    if params.text_document.uri.endswith(SPEC_SUFFIX):
        ls.diagnostics.schedule_document(params.text_document.uri, 0.0)


def did_close(ls: Int8Server, params: types.DidCloseTextDocumentParams) -> None:
    uri = params.text_document.uri
    if uri.endswith(SPEC_SUFFIX):
        ls.watching.schedule(Path(to_fs_path(uri)), 0.0)  # back to what is on disk (or cleared if deleted)
