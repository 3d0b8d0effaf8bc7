"""diagnostics.py, hover.py and code_actions.py end to end: an unsaved spec buffer gets diagnostics,
a hover on its model line, and quick fixes that clear them."""
from __future__ import annotations

from pathlib import Path

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from daemon_fixtures import client, workspace  # noqa: F401  (fixtures)
from daemon_helpers import codes, open_spec, spec_of, wait_for


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
    calibrate = next(a for a in actions if a.title == "Calibrate with int8wb")  # every client can reach it
    assert isinstance(calibrate, types.Command) and calibrate.command == "int8wb.calibrate"
    assert list(calibrate.arguments) == [uri]
    for action in (a for a in actions if isinstance(a, types.CodeAction) and a.edit):  # apply the fixes to the buffer as the editor would
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
    fixes = [a for a in actions if isinstance(a, types.CodeAction)]
    assert [a.title for a in fixes] == ["Deploy at shape [1, 1, 32, 32]"]
    (edit,) = fixes[0].edit.changes[uri]
    assert edit.range.start.line == len(lines) and edit.new_text == "\n[deployment]\nshape = [1, 1, 32, 32]\n"
    fixed = text + ("" if text.endswith("\n") else "\n") + edit.new_text
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text=fixed)]))
    await wait_for(lambda: "dynamic-shape" not in codes(client, spec), 10, what="the warning cleared by the fix")


@pytest.mark.asyncio
async def test_ignored_scope_names_complete_explain_and_are_checked(client: LanguageClient, workspace: Path):
    """Layer names of the spec's own model: completed inside `names = ["`, explained on hover, and a
    name that matches no layer is a located diagnostic with a did-you-mean."""
    from int8wb.calibration.layer_table import layer_table

    spec = spec_of(workspace)
    uri = spec.as_uri()
    conv = next(e for e in layer_table(spec.parent / "model.xml") if e.type == "Convolution")
    text = spec.read_text() + '\n[calibration.ignored_scope]\nnames = [""]\ntypes = ["Convolution"]\n'
    lines = text.splitlines()
    at = lines.index('names = [""]')
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="toml", version=1, text=text)))
    done = await client.text_document_completion_async(types.CompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(at, len('names = ["'))))
    items = {i.label: i for i in done.items}
    assert conv.name in items and items[conv.name].insert_text == conv.name  # inside the quotes already
    assert items[conv.name].detail.startswith("Convolution [")
    assert not [i for i in done.items if i.detail.startswith("Const")]  # constants are not layers one ignores
    kinds = await client.text_document_completion_async(types.CompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(at + 1, len("types = ["))))
    assert {"Convolution", "MatMul"} <= {i.label for i in kinds.items}
    assert next(i for i in kinds.items if i.label == "Convolution").insert_text == '"Convolution"'
    outside = await client.text_document_completion_async(types.CompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(0, 0)))
    assert not outside or not outside.items

    typo = conv.name.lower() if conv.name.lower() != conv.name else conv.name.upper()
    lines[at] = f'names = ["{typo}"]'
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text="\n".join(lines) + "\n")]))
    def unmatched():
        return [d for d in client.diagnostics.get(uri, []) if d.code == "ignored-scope-unmatched"]

    # The first buffer's empty name was unmatched too: wait for the diagnostic of the typo itself.
    await wait_for(lambda: any(repr(typo) in d.message for d in unmatched()), 10, what="the unmatched-name diagnostic")
    [diag] = unmatched()
    assert diag.range.start.line == at and f"did you mean '{conv.name}'?" in diag.message
    hover = await client.text_document_hover_async(types.HoverParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(at + 1, len('types = ["C'))))
    assert "Convolution" in hover.contents.value and "INT8-able" in hover.contents.value
    lines[at] = f'names = ["{conv.name}"]'
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=3),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text="\n".join(lines) + "\n")]))
    await wait_for(lambda: "ignored-scope-unmatched" not in codes(client, spec), 10, what="the diagnostic cleared")
    hover = await client.text_document_hover_async(types.HoverParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(at, len('names = ["') + 1)))
    assert hover.contents.value.startswith(f"**{conv.name}**: Convolution, output [")


