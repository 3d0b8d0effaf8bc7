"""server.py: the entry points speak LSP over stdio and the one registration table serves every command
and feature (real editors drive the whole daemon in test_real_clients.py)."""
from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from daemon_helpers import SERVER, server_env
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
