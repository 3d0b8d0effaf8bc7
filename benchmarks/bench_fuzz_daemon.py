"""Fuzz campaign of the language server (issue #15): the real daemon (`python -I -m int8wb.daemon`) over
stdio, one workspace folder, and a stream of hostile inputs while an editor keeps hovering a valid spec.

- malformed specs (benchmarks/fuzz_cases.py): editor buffers (didOpen/didChange/didClose) and files in
  the watched folder: TOML mutations, arrays nested thousands deep, huge numbers, backtracking inputs,
  unknown keys by the thousand, NUL bytes, invalid UTF-8, FIFOs, symlink loops, paths to '/' …;
- malformed IR pairs written into the watched folder: truncated, bit-flipped, other encodings, FIFOs
  named *.xml, a .bin missing or short, entity bombs, 40k-constant XML …;
- all the while: a hover on the valid spec's model line every `--hover-interval` seconds.

Measured: daemon exits (crashes), tracebacks on its stderr, error messages it logged, hover latency
p50/p95/max over the whole run and the worst p95 of any 10 s window, wrong hover answers, the daemon's
RSS (its high-water mark, and the largest sample of the daemon with its child processes), and at the
end whether every file's diagnostics are those of its last state (the engine's answer, computed in this
process): none stale, none missing.

Run: .venv/bin/python benchmarks/bench_fuzz_daemon.py [--specs 2100] [--pairs 600] [--seed 0] [--write]
(the defaults hold ≥ 2,000 malformed specs and ≥ 500 malformed pairs: some steps write a drop policy, a
valid pair or delete one)
Bounded: `--max-seconds` stops pushing inputs, then waits at most `--settle-timeout` for diagnostics.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT / "tests"), str(ROOT / "tests" / "daemon")]

from lsprotocol import types  # noqa: E402
from pygls.lsp.client import BaseLanguageClient  # noqa: E402
from pygls.uris import from_fs_path  # noqa: E402

from conftest import copy_example  # noqa: E402
from daemon_helpers import command, initialize_params, server_env  # noqa: E402
from fuzz_report import (INTRO, SECTION, STOPPED, Report, cpu_seconds, got, process_tree, proc_status,  # noqa: E402
                         table, want_all)
from fuzz_steps import Step, hostile_folder, pair_step, rewrite, spec_step  # noqa: E402

SERVER = [sys.executable, "-I", "-m", "int8wb.daemon"]
OPEN_BUFFERS = 8  # fuzz buffers open at once, as in an editor with a few tabs
TEXT = "\0text\0"  # stands for a text sent already encoded


# -- the campaign ----------------------------------------------------------------------------------------
class Campaign:
    def __init__(self, ws: Path, report: Report, args):
        self.ws, self.report, self.args = ws, report, args
        self.rng = random.Random(args.seed)  # the editor's own choices (which buffer, when)
        self.fuzz = ws / "fuzz"
        self.client = BaseLanguageClient("int8wb-fuzz", "1")
        self.diagnostics: dict[str, list] = {}
        self.versions: dict[str, int] = {}
        self.open: list[str] = []       # fuzz buffers open now, oldest first
        self.touched: set[str] = set()  # every URI the campaign opened or wrote
        self.heavy: dict[str, bool] = {}  # spec file of the pool -> whether its last case was heavy
        self.requests: list[asyncio.Future] = []
        self.started = time.monotonic()
        self.stop = asyncio.Event()
        self.hover_done = asyncio.Event()  # set once the inputs are all in and the daemon had time to drain
        # inputs are made and written in a separate process, so that this one only talks to the daemon
        self.maker = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=os.nice,
                                         initargs=(10,))
        c = self.client
        c.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)(
            lambda params: self.diagnostics.__setitem__(params.uri, params.diagnostics))
        c.feature(types.WINDOW_LOG_MESSAGE)(lambda params: self._message(params))
        c.feature(types.WINDOW_SHOW_MESSAGE)(lambda params: self._message(params))
        c.feature(types.CLIENT_REGISTER_CAPABILITY)(lambda params: None)
        c.feature(types.WORKSPACE_CODE_LENS_REFRESH)(lambda params: None)
        c.feature(types.WINDOW_WORK_DONE_PROGRESS_CREATE)(lambda params: None)

    def _message(self, params) -> None:
        if params.type == types.MessageType.Error:
            self.report.error_logs.append(params.message[:300])

    # -- documents ---------------------------------------------------------------------------------------
    def did_open(self, uri: str, text: str | bytes) -> None:
        self.versions[uri] = 1
        if isinstance(text, bytes):
            return self.send_raw(types.TEXT_DOCUMENT_DID_OPEN, {"textDocument": {
                "uri": uri, "languageId": "toml", "version": 1, "text": TEXT}}, text)
        self.client.text_document_did_open(types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="toml", version=1, text=text)))

    def did_change(self, uri: str, text: str | bytes) -> None:
        self.versions[uri] += 1
        if isinstance(text, bytes):
            return self.send_raw(types.TEXT_DOCUMENT_DID_CHANGE, {
                "textDocument": {"uri": uri, "version": self.versions[uri]}, "contentChanges": [{"text": TEXT}]}, text)
        self.client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=self.versions[uri]),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)]))

    def send_raw(self, method: str, params: dict, text: bytes) -> None:
        """A notification whose "text" (TEXT in `params`) is already JSON: what an editor sends, without
        this process spending its time encoding megabytes (its hovers would wait)."""
        message = json.dumps({"jsonrpc": "2.0", "method": method, "params": params}).encode()
        head, tail = message.split(json.dumps(TEXT).encode(), 1)
        body = head + text + tail
        self.client.protocol.writer.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def did_close(self, uri: str) -> None:
        self.client.text_document_did_close(types.DidCloseTextDocumentParams(
            text_document=types.TextDocumentIdentifier(uri=uri)))

    # -- inputs --------------------------------------------------------------------------------------------
    async def push(self, what: str, i: int) -> None:
        make = spec_step if what == "spec" else pair_step
        step: Step = await asyncio.get_running_loop().run_in_executor(self.maker, make, self.args.seed, i, str(self.fuzz))
        self.report.by_kind[step.kind] = self.report.by_kind.get(step.kind, 0) + 1
        if step.path is not None:
            self.touched.add(from_fs_path(step.path))
            if what == "spec":
                self.heavy[step.path] = step.heavy
        if step.uri is not None:
            self.touched.add(step.uri)
            if step.uri in self.open:
                self.did_change(step.uri, step.text)
            else:
                if len(self.open) >= OPEN_BUFFERS:
                    self.did_close(self.open.pop(0))
                self.did_open(step.uri, step.text)
                self.open.append(step.uri)
            if step.ask is not None:
                self.requests.append(asyncio.ensure_future(self.ask(step.uri, step.ask)))
        if step.change is not None and self.open:  # typing goes on in one of the open buffers
            self.did_change(self.rng.choice(self.open), step.change)

    async def ask(self, uri: str, line: int) -> None:
        """What an editor asks about a buffer it shows: hover, code lenses, quick fixes."""
        doc = types.TextDocumentIdentifier(uri=uri)
        at = types.Position(line, self.rng.randrange(8))
        asks = [self.client.text_document_hover_async(types.HoverParams(text_document=doc, position=at)),
                self.client.text_document_code_lens_async(types.CodeLensParams(text_document=doc)),
                self.client.text_document_code_action_async(types.CodeActionParams(
                    text_document=doc, range=types.Range(start=types.Position(0, 0), end=at),
                    context=types.CodeActionContext(diagnostics=list(self.diagnostics.get(uri, []))[:20])))]
        for reply in await asyncio.gather(*(asyncio.wait_for(a, 60) for a in asks), return_exceptions=True):
            self.report.requests += 1
            if isinstance(reply, BaseException):
                self.report.error_replies.append(f"{uri[:120]}: {type(reply).__name__}: {str(reply)[:200]}")

    # -- the editor that keeps hovering --------------------------------------------------------------------
    async def hover_forever(self, uri: str, line: int) -> None:
        while not self.stop.is_set() and not self.hover_done.is_set():
            t0 = time.perf_counter()
            try:
                hover = await asyncio.wait_for(self.client.text_document_hover_async(types.HoverParams(
                    text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line, 2))), 30)
                ok = hover is not None and "IR version" in hover.contents.value
            except Exception:  # noqa: BLE001  (an error reply, or no reply in 30 s)
                ok = False
            self.report.hover_ms.append((time.perf_counter() - t0) * 1000)
            self.report.hover_at.append(time.monotonic() - self.started)
            self.report.hover_wrong += not ok
            await asyncio.sleep(self.args.hover_interval)

    async def probe_lag(self) -> None:
        """This process's loop delays every reply it reads: its lag is part of each hover figure."""
        while not self.stop.is_set() and not self.hover_done.is_set():
            t0 = time.monotonic()
            await asyncio.sleep(0.01)
            self.report.client_lag_ms.append((time.monotonic() - t0 - 0.01) * 1000)
            self.report.client_lag_at.append(t0 - self.started)

    async def sample_rss(self, pid: int) -> None:
        while not self.stop.is_set():
            tree = sum(proc_status(p, "VmRSS") for p in process_tree(pid)) / 2**20
            self.report.rss_tree_max_mb = max(self.report.rss_tree_max_mb, tree)
            await asyncio.sleep(0.2)

    async def read_stderr(self, stream) -> None:
        tail = self.report.stderr_tail
        log = open(self.args.daemon_log, "w") if self.args.daemon_log else None
        while line := await stream.readline():
            text = line.decode("utf-8", "replace").rstrip()
            if log:
                log.write(f"{time.monotonic() - self.started:8.2f} {text}\n")
            self.report.tracebacks += "Traceback (most recent call last)" in text
            tail.append(text)
            del tail[:-200]

    # -- the run -------------------------------------------------------------------------------------------
    async def run(self) -> None:
        args, report = self.args, self.report
        spec = copy_example(self.ws)
        for sub in ("specs", "pairs", "buffers", "nested"):
            (self.fuzz / sub).mkdir(parents=True, exist_ok=True)
        await asyncio.get_running_loop().run_in_executor(self.maker, hostile_folder, self.fuzz / "hostile")
        os.environ["INT8WB_TRUST_FILE"] = str(self.ws.parent / "trusted-folders.json")  # trust nothing here
        os.environ.pop("INT8WB_TRUST", None)
        env = server_env(INT8WB_RESCAN_SECONDS=str(args.rescan))
        env.pop("PYTHONPATH", None)
        await self.client.start_io(*SERVER, env=env)
        proc = self.client._server
        tasks = [asyncio.ensure_future(self.read_stderr(proc.stderr))]
        await self.client.initialize_async(initialize_params("vscode", self.ws))
        self.client.initialized(types.InitializedParams())
        uri = from_fs_path(str(spec))
        valid = spec.read_text()
        variants = [valid, valid.replace('device = "CPU"', 'device = "GPU"'),
                    valid.replace('method = "default"', 'method = "accuracy_aware"')]
        self.did_open(uri, valid)
        line = next(i for i, text in enumerate(valid.splitlines()) if text.startswith("model"))
        await asyncio.sleep(2.0)  # the first scan and check
        tasks += [asyncio.ensure_future(self.hover_forever(uri, line)), asyncio.ensure_future(self.sample_rss(proc.pid)),
                  asyncio.ensure_future(self.probe_lag())]
        order = ["spec"] * args.specs + ["pair"] * args.pairs
        self.rng.shuffle(order)
        deadline = self.started + args.max_seconds
        for i, what in enumerate(order):
            if proc.returncode is not None:
                break
            if time.monotonic() > deadline:
                report.cut_short = True
                break
            await self.push(what, i)
            report.specs += what == "spec"
            report.pairs += what == "pair"
            if i % 97 == 0:  # the valid spec is edited too: hover and its diagnostics follow the buffer
                self.did_change(uri, self.rng.choice(variants))
            await asyncio.sleep(args.pace)
        # the last state: every fuzz buffer closed, the valid buffer in a known state, and the spec files
        # whose last case asks more than a check is allowed rewritten with one the engine answers here
        for open_uri in self.open:
            self.did_close(open_uri)
        loop = asyncio.get_running_loop()
        for path, heavy in self.heavy.items():
            if heavy:
                await loop.run_in_executor(self.maker, rewrite, args.seed, path)
        await asyncio.gather(*self.requests, return_exceptions=True)
        final = variants[1]
        self.did_change(uri, final)
        await self.settle({uri: (spec, final)})
        self.maker.shutdown()
        self.stop.set()
        if proc.returncode is None:
            report.rss_peak_mb = proc_status(proc.pid, "VmHWM") / 2**20
            report.cpu_s = cpu_seconds(proc.pid)
            try:
                report.checks_done = (await asyncio.wait_for(command(self.client, "int8wb.status"), 30)).get(
                    "checks_done", {})
            except Exception as exc:  # noqa: BLE001
                report.error_replies.append(f"int8wb.status: {exc}")
            try:
                await asyncio.wait_for(self.client.shutdown_async(None), 30)
                self.client.exit(None)
                await asyncio.wait_for(proc.wait(), 30)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001
                proc.kill()
        else:
            report.crashes += 1
        report.exit_code = proc.returncode
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.client.stop()
        report.seconds = time.monotonic() - self.started

    async def settle(self, buffers: dict[str, tuple[Path, str]]) -> None:
        """Waits until every URI's diagnostics are those of its last state (or the timeout: stale)."""
        uris = sorted(self.touched | set(buffers) | set(self.diagnostics))

        deadline = time.monotonic() + self.args.settle_timeout
        while True:
            await asyncio.sleep(2 * self.args.rescan)
            self.hover_done.set()  # the figures are those of the run, not of this check's own work
            wanted = await asyncio.get_running_loop().run_in_executor(self.maker, want_all, uris, buffers)
            bad = [u for u in uris if got(self.diagnostics.get(u, [])) != wanted[u]]
            if not bad or time.monotonic() > deadline or self.client._server.returncode is not None:
                break
        self.report.checked_files = len(uris)
        for u in bad:
            have = got(self.diagnostics.get(u, []))
            if len(have) == 1 and have[0][0] in STOPPED:
                self.report.stopped.append((u, have, wanted[u][:3]))
            else:
                self.report.stale.append((u, have[:3], wanted[u][:3]))


