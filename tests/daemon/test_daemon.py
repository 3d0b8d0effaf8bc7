"""The language-server daemon end to end over stdio (pytest-lsp), as VS Code, Neovim 0.7 and Emacs
(eglot) drive it: their recorded `initialize` capabilities are in tests/lsp_clients/."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from conftest import copy_example
from daemon_helpers import (CLIENTS, ROOT, SERVER, command, copy_pair, initialize_params, model_pair, server_env,
                            wait_for, wait_job)

@pytest.fixture
def workspace(tmp_path) -> Path:
    ws = tmp_path / "ws"
    copy_example(ws)
    return ws


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """An ineligible (FP16-computing) and an eligible FP32 pair, built once, outside any workspace."""
    folder = tmp_path_factory.mktemp("models")
    return {"fp16": model_pair(folder / "fp16", "net", fp16=True), "fp32": model_pair(folder / "fp32", "net")}


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER, server_env=server_env()), params=list(CLIENTS))
async def client(request, lsp_client: LanguageClient, workspace: Path):
    name = request.param if isinstance(request.param, str) else request.param[0]
    progress = None if isinstance(request.param, str) else request.param[1]
    lsp_client.registrations = []
    lsp_client.feature(types.CLIENT_REGISTER_CAPABILITY)(lambda params: lsp_client.registrations.extend(
        params.registrations))
    lsp_client.lens_refreshes = 0

    def _refresh(params):
        lsp_client.lens_refreshes += 1

    lsp_client.feature(types.WORKSPACE_CODE_LENS_REFRESH)(_refresh)
    await lsp_client.initialize_session(initialize_params(name, workspace, progress=progress))
    lsp_client.name = name
    yield
    await lsp_client.shutdown_session()


def spec_of(ws: Path) -> Path:
    return ws / "digits" / "digits.calibration.toml"


def codes(client, path: Path) -> list[str]:
    return [d.code for d in client.diagnostics.get(path.as_uri(), [])]


@pytest.mark.asyncio
async def test_model_diagnostics_follow_the_files(client: LanguageClient, workspace: Path, models):
    """An ineligible model dropped into the workspace gets a diagnostic (never while half-written),
    which clears when the model is replaced by an eligible one, and when it is deleted."""
    drop = workspace / "incoming"
    target = drop / "net.xml"
    copy_pair(models["fp16"], drop, half_first=0.6)
    diags = await wait_for(lambda: client.diagnostics.get(target.as_uri()), 5, what="model diagnostic")
    assert "truncated-weights" not in codes(client, target) and "missing-weights" not in codes(client, target)
    d = next(d for d in diags if d.code == "not-fp32")
    assert d.source == "int8wb" and d.severity == types.DiagnosticSeverity.Error
    line = target.read_text().splitlines()[d.range.start.line]
    assert d.range.start.character == 0 and d.range.end.character == len(line) and "<port" in line or "<layer" in line

    copy_pair(models["fp32"], drop)  # fixed: the same name now holds an eligible FP32 pair
    await wait_for(lambda: target.as_uri() not in client.diagnostics or not client.diagnostics[target.as_uri()],
                   5, what="diagnostics cleared after the fix")

    copy_pair(models["fp16"], drop, name="other")
    other = drop / "other.xml"
    await wait_for(lambda: "not-fp32" in codes(client, other), 5, what="second model diagnostic")
    other.unlink()
    other.with_suffix(".bin").unlink()
    await wait_for(lambda: not client.diagnostics.get(other.as_uri()), 5, what="diagnostics cleared on delete")

    status = await command(client, "int8wb.status")
    assert status["openvino_loaded"] is False and status["nncf_loaded"] is False
    assert str(workspace.resolve()) in status["roots"]


@pytest.mark.asyncio
async def test_spec_buffer_diagnostics_hover_and_fixes(client: LanguageClient, workspace: Path):
    spec = spec_of(workspace)
    uri = spec.as_uri()
    disk = spec.read_text()
    text = disk.replace('device = "CPU"', 'device = "GPU"').replace('method = "default"', 'method = "accuracy_aware"')
    text = text.replace('[validation]               # accuracy of FP32 and INT8, and the drop, are measured here\n'
                        'kind = "imagenet"', '[validation]\nkind = "images"')
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
async def test_calibrate_progress_lens_cancel_and_kill(client: LanguageClient, workspace: Path):
    spec = spec_of(workspace)
    uri = spec.as_uri()
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="toml", version=1, text=spec.read_text())))

    # calibrate → progress → done → code lens with the result
    job_id = await command(client, "int8wb.calibrate", uri)
    done = await wait_job(client, job_id, ("done", "failed"), 90)
    assert done["state"] == "done", done["error"]
    token = f"int8wb/job/{job_id}"
    reports = client.progress_reports.get(token, [])
    assert isinstance(reports[0], types.WorkDoneProgressBegin) and reports[0].cancellable
    percents = [r.percentage for r in reports if isinstance(r, types.WorkDoneProgressReport)]
    assert percents and percents == sorted(percents) and max(percents) > 50
    assert {r.message for r in reports if isinstance(r, types.WorkDoneProgressReport)} >= {"calibrating"}
    assert isinstance(reports[-1], types.WorkDoneProgressEnd) and "drop" in reports[-1].message
    lenses = await client.text_document_code_lens_async(types.CodeLensParams(
        text_document=types.TextDocumentIdentifier(uri=uri)))
    titles = [lens.command.title for lens in lenses]
    assert "▶ Calibrate" in titles
    assert any(t.startswith("Last result: drop") and "vs FP32 default" in t for t in titles), titles
    report = next(lens for lens in lenses if lens.command.command == "int8wb.openReport").command.arguments[0]
    assert report.endswith(".report.html") and Path(report.removeprefix("file://")).is_file()
    comparison = await command(client, "int8wb.compare", uri)
    assert comparison["job"] == job_id and "drop" in comparison and comparison["report"].endswith(".report.html")
    out = spec.parent / "calibrated"
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    # any two models side by side (here FP32 vs the INT8 just made), measured in a child process
    int8 = next(out.glob("*.int8.xml"))
    pair = await command(client, "int8wb.compare", (spec.parent / "model.xml").as_uri(), int8.as_uri(),
                         {"duration": 0.3})
    assert pair["models"]["a"]["name"] == "model.xml" and pair["models"]["b"]["quantized"] is True
    assert Path(pair["report"]).is_file() and (await command(client, "int8wb.status"))["openvino_loaded"] is False

    # cancel stops a running job at once; nothing new is written
    job_id = await command(client, "int8wb.calibrate", uri)
    running = await wait_job(client, job_id, "running", 30, min_percent=3)
    if client.name == "vscode":  # the editor's cancel button on the progress notification
        client.protocol.notify(types.WINDOW_WORK_DONE_PROGRESS_CANCEL,
                               types.WorkDoneProgressCancelParams(token=f"int8wb/job/{job_id}"))
    else:
        assert (await command(client, "int8wb.cancel", job_id))["cancelled"] is True
    t0 = time.monotonic()
    cancelled = await wait_job(client, job_id, ("cancelled", "failed", "done"), 10)
    assert cancelled["state"] == "cancelled" and time.monotonic() - t0 < 5
    await wait_for(lambda: not alive(running["pid"]), 5, what="worker gone")
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before

    # a worker killed from outside (as the OOM killer would) fails its job; the daemon lives on
    job_id = await command(client, "int8wb.calibrate", uri)
    running = await wait_job(client, job_id, "running", 30, min_percent=3)
    os.kill(running["pid"], signal.SIGKILL)
    failed = await wait_job(client, job_id, ("failed", "done", "cancelled"), 10)
    assert failed["state"] == "failed" and "SIGKILL" in failed["error"]
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    status = await command(client, "int8wb.status")
    assert status["pid"] != running["pid"] and status["openvino_loaded"] is False

    # errors come back as LSP errors, never a dead server
    with pytest.raises(Exception, match="no such job"):
        await command(client, "int8wb.cancel", "nope")
    with pytest.raises(Exception, match="spec not found"):
        await command(client, "int8wb.calibrate", (workspace / "missing.calibration.toml").as_uri())
    assert (await command(client, "int8wb.status"))["pid"] == status["pid"]


@pytest.mark.asyncio
@pytest.mark.parametrize("client", [("emacs", False)], indirect=True, ids=["no-progress-client"])
async def test_without_progress_support_jobs_log_messages(client: LanguageClient, workspace: Path):
    """A client without window.workDoneProgress gets window/logMessage lines instead, and can cancel."""
    uri = spec_of(workspace).as_uri()
    job_id = await command(client, "int8wb.calibrate", uri)
    await wait_job(client, job_id, "running", 30, min_percent=3)
    assert not client.progress_reports
    assert (await command(client, "int8wb.cancel", job_id))["cancelled"] is True
    await wait_job(client, job_id, "cancelled", 10)
    await wait_for(lambda: any("cancelled" in m.message and job_id in m.message or "cancelled:" in m.message
                               for m in client.log_messages), 5, what="log message")
    assert any(job_id in m.message and "%" in m.message for m in client.log_messages)


@pytest.mark.asyncio
@pytest.mark.parametrize("client", ["vscode"], indirect=True)
async def test_folders_added_later_are_watched(client: LanguageClient, workspace: Path, tmp_path, models):
    # VS Code announces dynamic file watching: the daemon registers its globs (its own watcher runs too)
    watch = await wait_for(lambda: [r for r in client.registrations
                                    if r.method == types.WORKSPACE_DID_CHANGE_WATCHED_FILES], 5, what="registration")
    assert {w["globPattern"] for w in watch[0].register_options["watchers"]} >= {"**/*.xml", "**/*.bin"}
    extra = tmp_path / "second"
    extra.mkdir()
    client.workspace_did_change_workspace_folders(types.DidChangeWorkspaceFoldersParams(
        event=types.WorkspaceFoldersChangeEvent(added=[types.WorkspaceFolder(uri=extra.as_uri(), name="second")],
                                                removed=[])))
    await wait_for(lambda: _has_root(client, extra), 5, what="root added")
    target = copy_pair(models["fp16"], extra / "m")
    await wait_for(lambda: "not-fp32" in codes(client, target), 5, what="diagnostic in the added folder")


async def _has_root(client, folder: Path) -> bool:
    return str(folder.resolve()) in (await command(client, "int8wb.status"))["roots"]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("argv", [["-m", "int8wb.editor_client.cli", "serve"], ["-m", "int8wb.daemon"]], ids=["int8wb serve", "python -m int8wb.daemon"])
def test_entry_points_speak_lsp_over_stdio(argv, tmp_path):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                       "params": {"processId": None, "rootUri": tmp_path.as_uri(), "capabilities": {}}})
    exit_ = json.dumps({"jsonrpc": "2.0", "method": "exit"})
    frame = lambda b: f"Content-Length: {len(b)}\r\n\r\n{b}".encode()  # noqa: E731
    proc = subprocess.run([SERVER[0], *argv], input=frame(body) + frame(exit_), capture_output=True, timeout=30,
                          env=server_env(), cwd=tmp_path)
    header, _, payload = proc.stdout.partition(b"\r\n\r\n")
    reply = json.loads(payload[: int(header.split(b"\r\n")[0].split(b":")[1])])
    caps = reply["result"]["capabilities"]
    assert "int8wb.calibrate" in caps["executeCommandProvider"]["commands"]
    assert caps["hoverProvider"] and caps["codeLensProvider"] is not None


# -- Neovim 0.7 (headless) as the real client ---------------------------------------------------------
NVIM_INIT = r"""
local ws = os.getenv("INT8WB_WS")
local out = os.getenv("INT8WB_OUT")
local result = {}
local function finish()
  local fh = io.open(out, "w"); fh:write(vim.fn.json_encode(result)); fh:close()
  vim.cmd("qa!")
