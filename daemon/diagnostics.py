"""Engine problems become LSP diagnostics, published per file: spec files (from the editor's buffer
while open, else from disk) and IR models (eligibility). code = the rule id, source = "int8wb".

Problems come from the checker processes (checking.py). A check takes time and files change
meanwhile, so every check holds a ticket (`begin`): an edit, an open, a close or a newer check of the
same file makes older tickets void, and a check whose ticket is void publishes nothing. Diagnostics
therefore always belong to the last state of a file, never to one that a slower check saw earlier.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from lsprotocol import types

from int8wb.calibration.spec import SPEC_SUFFIX
from int8wb.daemon.paths import document, key_of, path_of, resolved, uri_of

if TYPE_CHECKING:
    from int8wb.calibration.problems import Problem
    from int8wb.daemon.checking import Checked
    from int8wb.daemon.server import Int8Server

SOURCE = "int8wb"
SEVERITY = {"error": types.DiagnosticSeverity.Error, "warning": types.DiagnosticSeverity.Warning,
            "info": types.DiagnosticSeverity.Information}


def to_diagnostics(problems: list[Problem], path: Path, lengths: dict[int, int]) -> list[types.Diagnostic]:
    """The problems located in `path`, each spanning its whole line (`lengths`: line -> length)."""
    out = []
    here = resolved(path)
    for p in problems:
        if p.path and resolved(p.path) != here:
            continue  # located in another file: that file's diagnostics show it
        line = max(1, p.line or 1)
        message = p.message + (f" (fix: {p.fix})" if p.fix else "")
        if p.key:
            message = f"{p.key}: {message}"
        out.append(types.Diagnostic(
            range=types.Range(start=types.Position(line=line - 1, character=0),
                              end=types.Position(line=line - 1, character=lengths.get(line, 0))),
            message=message, severity=SEVERITY.get(p.severity, types.DiagnosticSeverity.Error),
            code=p.rule, source=SOURCE, data={"fix": p.fix, "key": p.key}))
    return out


class Diagnostics:
    """What was last published per URI, the tickets of the checks under way, and which model each
    spec named at its last check (its diagnostics follow that model's file)."""

    def __init__(self, ls: Int8Server):
        self.ls = ls
        self.published: dict[str, tuple[str, list]] = {}  # document key -> (URI, last diagnostics)
        self.tickets: dict[str, int] = {}     # document key -> number of its newest check or change
        self.models: dict[str, tuple[str, str | None]] = {}  # spec's key -> (URI, resolved model it names)

    def begin(self, uri: str) -> int:
        """A new ticket for `uri`: checks holding an older one will not publish."""
        key = key_of(uri)
        self.tickets[key] = ticket = self.tickets.get(key, 0) + 1
        return ticket

    def publish(self, uri: str, diagnostics: list, version: int | None = None, ticket: int | None = None) -> None:
        key = key_of(uri)
        if ticket is not None and self.tickets.get(key) != ticket:
            return  # a newer edit or check of this file is on its way
        if not diagnostics and key not in self.published:
            return
        if diagnostics:
            self.published[key] = (uri, diagnostics)
        else:
            self.published.pop(key, None)
        self.ls.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics, version=version))

    def clear(self, path: Path) -> None:
        uri = uri_of(path)
        self.publish(uri, [], ticket=self.begin(uri))

    def forget_folder(self, root: Path) -> None:
        """A workspace folder was removed: its files' diagnostics go, unless another folder holds them."""
        for uri, _ in list(self.published.values()):
            p = path_of(uri)
            if p is not None and root in p.parents and not any(r in p.parents for r in self.ls.roots):
                self.publish(uri, [], ticket=self.begin(uri))

    # -- files on disk (called by watching once a file has settled) -----------------------------
    async def file_gone(self, path: Path) -> None:
        uri = uri_of(path)
        if path.name.endswith(SPEC_SUFFIX) and document(self.ls, uri) is not None:
            await self.check_document(uri)  # still open: the buffer is what counts
            return
        self.models.pop(key_of(uri), None)
        self.clear(path)
        if not path.name.endswith(SPEC_SUFFIX):
            self.recheck_specs_naming(path)

    async def spec_file_changed(self, path: Path) -> Checked | None:
        """Checks the spec file and publishes, unless the editor has it open; returns the check."""
        uri = uri_of(path)
        if document(self.ls, uri) is not None:
            return None  # the editor's buffer wins; didChange/didSave drive it
        ticket = self.begin(uri)
        checked = await self.ls.checker.spec(path, None)
        if checked is None or document(self.ls, uri) is not None:
            return None  # replaced by a newer check, or opened meanwhile: the buffer's check publishes
        self.models[key_of(uri)] = (uri, checked.model)
        self.publish(uri, to_diagnostics(checked.problems, path, checked.lengths), ticket=ticket)
        return checked

    def model_checked(self, model: Path, problems: list[Problem], lengths: dict[int, int], ticket: int) -> None:
        self.publish(uri_of(model), to_diagnostics(problems, model, lengths), ticket=ticket)
        self.recheck_specs_naming(model)

    def recheck_specs_naming(self, model: Path) -> None:
        """Specs (open or on disk) whose last check named `model` are checked again: they show its problems."""
        named = str(resolved(model))
        for uri, spec_model in list(self.models.values()):
            if spec_model == named:
                if document(self.ls, uri) is not None:
                    self.schedule_document(uri, 0.0)
                elif (path := path_of(uri)) is not None:
                    self.ls.watching.schedule(path, 0.0)

    # -- spec documents open in the editor ----------------------------------------------------
    def schedule_document(self, uri: str, delay: float | None = None) -> None:
        delay = self.ls.settings.debounce_s if delay is None else delay
        self.ls.watching.debounce(("document", key_of(uri)), delay, lambda: self.check_document(uri))

    async def check_document(self, uri: str) -> None:
        doc = document(self.ls, uri)
        path = path_of(uri)
        if path is None:
            return  # an untitled buffer, or a name no file can have: nothing to check it against
        if doc is None:  # closed meanwhile: back to what is on disk (or cleared if deleted)
            return await self.ls.watching.refresh(path)
        ticket = self.begin(uri)
        text, version = doc.source, doc.version
        checked = await self.ls.checker.spec(path, text)
        current = document(self.ls, uri)
        if checked is None or current is None or current.version != version:
            return  # replaced, closed, or a newer edit is on its way
        self.models[key_of(uri)] = (uri, checked.model)
        self.publish(uri, to_diagnostics(checked.problems, path, checked.lengths), version, ticket)


