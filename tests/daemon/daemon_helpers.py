"""Helpers shared by the daemon tests and benchmarks/bench_daemon.py: recorded client capabilities,
model files to drop into a workspace, and polling."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
from pathlib import Path

from lsprotocol import types
from lsprotocol.converters import get_converter

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CLIENTS = {  # recorded `initialize` capabilities (see lsp_clients/README.md)
    "vscode": "vscode_1.65.2.json",
    "neovim": "neovim_0.7.0.json",
    "emacs": "emacs_29.1_eglot.json",
}
SERVER = [sys.executable, "-m", "int8wb.daemon"]


def server_env(**extra: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), INT8WB_RESCAN_SECONDS="3")
    env.update(extra)
    env.pop("INT8WB_TRUST", None)
    return env


def capabilities(name: str, *, progress: bool | None = None, hover: list[str] | None = None) -> types.ClientCapabilities:
    raw = json.loads((HERE / "lsp_clients" / CLIENTS[name]).read_text())["capabilities"]
    if progress is not None:  # a client that does (not) announce window.workDoneProgress
        raw.setdefault("window", {})["workDoneProgress"] = progress
    if hover is not None:  # the hover formats it reads (eglot without markdown-mode: plaintext only)
        raw.setdefault("textDocument", {}).setdefault("hover", {})["contentFormat"] = hover
    return get_converter().structure(raw, types.ClientCapabilities)


def initialize_params(name: str, workspace: Path, *, progress: bool | None = None,
                      hover: list[str] | None = None) -> types.InitializeParams:
    uri = workspace.as_uri()
    return types.InitializeParams(
        capabilities=capabilities(name, progress=progress, hover=hover), root_uri=uri, root_path=str(workspace),
        workspace_folders=[types.WorkspaceFolder(uri=uri, name=workspace.name)],
        client_info=types.ClientInfo(name=name))


def model_pair(folder: Path, name: str, *, fp16: bool = False, seed: int = 0) -> Path:
    """Writes a small real IR pair (FP32, or FP16-computing and so ineligible) and returns the XML."""
    sys.path.insert(0, str(HERE.parent))  # tests/conftest.py
    from conftest import conv_net, save

    return save(conv_net(fp16=fp16, seed=seed), folder / f"{name}.xml")


def copy_pair(xml: Path, dest_dir: Path, *, name: str | None = None, half_first: float = 0.0) -> Path:
    """Copies an IR pair like a user would (XML, then weights). With `half_first`, the .bin is written
    in two halves `half_first` seconds apart, so a watcher sees a half-written pair first."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    name = name or xml.stem
    dest = dest_dir / f"{name}.xml"
    shutil.copyfile(xml, dest)
    data = xml.with_suffix(".bin").read_bytes()
    with open(dest.with_suffix(".bin"), "wb") as fh:
        if half_first:
            fh.write(data[: len(data) // 2])
            fh.flush()
            time.sleep(half_first)
            fh.write(data[len(data) // 2:])
        else:
            fh.write(data)
    return dest


async def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)


async def command(client, name: str, *args):
    return await client.workspace_execute_command_async(types.ExecuteCommandParams(command=name,
                                                                                   arguments=list(args)))


async def job(client, job_id: str) -> dict | None:
    rows = await command(client, "int8wb.jobs")
    return next((r for r in rows if r["id"] == job_id), None)


async def wait_job(client, job_id: str, states, timeout: float = 60.0, min_percent: float = -1) -> dict:
    states = {states} if isinstance(states, str) else set(states)

    async def ready():
        row = await job(client, job_id)
        return row if row and row["state"] in states and (row["percent"] or 0) >= min_percent else None

    return await wait_for(ready, timeout, 0.1, f"job {job_id} in {states}")


def spec_of(ws: Path) -> Path:
    return ws / "digits" / "digits.calibration.toml"


def codes(client, path: Path) -> list[str]:
    return [d.code for d in client.diagnostics.get(path.as_uri(), [])]


def open_spec(client, ws: Path, extra: str) -> tuple[str, list[str]]:
    """Opens the example spec in `client` with `extra` appended (unsaved); returns its URI and lines."""
    spec = spec_of(ws)
    text = spec.read_text() + extra
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=spec.as_uri(), language_id="toml", version=1, text=text)))
    return spec.as_uri(), text.splitlines()