def campaign(specs: int, pairs: int, seed: int = 0, **options) -> Report:
    """Runs one campaign in a fresh temporary workspace; `options` as the command line's."""
    args = argparse.Namespace(specs=specs, pairs=pairs, seed=seed, **{**DEFAULTS, **options})
    tmp = Path(tempfile.mkdtemp(prefix="int8wb-fuzz-"))
    report = Report()
    try:
        asyncio.run(Campaign(tmp / "ws", report, args).run())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report


DEFAULTS = {"pace": 0.02, "hover_interval": 0.05, "rescan": 5.0, "max_seconds": 1500.0, "settle_timeout": 120.0,
            "daemon_log": ""}


def main() -> None:
    from _common import machine_facts, update_section

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--specs", type=int, default=2100, help="steps that write or open a spec (2,000 malformed)")
    parser.add_argument("--pairs", type=int, default=600, help="steps that write a pair (500 malformed)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", action="store_true", help=f"put the figures in BENCHMARKS.md ({SECTION})")
    for name, value in DEFAULTS.items():
        parser.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    args = parser.parse_args()
    options = {k: getattr(args, k) for k in DEFAULTS}
    before = os.getloadavg()
    report = campaign(args.specs, args.pairs, args.seed, **options)
    facts = machine_facts()
    command = ".venv/bin/python benchmarks/bench_fuzz_daemon.py " + " ".join(sys.argv[1:])
    machine = (f"{facts['date']}; `nproc` {facts['nproc']}, {facts['cpu']}, {facts['mem_gib']} GiB; Python "
               f"{facts['python']}; load average 1/5/15 min before {'/'.join(f'{x:.2f}' for x in before)}, "
               f"after {'/'.join(f'{x:.2f}' for x in os.getloadavg())}")
    body = table(report, command.strip()) + f"\n\n{machine}."
    print(body)
    if args.write:
        update_section(SECTION, INTRO, f"bench_fuzz_daemon:seed{args.seed}", f"### seed {args.seed}\n\n" + body)
    for uri, have, want in report.stale[:10]:
        print(f"stale: {uri}\n  daemon: {have}\n  engine: {want}")
    slow = sorted(zip(report.hover_ms, report.hover_at), reverse=True)[:5]
    lag = sorted(zip(report.client_lag_ms, report.client_lag_at), reverse=True)[:5]
    print("slowest hovers (ms at s): " + ", ".join(f"{ms:.0f} at {at:.1f}" for ms, at in slow))
    print("largest lags of this benchmark's loop (ms at s): " + ", ".join(f"{ms:.0f} at {at:.1f}" for ms, at in lag))
    for uri, have, want in report.stopped[:10]:
        print(f"stopped: {uri}\n  daemon: {have}\n  engine: {want}")
    for message in report.error_logs[:5]:
        print(f"error logged: {message}")
    for message in report.error_replies[:5]:
        print(f"error reply: {message}")
    if report.tracebacks or report.crashes:
        print("\nlast lines of the daemon's stderr:\n" + "\n".join(report.stderr_tail[-60:]))
    sys.exit(0 if not (report.crashes or report.tracebacks or report.stale or report.error_replies) else 1)


if __name__ == "__main__":
    main()