# -- document sync handlers (registered in server.py) --------------------------------------------
def did_open(ls: Int8Server, params: types.DidOpenTextDocumentParams) -> None:
    uri = params.text_document.uri
    if uri.endswith(SPEC_SUFFIX):
        ls.diagnostics.begin(uri)  # a check of the file on disk under way must not publish now
        ls.diagnostics.schedule_document(uri, 0.0)
    elif uri.endswith(".xml") and (path := path_of(uri)) is not None:
        # eglot keeps only the diagnostics of open buffers: a model's are sent again when it is opened
        # (or checked now if none were published: a model that came before the workspace was watched).
        if key_of(uri) in ls.diagnostics.published:
            _, diagnostics = ls.diagnostics.published[key_of(uri)]
            ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics))
        else:
            ls.watching.schedule(path, 0.0)


def did_change(ls: Int8Server, params: types.DidChangeTextDocumentParams) -> None:
    uri = params.text_document.uri
    if uri.endswith(SPEC_SUFFIX):
        ls.diagnostics.begin(uri)
        ls.diagnostics.schedule_document(uri)


def did_save(ls: Int8Server, params: types.DidSaveTextDocumentParams) -> None:
    if params.text_document.uri.endswith(SPEC_SUFFIX):
        ls.diagnostics.schedule_document(params.text_document.uri, 0.0)


def did_close(ls: Int8Server, params: types.DidCloseTextDocumentParams) -> None:
    uri = params.text_document.uri
    if uri.endswith(SPEC_SUFFIX):
        ls.diagnostics.begin(uri)  # the buffer's check under way must not publish after the close
        path = path_of(uri)
        if path is not None:
            ls.watching.schedule(path, 0.0)  # back to what is on disk (or cleared if deleted)
        else:
            ls.diagnostics.publish(uri, [])
