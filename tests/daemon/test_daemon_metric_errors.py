"""A custom metric that raises, run by the language server: that job fails with the located
metric-error and the daemon keeps serving (the next calibration of the mended metric is done)."""
from __future__ import annotations

from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from conftest import copy_example
from daemon_helpers import SERVER, command, initialize_params, server_env, spec_of, wait_job

CORPUS = '''import numpy as np

class Top1:
    """Dataset level: top-1 over the whole pass."""
    def __init__(self):
        self.right = []
    def update(self, output, sample):
        self.right.append(float(int(np.argmax(output)) == sample.label))
    def compute(self):
        return sum(self.right) / len(self.right)

class Broken(Top1):
    def compute(self):
        raise RuntimeError("corpus too small")
'''


def trusted_env() -> dict:
    env = server_env()
    env["INT8WB_TRUST"] = "1"  # the workspace's metric may run
    return env


@pytest.fixture
def workspace(tmp_path) -> Path:
    ws = tmp_path / "ws"
    spec = copy_example(ws)
    (spec.parent / "corpus.py").write_text(CORPUS)
    spec.write_text(spec.read_text().replace('metric = "top1"', 'metric = "custom"\ncustom = "corpus.py:Broken"'))
    return ws


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER, server_env=trusted_env()))
async def client(lsp_client: LanguageClient, workspace: Path):
    lsp_client.feature(types.CLIENT_REGISTER_CAPABILITY)(lambda params: None)
    lsp_client.feature(types.WORKSPACE_CODE_LENS_REFRESH)(lambda params: None)
    await lsp_client.initialize_session(initialize_params("vscode", workspace))
    yield
    await lsp_client.shutdown_session()


@pytest.mark.asyncio
async def test_a_raising_metric_fails_its_job_located_and_the_daemon_serves_on(client: LanguageClient,
                                                                               workspace: Path):
    spec = spec_of(workspace)
    metric = spec.parent / "corpus.py"
    first = await command(client, "int8wb.calibrate", spec.as_uri())
    failed = await wait_job(client, first, ("done", "failed"), 120)
    assert failed["state"] == "failed"
    assert "metric 'Broken' raised RuntimeError: corpus too small in compute()" in failed["error"]
    (problem,) = failed["summary"]["problems"]
    line = CORPUS.splitlines().index('        raise RuntimeError("corpus too small")') + 1
    assert (problem["rule"], problem["path"], problem["line"]) == ("metric-error", str(metric), line)
    assert not (spec.parent / "calibrated").exists()

    status = await command(client, "int8wb.status")
    spec.write_text(spec.read_text().replace("corpus.py:Broken", "corpus.py:Top1"))
    second = await command(client, "int8wb.calibrate", spec.as_uri())
    done = await wait_job(client, second, ("done", "failed"), 120)
    assert done["state"] == "done", done["error"]
    assert done["summary"]["metric"] == "Top1" and done["summary"]["drop_ci"] is None
    assert (await command(client, "int8wb.status"))["pid"] == status["pid"]
