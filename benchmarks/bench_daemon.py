"""Issue goals of the language-server daemon, measured over stdio as an editor talks to it:

- hover and code-lens latency p95 while a calibration runs: ≤ 50 ms
- copying a model into a watched folder → its diagnostic: ≤ 1 s
- idle daemon RSS: ≤ 150 MB

Run: .venv/bin/python benchmarks/bench_daemon.py [--drops 10] [--requests 200]
Prints a markdown table.
"""
from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "daemon")]  # conftest.py, daemon_helpers.py

from lsprotocol import types  # noqa: E402
from pytest_lsp import make_test_lsp_client  # noqa: E402

from conftest import copy_example  # noqa: E402
from daemon_helpers import SERVER, command, copy_pair, initialize_params, model_pair, server_env  # noqa: E402


def p95(values: list[float]) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]


def rss_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmRSS:"))


async def run(drops: int, requests: int) -> list[tuple[str, str, str, str]]:
    tmp = Path(tempfile.mkdtemp(prefix="int8wb-bench-"))
    ws = tmp / "ws"
    spec = copy_example(ws)
    src = model_pair(tmp / "models", "net", fp16=True)
    client = make_test_lsp_client()
    client.feature(types.CLIENT_REGISTER_CAPABILITY)(lambda params: None)
    client.feature(types.WORKSPACE_CODE_LENS_REFRESH)(lambda params: None)
    await client.start_io(*SERVER, env=server_env(INT8WB_RESCAN_SECONDS="30"))
    rows = []
    try:
        await client.initialize_session(initialize_params("vscode", ws))
        uri = spec.as_uri()
        text = spec.read_text()
        client.text_document_did_open(types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="toml", version=1, text=text)))
        await asyncio.sleep(2.0)  # initial scan and spec check settle
        status = await command(client, "int8wb.status")
        idle = rss_of(status["pid"])
        rows.append(("idle daemon RSS", f"{idle / 2**20:.0f} MB", "≤ 150 MB", "yes" if idle <= 150 * 2**20 else "NO"))
        rows.append(("openvino imported by the daemon", str(status["openvino_loaded"]), "False",
                     "yes" if not status["openvino_loaded"] else "NO"))

        # copy → diagnostic
        lat = []
        for i in range(drops):
            t0 = time.perf_counter()
            target = copy_pair(src, ws / "incoming", name=f"m{i}")
            while not client.diagnostics.get(target.as_uri()):
                await asyncio.sleep(0.005)
                if time.perf_counter() - t0 > 10:
                    raise TimeoutError(f"no diagnostic for {target}")
            lat.append(time.perf_counter() - t0)
        rows.append((f"copy model → diagnostic (median of {drops})", f"{statistics.median(lat) * 1000:.0f} ms",
                     "≤ 1 s", "yes" if statistics.median(lat) <= 1 else "NO"))
        rows.append((f"copy model → diagnostic (max of {drops})", f"{max(lat) * 1000:.0f} ms", "≤ 1 s",
                     "yes" if max(lat) <= 1 else "NO"))

        # hover / code lens while a calibration runs
        model_line = next(i for i, line in enumerate(text.splitlines()) if line.startswith("model"))
        job_id = await command(client, "int8wb.calibrate", uri)
        hover_ms, lens_ms, during = [], [], 0
        for _ in range(requests):
            t0 = time.perf_counter()
            await client.text_document_hover_async(types.HoverParams(
                text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(model_line, 2)))
            hover_ms.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            await client.text_document_code_lens_async(types.CodeLensParams(
                text_document=types.TextDocumentIdentifier(uri=uri)))
            lens_ms.append((time.perf_counter() - t0) * 1000)
            await asyncio.sleep(0.02)
        rows_ = await command(client, "int8wb.jobs")
        state = next(r for r in rows_ if r["id"] == job_id)
        during = f"job {state['state']} at {state['percent']:.0f}% after the last request"
        rss_busy = rss_of(status["pid"])
        for name, values in (("hover", hover_ms), ("code lens", lens_ms)):
            rows.append((f"{name} p95 while calibrating ({len(values)} requests)", f"{p95(values):.1f} ms",
                         "≤ 50 ms", "yes" if p95(values) <= 50 else "NO"))
            rows.append((f"{name} median while calibrating", f"{statistics.median(values):.1f} ms", "", ""))
        rows.append(("daemon RSS while calibrating (worker is a separate process)", f"{rss_busy / 2**20:.0f} MB",
                     "", ""))
        rows.append(("state of the calibration", during, "", ""))
        await command(client, "int8wb.cancel", job_id)
        await client.shutdown_session()
    finally:
        await client.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--drops", type=int, default=10)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    rows = asyncio.run(run(args.drops, args.requests))
    print("| measure | value | goal | met |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