end
local id = vim.lsp.start_client({
  cmd = { os.getenv("INT8WB_PYTHON"), "-m", "int8wb.daemon" },
  cmd_env = { PYTHONPATH = os.getenv("INT8WB_ROOT") },
  root_dir = ws,
  workspace_folders = { { uri = vim.uri_from_fname(ws), name = "ws" } },
  on_exit = function(code) result.exit_code = code end,
})
local client = vim.lsp.get_client_by_id(id)
result.started = vim.wait(10000, function() return client.initialized end, 50)
-- drop an ineligible model into the workspace, as a user would
local xml = ws .. "/incoming/net.xml"
vim.fn.mkdir(ws .. "/incoming", "p")
vim.fn.system({ "cp", os.getenv("INT8WB_MODEL") .. ".xml", xml })
vim.fn.system({ "cp", os.getenv("INT8WB_MODEL") .. ".bin", ws .. "/incoming/net.bin" })
local buf = vim.uri_to_bufnr(vim.uri_from_fname(xml))
result.got_diagnostic = vim.wait(10000, function() return #vim.diagnostic.get(buf) > 0 end, 50)
result.codes = {}
for _, d in ipairs(vim.diagnostic.get(buf)) do table.insert(result.codes, d.code or (d.user_data and d.user_data.lsp and d.user_data.lsp.code)) end
-- calibrate the example spec to completion
local spec = vim.uri_from_fname(ws .. "/digits/digits.calibration.toml")
local resp = client.request_sync("workspace/executeCommand", { command = "int8wb.calibrate", arguments = { spec } }, 20000)
result.job = resp and resp.result
result.error = resp and resp.err and resp.err.message
local state
result.finished = vim.wait(90000, function()
  local r = client.request_sync("workspace/executeCommand", { command = "int8wb.jobs", arguments = {} }, 5000)
  for _, row in ipairs((r and r.result) or {}) do
    if row.id == result.job then state = row end
  end
  return state ~= nil and (state.state == "done" or state.state == "failed" or state.state == "cancelled")
end, 250)
result.state = state and state.state
result.report = state and state.summary ~= vim.NIL and state.summary and state.summary.report
client.stop()
vim.wait(3000, function() return client.is_stopped() end, 50)
finish()
"""


@pytest.mark.skipif(shutil.which("nvim") is None, reason="nvim is not on PATH")
def test_neovim_headless_smoke(tmp_path, models):
    ws = tmp_path / "ws"
    copy_example(ws)
    init = tmp_path / "init.lua"
    init.write_text(textwrap.dedent(NVIM_INIT))
    out = tmp_path / "out.json"
    env = dict(os.environ, INT8WB_WS=str(ws), INT8WB_OUT=str(out), INT8WB_ROOT=str(ROOT),
               INT8WB_PYTHON=SERVER[0], INT8WB_MODEL=str(models["fp16"].with_suffix("")), HOME=str(tmp_path),
               XDG_CONFIG_HOME=str(tmp_path / "cfg"), XDG_DATA_HOME=str(tmp_path / "data"),
               XDG_STATE_HOME=str(tmp_path / "state"), XDG_CACHE_HOME=str(tmp_path / "cache"))
    proc = subprocess.run(["nvim", "--headless", "-n", "-i", "NONE", "-u", "NONE", "-c", f"luafile {init}"], env=env, capture_output=True,
                          timeout=150, stdin=subprocess.DEVNULL)
    assert out.is_file(), f"nvim wrote no result: rc={proc.returncode} {proc.stderr.decode()[-2000:]}"
    result = json.loads(out.read_text())
    assert result["started"] is True
    assert result["got_diagnostic"] is True and "not-fp32" in result["codes"], result
    assert result["job"], result
    assert result["finished"] is True and result["state"] == "done", result
    assert result["report"].endswith(".report.html")
