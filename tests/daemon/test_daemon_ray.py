"""The language server with INT8WB_RAY: its folders' calibrations run on a Ray cluster (conftest's
`ray_cluster`, which the daemon joins by its address; skipped without ray installed)."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from lsprotocol import types
from pytest_lsp import ClientServerConfig

from conftest import copy_example
from daemon_helpers import SERVER, command, initialize_params, server_env, spec_of, wait_job


@pytest.mark.asyncio
async def test_a_daemon_with_int8wb_ray_runs_its_jobs_on_the_cluster_and_stays_responsive(tmp_path, ray_cluster):
    workspace = tmp_path / "ws"
    copy_example(workspace)
    address = ray_cluster.get_runtime_context().gcs_address
    client = await ClientServerConfig(server_command=SERVER, server_env=server_env(INT8WB_RAY=address)).start()
    try:
        await client.initialize_session(initialize_params("vscode", workspace))
        uri = spec_of(workspace).as_uri()
        job_id = await command(client, "int8wb.calibrate", uri)
        running = await wait_job(client, job_id, "running", 60, min_percent=1)
        # its worker is the child of a Ray worker process (`ray::run_worker`), not of the daemon
        with open(f"/proc/{running['pid']}/stat", "rb") as fh:
            parent = int(fh.read().rsplit(b")", 1)[1].split()[1])
        with open(f"/proc/{parent}/cmdline", "rb") as fh:
            assert fh.read().startswith(b"ray::run_worker")
        # while the cluster runs the job, the daemon answers at once
        t0 = time.monotonic()
        lenses = await asyncio.wait_for(client.text_document_code_lens_async(types.CodeLensParams(
            text_document=types.TextDocumentIdentifier(uri=uri))), 5)
        assert lenses is not None and time.monotonic() - t0 < 2
        done = await wait_job(client, job_id, ("done", "failed"), 90)
        assert done["state"] == "done", done["error"]
        assert Path(done["summary"]["output"]["model"]).is_file() and running["pid"] == done["pid"]
        status = await command(client, "int8wb.status")
        assert status["openvino_loaded"] is False and status["nncf_loaded"] is False
        await client.shutdown_session()
    finally:
        await client.stop()
