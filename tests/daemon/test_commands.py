"""commands.py (and lens.py) end to end: calibrate with work-done progress or log messages, the code
lenses, int8wb.compare of the result and of two models (a job, comparing.py), cancel, a worker killed
from outside, and errors."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from daemon_fixtures import client, workspace  # noqa: F401  (fixtures)
from daemon_helpers import command, job, spec_of, wait_for, wait_job


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
    # The job's row says done before the daemon's listener has sent the progress end: wait for it.
    await wait_for(lambda: isinstance((client.progress_reports.get(token) or [None])[-1], types.WorkDoneProgressEnd),
                   30, what="the progress end")
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
    # opened by an editor that says it opens documents; a path in a message for the others (Neovim 0.7, eglot)
    window = client.capabilities.window
    opens = bool(window and window.show_document and window.show_document.support)
    assert await command(client, "int8wb.openReport", report) is opens
    if opens:
        assert client.shown_documents[-1].uri == report and client.shown_documents[-1].external
    else:
        assert client.shown_documents == [] and "the report is" in client.messages[-1].message
    comparison = await command(client, "int8wb.compare", uri)
    assert comparison["job"] == job_id and "drop" in comparison and comparison["report"].endswith(".report.html")
    # a hover on a budget line: the last drop with its interval, judged against that budget
    line = spec.read_text().splitlines().index("max_drop = 0.01")
    hover = await client.text_document_hover_async(types.HoverParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=line, character=2)))
    low, high = comparison["drop_ci"]
    assert f"95 % interval {low * 100:.2f} to {high * 100:.2f} pp" in hover.contents.value
    assert ("within this budget on evidence" in hover.contents.value) == (high <= 0.01)
    assert "Measured at: shape [1,1,32,32], resize pillow-bilinear, float layers in" in hover.contents.value
    out = spec.parent / "calibrated"
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    # any two models side by side (here FP32 vs the INT8 just made), measured in a child process
    int8 = next(out.glob("*.int8.xml"))
    # as a job: its id at once, then its progress and its end, listed with the calibrations
    pair_id = await command(client, "int8wb.compare", (spec.parent / "model.xml").as_uri(), int8.as_uri(),
                            {"duration": 0.3})
    row = await wait_job(client, pair_id, ("done", "failed", "cancelled"), 60)
    assert row["state"] == "done" and row["title"] == f"model.xml vs {int8.name}", row
    pair = row["summary"]
    assert pair["models"]["a"]["name"] == "model.xml" and pair["models"]["b"]["quantized"] is True
    assert Path(pair["report"]).is_file() and (await command(client, "int8wb.status"))["openvino_loaded"] is False
    ended = [m.message for m in client.messages if f"model.xml vs {int8.name}" in m.message]  # shown, not only logged
    assert any("done: B has " in m and "x A's throughput" in m and pair["report"] in m for m in ended), ended
    # cancelled, it ends at once (its worker has stopped when the row says so)
    pair_id = await command(client, "int8wb.compare", (spec.parent / "model.xml").as_uri(), int8.as_uri(),
                            {"duration": 60})

    async def measuring():  # its worker is up and timing the models
        return ((await job(client, pair_id))["phase"] or "").startswith("speed")

    await wait_for(measuring, 30, what="the comparison measuring")
    assert (await command(client, "int8wb.cancel", pair_id))["cancelled"] is True
    t0 = time.monotonic()
    assert (await wait_job(client, pair_id, ("cancelled", "failed", "done"), 10))["state"] == "cancelled"
    assert time.monotonic() - t0 < 5

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
    # what the user sees (eglot 1.9 keeps log messages in its events buffer): the queueing and the end
    assert any(job_id in m.message and "queued" in m.message for m in client.messages)
    await wait_for(lambda: any("cancelled" in m.message for m in client.messages), 5, what="the end, shown")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