@pytest.mark.asyncio
async def test_the_layers_accuracy_aware_left_in_fp32_are_pinned_by_a_code_action(client: LanguageClient,
                                                                                   workspace: Path):
    from conftest import outlier_mlp
    from daemon_helpers import command, wait_job
    from int8wb.calibration import load_spec

    folder = outlier_mlp(workspace / "mlp")
    spec = folder / "mlp.calibration.toml"
    spec.write_text('model = "mlp.xml"\n[dataset]\nkind = "npz"\npath = "calibration.npz"\n[validation]\n'
                    'kind = "npz"\npath = "validation.npz"\n[calibration]\nmethod = "accuracy_aware"\n'
                    'max_drop = 0.01\n[inference]\nduration = 0.2\nrounds = 2\n[deployment]\nshape = [1, 64]\n')
    uri = spec.as_uri()
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="toml", version=1, text=spec.read_text())))
    lines = spec.read_text().splitlines()
    ask = types.CodeActionParams(text_document=types.TextDocumentIdentifier(uri=uri),
                                 range=types.Range(start=types.Position(0, 0), end=types.Position(0, 0)),
                                 context=types.CodeActionContext(diagnostics=[]))
    assert not [a for a in await client.text_document_code_action_async(ask) or [] if a.title.startswith("Pin")]
    assert "Calibrate with int8wb" in {a.title for a in await client.text_document_code_action_async(ask)}
    job_id = await command(client, "int8wb.calibrate", uri)
    done = await wait_job(client, job_id, ("done", "failed"), 120)
    assert done["state"] == "done", done["error"]
    kept = done["summary"]["fp32_layers"]
    assert kept  # the outlier's MatMul at least
    [pin] = [a for a in await client.text_document_code_action_async(ask) if a.title.startswith("Pin")]
    assert pin.title == f"Pin the {len(kept)} layer(s) AccuracyAware left in FP32 in ignored_scope"
    (edit,) = pin.edit.changes[uri]
    fixed = "\n".join(lines) + "\n" + edit.new_text
    pinned = folder / "pinned.calibration.toml"
    pinned.write_text(fixed)
    assert load_spec(pinned).calibration.ignored_scope.names == kept  # a valid spec that keeps them float


@pytest.mark.asyncio
async def test_opening_a_model_sends_its_diagnostics_again(client: LanguageClient, workspace: Path):
    """eglot shows the diagnostics of open buffers only: a model's problems come again on didOpen."""
    from daemon_helpers import model_pair

    xml = model_pair(workspace / "half", "net", fp16=True)
    uri = xml.as_uri()
    await wait_for(lambda: "not-fp32" in codes(client, xml), 20, what="the model's diagnostics")
    client.diagnostics.pop(uri)
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="xml", version=1, text=xml.read_text())))
    await wait_for(lambda: "not-fp32" in codes(client, xml), 10, what="the diagnostics sent again on open")


@pytest.mark.asyncio
async def test_spec_keys_and_values_complete_from_the_schema(client: LanguageClient, workspace: Path):
    uri, lines = open_spec(client, workspace, '\n[calibration.activations]\n\n[preprocessing.x]\n')

    async def complete(line: int, col: int) -> dict:
        found = await client.text_document_completion_async(types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line, col)))
        return {i.label: i for i in (found.items if found else [])}

    method = lines.index('method = "default"')
    values = await complete(method, len("method = "))
    assert set(values) == {"default", "accuracy_aware", "weights_only"} and values["default"].insert_text == '"default"'
    assert "INT8" in values["weights_only"].documentation
    inside = await complete(method, len('method = "'))
    assert inside["accuracy_aware"].insert_text == "accuracy_aware"
    keys = await complete(lines.index("[calibration.activations]") + 1, 0)
    assert set(keys) == {"range_estimator", "per_channel"} and keys["range_estimator"].insert_text == "range_estimator = "
    top = await complete(method + 1, 0)  # in [calibration]: the keys not written yet, no sub-tables
    assert "max_drop" in top and "method" not in top and "ignored_scope" not in top
    assert await complete(len(lines), 0) == {}  # below [preprocessing.x]: no table of the spec


@pytest.mark.asyncio
async def test_settings_change_live(client: LanguageClient, workspace: Path):
    from daemon_helpers import command

    before = (await command(client, "int8wb.status"))["settings"]
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"int8wb": {"debounceSeconds": 0.4, "rescanSeconds": 7, "maxJobs": 2}}))
    await wait_for(lambda: any("maxJobs is not a setting" in m.message for m in client.messages), 5,
                   what="the refused setting, shown")
    after = (await command(client, "int8wb.status"))["settings"]
    assert after == {"debounceSeconds": 0.4, "rescanSeconds": 7.0} != before


@pytest.mark.asyncio
@pytest.mark.parametrize("client", [("emacs", None, ["plaintext"])], indirect=True, ids=["plaintext-client"])
async def test_hovers_are_plain_text_for_a_client_without_markdown(client: LanguageClient, workspace: Path):
    """eglot without markdown-mode reads plaintext only: the model's facts and a layer type come as
    plain text, with no Markdown marks (the recorded clients, which read Markdown, get it above)."""
    uri, lines = open_spec(client, workspace, '\n[calibration.ignored_scope]\ntypes = ["Convolution"]\n')

    async def hover_at(line: int, character: int) -> types.MarkupContent:
        found = await client.text_document_hover_async(types.HoverParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line, character)))
        return found.contents

    model = await hover_at(next(i for i, l in enumerate(lines) if l.startswith("model")), 3)
    assert model.kind == types.MarkupKind.PlainText and "IR version" in model.value and "(model.xml)" in model.value
    layer = await hover_at(lines.index('types = ["Convolution"]'), len('types = ["C'))
    assert layer.kind == types.MarkupKind.PlainText and layer.value.startswith("Convolution: ")
    assert "**" not in model.value + layer.value and "`" not in model.value + layer.value
