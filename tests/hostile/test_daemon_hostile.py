"""Hostile workspaces through the real language server: each case is something the fuzz campaign
(benchmarks/bench_fuzz_daemon.py) found hanging, crashing, bloating or misleading the daemon.

The daemon runs as the editor starts it (`python -I -m int8wb.daemon`) with its stderr collected, so
every test also proves that nothing printed a traceback.
"""
from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
import pytest_asyncio
from lsprotocol import types
from pygls.client import JsonRPCClient
from pytest_lsp import make_test_lsp_client

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "daemon"))  # daemon_helpers.py

from conftest import copy_example  # noqa: E402
from daemon_helpers import codes, command, copy_pair, initialize_params, model_pair, server_env, wait_for  # noqa: E402

SERVER = [sys.executable, "-I", "-m", "int8wb.daemon"]
SLOW_KEY, SLOW_S = "a" + ".a" * 12_000 + " = 1\n", 3.0  # tomllib needs seconds for this dotted key


class Daemon:
    """A daemon over stdio with its stderr kept, and the open/close/hover an editor sends."""

    def __init__(self, client, ws: Path):
        self.client, self.ws, self.stderr, self.versions = client, ws, [], {}

    async def collect(self) -> None:
        while line := await self.client._server.stderr.readline():
            self.stderr.append(line.decode("utf-8", "replace"))

    def open(self, uri: str, text: str) -> None:
        self.versions[uri] = 1
        self.client.text_document_did_open(types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="toml", version=1, text=text)))

    def close(self, uri: str) -> None:
        self.client.text_document_did_close(types.DidCloseTextDocumentParams(
            text_document=types.TextDocumentIdentifier(uri=uri)))

    async def hover(self, uri: str, line: int):
        return await asyncio.wait_for(self.client.text_document_hover_async(types.HoverParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line, 2))), 10)

    async def idle(self, at_least: float = 0.0, timeout: float = 120.0) -> None:
        """Waits until no check is running or waiting (and `at_least` seconds have passed)."""
        start = asyncio.get_running_loop().time()
        await asyncio.sleep(at_least)

        async def quiet():
            return (await command(self.client, "int8wb.status")).get("checks", 0) == 0
        await wait_for(quiet, timeout - (asyncio.get_running_loop().time() - start), 0.2, "the daemon's checks")

    def peak_rss_mb(self) -> float:
        with open(f"/proc/{self.client._server.pid}/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024

    def errors(self) -> list[str]:
        shown = [m.message for m in self.client.log_messages + self.client.messages
                 if m.type == types.MessageType.Error]
        return shown + [line for line in self.stderr if "Traceback" in line]


@pytest.fixture
def workspace(tmp_path) -> Path:
    ws = tmp_path / "ws"
    copy_example(ws)
    return ws


@pytest_asyncio.fixture
async def start(workspace):
    """`await start(**env)` starts the daemon on `workspace` (prepared by the test beforehand)."""
    daemons = []

    async def _start(**env) -> Daemon:
        client = make_test_lsp_client()
        client.feature(types.CLIENT_REGISTER_CAPABILITY)(lambda params: None)
        await JsonRPCClient.start_io(client, *SERVER, env={**server_env(**env), "PYTHONPATH": ""})
        daemon = Daemon(client, workspace)
        daemon.task = asyncio.ensure_future(daemon.collect())
        daemons.append(daemon)
        await client.initialize_session(initialize_params("neovim", workspace))
        return daemon

    yield _start
    for daemon in daemons:
        if daemon.client._server.returncode is not None:
            await daemon.client.stop()
            continue
        try:
            await asyncio.wait_for(daemon.client.shutdown_session(), 15)
        except (asyncio.TimeoutError, RuntimeError):
            daemon.client._server.kill()
        await daemon.client.stop()
        daemon.task.cancel()


def spec_text(workspace: Path, **replace: str) -> str:
    text = (workspace / "digits" / "digits.calibration.toml").read_text()
    for old, new in replace.items():
        text = text.replace(old, new)
    return text


@pytest.mark.asyncio
async def test_specs_that_are_not_files_never_block_or_fill_the_daemon(workspace, start):
    """A FIFO or /dev/zero named like a spec used to be read line by line to size a diagnostic (a FIFO
    blocked the daemon for ever, /dev/zero filled its memory); names no file can have, untitled
    buffers and symlink loops made resolve() and to_fs_path() raise in hover, lenses and checks."""
    hostile = workspace / "hostile"
    hostile.mkdir()
    os.mkfifo(hostile / "fifo.calibration.toml")
    (hostile / "zero.calibration.toml").symlink_to("/dev/zero")
    (hostile / "loop.calibration.toml").symlink_to(hostile / "loop.calibration.toml")
    (hostile / "loop.xml").symlink_to(hostile / "loop.xml")
    daemon = await start()
    fifo, zero = (hostile / "fifo.calibration.toml").as_uri(), (hostile / "zero.calibration.toml").as_uri()
    await wait_for(lambda: "FIFO" in str(daemon.client.diagnostics.get(fifo)), 60, what="the FIFO's diagnostic")
    await wait_for(lambda: "device" in str(daemon.client.diagnostics.get(zero)), 60, what="/dev/zero's diagnostic")

    loop_spec = (hostile / "loop.calibration.toml").as_uri()
    text = spec_text(workspace, **{'model = "model.xml"': 'model = "../hostile/loop.xml"'})
    line = text.splitlines().index('model = "../hostile/loop.xml"')
    weird = ["untitled:Untitled-1.calibration.toml", "file:///" + "a" * 5000 + ".calibration.toml",
             (hostile / "x").as_uri() + "%00.calibration.toml", loop_spec]
    for uri in weird:
        daemon.open(uri, text)
    hover = await daemon.hover(loop_spec, line)
    assert "symbolic links" in hover.contents.value
    assert await daemon.hover(fifo, 0) is None  # not open: never read from disk by the feature
    for uri in weird + [fifo]:
        await daemon.client.text_document_code_lens_async(types.CodeLensParams(
            text_document=types.TextDocumentIdentifier(uri=uri)))
        await daemon.client.text_document_code_action_async(types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri), range=types.Range(
                start=types.Position(0, 0), end=types.Position(1, 0)), context=types.CodeActionContext(diagnostics=[])))
    for uri in weird:
        daemon.close(uri)
    status = await command(daemon.client, "int8wb.status")
    assert status["pid"] and daemon.peak_rss_mb() < 300
    await asyncio.sleep(1.0)  # closed buffers go back to disk: loops and impossible names just clear
    assert daemon.errors() == []


