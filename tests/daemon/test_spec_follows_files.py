"""An open spec follows the files it names: its model deleted under it, a resize its model cannot take."""
from __future__ import annotations

from pathlib import Path

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from daemon_fixtures import client, workspace  # noqa: F401  (fixtures)
from daemon_helpers import codes, command, spec_of, wait_for


def open_buffer(client: LanguageClient, spec: Path, text: str) -> None:
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=spec.as_uri(), language_id="toml", version=1, text=text)))


@pytest.mark.asyncio
async def test_an_open_spec_says_model_missing_once_its_model_is_deleted(client: LanguageClient, workspace: Path):
    spec = spec_of(workspace)
    open_buffer(client, spec, spec.read_text())
    assert [p["rule"] for p in await command(client, "int8wb.check", spec.as_uri())] == []  # a clean spec
    (spec.parent / "model.xml").unlink()
    (spec.parent / "model.bin").unlink()
    await wait_for(lambda: "model-missing" in codes(client, spec), 10, what="model-missing after the delete")
    d = next(d for d in client.diagnostics[spec.as_uri()] if d.code == "model-missing")
    assert spec.read_text().splitlines()[d.range.start.line].startswith("model = ")


@pytest.mark.asyncio
async def test_a_sample_the_model_cannot_take_is_a_problem_on_the_spec(client: LanguageClient, workspace: Path):
    """It used to sit on a .png only: the spec looked fine, and calibrate failed at `line None`."""
    spec = spec_of(workspace)
    text = spec.read_text().replace("resize = [32, 32]", "resize = [16, 16]")
    assert "resize = [16, 16]" in text
    open_buffer(client, spec, text)
    await wait_for(lambda: "input-shape-mismatch" in codes(client, spec), 30, what="input-shape-mismatch on the spec")
    d = next(d for d in client.diagnostics[spec.as_uri()] if d.code == "input-shape-mismatch")
    line = text.splitlines()[d.range.start.line]
    assert line.startswith("path = ") and "sample shape" in d.message
