"""The fixtures of the daemon's end-to-end tests: a workspace holding the shipped example, two model
pairs outside it, and a pytest-lsp client started over stdio with the recorded `initialize` of VS
Code, Neovim 0.7 or Emacs (eglot) (tests/daemon/lsp_clients/). Test modules import them by name."""
from __future__ import annotations

from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from conftest import copy_example
from daemon_helpers import CLIENTS, SERVER, initialize_params, model_pair, server_env


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
    # a recorded client's name, or (name, progress[, hover formats]) for a variant of it
    name, progress, hover = (request.param, None, None) if isinstance(request.param, str) else (*request.param, None)[:3]
    lsp_client.registrations = []
    lsp_client.feature(types.CLIENT_REGISTER_CAPABILITY)(lambda params: lsp_client.registrations.extend(
        params.registrations))
    lsp_client.lens_refreshes = 0

    def _refresh(params):
        lsp_client.lens_refreshes += 1

    lsp_client.feature(types.WORKSPACE_CODE_LENS_REFRESH)(_refresh)
    await lsp_client.initialize_session(initialize_params(name, workspace, progress=progress, hover=hover))
    lsp_client.name = name
    yield
    await lsp_client.shutdown_session()