@pytest.mark.asyncio
async def test_a_check_never_publishes_over_a_newer_state(workspace, start):
    """Checks take time; a close, an open or a newer write meanwhile makes them stale. Each used to
    publish anyway: a buffer's diagnostics after it was closed, a spec file's over the buffer the
    editor had just opened (the erased-buffer race of tests/daemon), an older write's over a newer."""
    daemon = await start()
    folder = workspace / "digits"
    slow = spec_text(workspace) + SLOW_KEY
    gpu = spec_text(workspace, **{'device = "CPU"': 'device = "GPU"'})

    async def meanwhile(begin, then) -> None:
        begin()
        await asyncio.sleep(1.0)  # the slow check is under way
        then()
        await daemon.idle(at_least=SLOW_S + 2.0)

    closed = (folder / "closed.calibration.toml").as_uri()  # never on disk
    await meanwhile(lambda: daemon.open(closed, slow), lambda: daemon.close(closed))
    assert daemon.client.diagnostics.get(closed, []) == []

    opened = folder / "opened.calibration.toml"
    await meanwhile(lambda: opened.write_text(slow), lambda: daemon.open(opened.as_uri(), gpu))
    assert codes(daemon.client, opened) == ["device-without-int8"]

    rewritten = folder / "rewritten.calibration.toml"
    await meanwhile(lambda: rewritten.write_text(slow), lambda: rewritten.write_text(gpu))
    assert codes(daemon.client, rewritten) == ["device-without-int8"]
    assert daemon.errors() == []


