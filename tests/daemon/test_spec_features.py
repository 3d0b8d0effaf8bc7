"""diagnostics.py, hover.py and code_actions.py end to end: an unsaved spec buffer gets diagnostics,
a hover on its model line, and quick fixes that clear them."""
from __future__ import annotations

from pathlib import Path

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from daemon_fixtures import client, workspace  # noqa: F401  (fixtures)
from daemon_helpers import codes, spec_of, wait_for


@pytest.mark.asyncio
async def test_spec_buffer_diagnostics_hover_and_fixes(client: LanguageClient, workspace: Path):
    spec = spec_of(workspace)
    uri = spec.as_uri()
    disk = spec.read_text()
    text = disk.replace('device = "CPU"', 'device = "GPU"').replace('method = "default"', 'method = "accuracy_aware"')
    text = text.replace('[validation]               # accuracy of FP32 and INT8, and the drop, are measured here\n'
                        'kind = "imagenet"', '[validation]\nkind = "images"\nrecursive = true')
    assert text != disk
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="toml", version=1, text=text)))
    await wait_for(lambda: {"device-without-int8", "unannotated-accuracy-aware"} <= set(codes(client, spec)), 10,
                   what="spec diagnostics from the unsaved buffer")
    assert spec.read_text() == disk  # nothing was saved
    lines = text.splitlines()
    diags = client.diagnostics[uri]
    dev = next(d for d in diags if d.code == "device-without-int8")
    assert lines[dev.range.start.line].startswith("device") and dev.range.end.character == len(lines[dev.range.start.line])

    hover = await client.text_document_hover_async(types.HoverParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line=next(i for i, l in enumerate(lines) if l.startswith("model")), character=3)))
    assert "IR version" in hover.contents.value and "FP32" in hover.contents.value
    assert "can be calibrated" in hover.contents.value

    actions = await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        range=types.Range(start=types.Position(0, 0), end=types.Position(len(lines), 0)),
        context=types.CodeActionContext(diagnostics=list(diags))))
    titles = {a.title for a in actions}
    assert {'Set device = "CPU"', 'Set method = "default"'} <= titles
    for action in actions:  # apply the fixes to the buffer as the editor would
        for edit in action.edit.changes[uri]:
            n = edit.range.start.line
            lines[n] = edit.new_text
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text="\n".join(lines) + "\n")]))
    await wait_for(lambda: not ({"device-without-int8", "unannotated-accuracy-aware"} & set(codes(client, spec))), 10,
                   what="spec diagnostics cleared by the code actions")


@pytest.mark.asyncio
async def test_dynamic_shape_warning_and_its_quick_fix(client: LanguageClient, workspace: Path):
    """Without [deployment] the example's [?,1,32,32] model is measured at the dynamic shape: a warning,
    and a quick fix that adds the shape its data has; applied, the warning goes."""
    spec = spec_of(workspace)
    uri = spec.as_uri()
    text = spec.read_text().split("\n[deployment]")[0]
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="toml", version=1, text=text)))
    await wait_for(lambda: "dynamic-shape" in codes(client, spec), 10, what="the dynamic-shape warning")
    diag = next(d for d in client.diagnostics[uri] if d.code == "dynamic-shape")
    assert diag.severity == types.DiagnosticSeverity.Warning and text.splitlines()[diag.range.start.line].startswith("model")
    lines = text.splitlines()
    actions = await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), range=diag.range,
        context=types.CodeActionContext(diagnostics=[diag])))
    assert [a.title for a in actions] == ["Deploy at shape [1, 1, 32, 32]"]
    (edit,) = actions[0].edit.changes[uri]
    assert edit.range.start.line == len(lines) and edit.new_text == "\n[deployment]\nshape = [1, 1, 32, 32]\n"
    fixed = text + ("" if text.endswith("\n") else "\n") + edit.new_text
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text=fixed)]))
    await wait_for(lambda: "dynamic-shape" not in codes(client, spec), 10, what="the warning cleared by the fix")
