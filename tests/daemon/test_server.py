"""server.py: the entry points speak LSP over stdio, Neovim 0.7 (headless) drives the whole daemon, and
the one registration table serves every command and feature."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from conftest import copy_example
from daemon_fixtures import models  # noqa: F401  (fixtures)
from daemon_helpers import ROOT, SERVER, server_env
from int8wb.daemon.config import Settings
from int8wb.daemon.server import FEATURES, create_server


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


# -- the registration table, in process -----------------------------------------------------------------
def test_one_table_registers_every_command_and_feature():
    ls = create_server(Settings())
    assert list(ls.protocol.fm.commands) == ["int8wb.calibrate", "int8wb.cancel", "int8wb.jobs", "int8wb.compare",
                                             "int8wb.check", "int8wb.openReport", "int8wb.status"]
    # what waits on threads or the client is async; the quick lookups run inline on the loop
    commands = ls.protocol.fm.commands
    assert {n for n, h in commands.items() if asyncio.iscoroutinefunction(h)} == {
        "int8wb.calibrate", "int8wb.compare", "int8wb.check", "int8wb.openReport"}
    features = ls.protocol.fm.features
    assert {m for m, h in features.items() if asyncio.iscoroutinefunction(h)} == {
        types.INITIALIZED, types.SHUTDOWN, types.TEXT_DOCUMENT_HOVER, types.TEXT_DOCUMENT_COMPLETION}
    assert set(features) == {method for method, _, _ in FEATURES}


def test_a_command_error_is_an_invalid_params_reply():
    commands = create_server(Settings()).protocol.fm.commands
    with pytest.raises(JsonRpcInvalidParams, match="missing argument: job id"):
        commands["int8wb.cancel"]()
    with pytest.raises(JsonRpcInvalidParams, match="expected a file URI or path"):
        asyncio.run(commands["int8wb.check"](42))


def test_the_whole_file_system_is_never_a_workspace_folder(monkeypatch, tmp_path):
    """An editor opened at '/' made the daemon create /.int8wb, watch every folder of the machine and
    walk all of them every rescan; it now declines the folder and says so."""
    import int8wb.daemon.server as server

    touched = []
    monkeypatch.setattr(server, "JobStore", lambda root: touched.append(root))
    ls = create_server(Settings())
    monkeypatch.setattr(ls.watching, "watch", lambda root: touched.append(root))
    shown = []
    monkeypatch.setattr(ls, "show", lambda message, kind=None: shown.append(message))
    ls.add_root(Path("/"))
    assert touched == [] and ls.roots == {} and "whole file system" in shown[0]