@pytest.mark.asyncio
async def test_checks_that_want_too_much_are_stopped_and_said_so(workspace, start):
    """A spec asking for a 40000x40000 resize, or a dotted key tomllib needs a minute for, used to be
    checked in the daemon itself: GBs of memory, a thread for minutes, the editor's hovers waiting
    behind. Checks now run in checker processes with a memory and a time limit; the daemon stays small
    and answers meanwhile."""
    daemon = await start(INT8WB_CHECK_SECONDS="8")  # a valid check stays well under 8 s, loaded or not
    folder = workspace / "digits"
    huge = folder / "huge.calibration.toml"
    huge.write_text(spec_text(workspace, **{"resize = [32, 32]": "resize = [40000, 40000]"}))
    slow = folder / "slow.calibration.toml"
    slow.write_text(spec_text(workspace) + "a" + ".a" * 100_000 + " = 1\n")  # minutes of tomllib
    valid = folder / "digits.calibration.toml"
    text = valid.read_text()
    daemon.open(valid.as_uri(), text)
    line = text.splitlines().index('model = "model.xml"')
    hovers = [await daemon.hover(valid.as_uri(), line) for _ in range(20)]
    assert all("can be calibrated" in h.contents.value for h in hovers)
    await wait_for(lambda: codes(daemon.client, huge) == ["check-limit"], 60, what="the memory limit's diagnostic")
    # The slow key runs out of time or of memory first, depending on the machine: stopped and said so either way.
    await wait_for(lambda: codes(daemon.client, slow) in (["check-timeout"], ["check-limit"]), 60,
                   what="the slow key's diagnostic")
    assert "INT8WB_CHECK_MEMORY_MB" in daemon.client.diagnostics[huge.as_uri()][0].message
    assert daemon.peak_rss_mb() < 300
    assert daemon.errors() == []


@pytest.mark.asyncio
async def test_a_hover_never_waits_behind_slow_checks(workspace, start):
    """The hover's model facts are read by a checker process; when every one is busy with a slow check,
    the hover gets one more process instead of waiting its turn."""
    daemon = await start(INT8WB_CHECK_WORKERS="1", INT8WB_CHECK_SECONDS="60")
    slow = workspace / "digits" / "slow.calibration.toml"
    slow.write_text(spec_text(workspace) + "a" + ".a" * 100_000 + " = 1\n")  # a minute of tomllib
    await asyncio.sleep(1.0)
    valid = workspace / "digits" / "digits.calibration.toml"
    text = valid.read_text()
    daemon.open(valid.as_uri(), text)
    hover = await daemon.hover(valid.as_uri(), text.splitlines().index('model = "model.xml"'))
    assert "can be calibrated" in hover.contents.value
    assert (await command(daemon.client, "int8wb.status"))["checks"] >= 1  # the slow one is still running
    assert daemon.errors() == []


@pytest.mark.asyncio
async def test_a_folder_that_cannot_hold_jobs_is_still_watched(workspace, start, tmp_path):
    """`.int8wb` a file (or a FIFO, a loop) made opening the job store raise in add_root, before the
    watch started: no file of the folder was ever checked. A drop policy nested in a subfolder sits
    beside it and changes nothing either."""
    (workspace / ".int8wb").write_text("")
    (workspace / "inbox").mkdir()
    (workspace / "inbox" / "calibration.toml").write_text('[dataset]\nkind = "generated"\n[drop]\noutbox = "../o"\n')
    src = model_pair(tmp_path / "models", "net", fp16=True)
    daemon = await start()
    target = copy_pair(src, workspace / "incoming")
    await wait_for(lambda: "not-fp32" in codes(daemon.client, target), 60, what="the dropped model's diagnostic")
    shown = " ".join(m.message for m in daemon.client.messages)
    assert "cannot keep jobs" in shown and ".int8wb" in shown
    spec = workspace / "digits" / "digits.calibration.toml"
    with pytest.raises(Exception, match="cannot hold jobs"):
        await command(daemon.client, "int8wb.calibrate", spec.as_uri())
    assert [line for line in daemon.stderr if "Traceback" in line] == []


@pytest.mark.asyncio
async def test_paths_with_spaces_and_specs_that_follow_their_model(tmp_path, start, workspace):
    """pygls keys open documents by the unquoted URI, the daemon asked with a quoted one: in a folder
    with a space the buffer looked closed and the file on disk's diagnostics replaced it. And a spec
    file on disk kept "model not found" after its model arrived."""
    folder = workspace / "my models"
    folder.mkdir()
    spec = folder / "net.calibration.toml"
    spec.write_text(spec_text(workspace, **{'model = "model.xml"': 'model = "net.xml"',
                                           'path = "data/': 'path = "../digits/data/'}))
    daemon = await start()
    await wait_for(lambda: codes(daemon.client, spec) == ["model-missing"], 60, what="model-missing")
    copy_pair(model_pair(tmp_path / "models", "net", fp16=True), folder)
    await wait_for(lambda: "not-fp32" in codes(daemon.client, spec), 60, what="the spec following its model")

    buffer = spec.read_text().replace('device = "CPU"', 'device = "GPU"')
    daemon.open(spec.as_uri(), buffer)
    await wait_for(lambda: "device-without-int8" in codes(daemon.client, spec), 60, what="the buffer's diagnostics")
    spec.write_text(spec.read_text() + "\n")  # saved elsewhere: the open buffer still wins
    await asyncio.sleep(2.0)
    assert "device-without-int8" in codes(daemon.client, spec)
    assert daemon.errors() == []


@pytest.mark.asyncio
async def test_ten_thousand_problems_are_a_hundred_diagnostics(workspace, start):
    """A spec with thousands of unknown keys was published as thousands of diagnostics (megabytes of
    JSON per keystroke for the editor); `int8wb.check` still lists them all."""
    spec = workspace / "digits" / "keys.calibration.toml"
    spec.write_text("\n".join(f"key{i} = {i}" for i in range(3000)) + "\n" + spec_text(workspace))
    daemon = await start()
    await wait_for(lambda: "more-problems" in codes(daemon.client, spec), 60, what="the capped diagnostics")
    found = codes(daemon.client, spec)
    assert len(found) == 101 and found.count("spec") == 100
    assert "2900 more problems" in daemon.client.diagnostics[spec.as_uri()][-1].message
    assert len(await command(daemon.client, "int8wb.check", spec.as_uri())) == 3000

    huge = workspace / "digits" / "huge.calibration.toml"  # only in the editor
    daemon.open(huge.as_uri(), spec_text(workspace) + "# " + "z" * (17 << 20) + "\n")
    await wait_for(lambda: "too large" in str(daemon.client.diagnostics.get(huge.as_uri())), 60, what="too large")
    assert daemon.peak_rss_mb() < 300
    assert daemon.errors() == []


@pytest.mark.asyncio
@pytest.mark.parametrize("shutdown", [True, False], ids=["shutdown then exit", "exit alone"])
async def test_the_daemon_leaves_no_checker_behind(workspace, start, shutdown):
    """Checker processes' pipes were left to the garbage collector, which closed them after the loop was
    gone: now and then a traceback ("Event loop is closed") as the daemon exited."""
    daemon = await start()
    spec = workspace / "digits" / "digits.calibration.toml"
    assert await command(daemon.client, "int8wb.check", spec.as_uri()) == []  # a checker process runs
    server = daemon.client._server
    checkers = [int(pid) for task in os.listdir(f"/proc/{server.pid}/task")
                for pid in open(f"/proc/{server.pid}/task/{task}/children").read().split()]
    assert checkers
    if shutdown:
        await daemon.client.shutdown_async(None)
    daemon.client.exit(None)
    code = await asyncio.wait_for(server.wait(), 30)
    assert code == 0 or not shutdown
    await asyncio.wait_for(daemon.task, 10)  # all of its stderr
    assert [line for line in daemon.stderr if "Traceback" in line or "is closed" in line] == []
    await asyncio.sleep(0.5)
    assert [pid for pid in checkers if os.path.exists(f"/proc/{pid}") and
            "check_worker" in open(f"/proc/{pid}/cmdline").read()] == []
