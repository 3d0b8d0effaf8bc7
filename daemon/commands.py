"""The `int8wb.*` commands (workspace/executeCommand) and the progress of the jobs they queue.

Handlers take the server and the command's arguments and return plain data; a bad argument or state
raises `CommandError`, which server.py hands to the client as an InvalidParams error. Jobs run in
worker subprocesses (`calibration.jobs`); `async` handlers await their blocking parts in threads.
"""
from __future__ import annotations

import asyncio
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.uris import from_fs_path

from int8wb.calibration.jobs import FINAL, STORE_DIR, Runner
from int8wb.calibration.spec import SPEC_SUFFIX
from int8wb.calibration.guarded import read_text
from int8wb.daemon.paths import document, exists, path_of, resolved, uri_of

if TYPE_CHECKING:
    from int8wb.daemon.comparing import Comparisons
    from int8wb.daemon.server import Int8Server

SHOW_DOCUMENT_S = 10.0  # an editor that said it opens documents but does not answer: the path goes in a message

class CommandError(Exception):
    """The command cannot run with these arguments (the message says why); the daemon carries on."""


def path_arg(arg: Any) -> Path:
    """A file URI, a path, or {"uri"|"path": ...} as a resolved path."""
    if isinstance(arg, dict):
        arg = arg.get("uri") or arg.get("path")
    path = (path_of(arg) if arg.startswith("file:") else Path(arg)) if isinstance(arg, str) and arg else None
    if path is None or "\0" in str(path):
        raise CommandError("expected a file URI or path as the first argument")
    return resolved(path)


def first(args: tuple, what: str) -> Any:
    if not args:
        raise CommandError(f"missing argument: {what}")
    return args[0]


def find_job(ls: Int8Server, job_id: str) -> tuple[dict, Runner | Comparisons] | None:
    """The job (a calibration of a workspace folder, or the daemon's comparison) and what cancels it."""
    if job_id in ls.comparisons.rows:
        return dict(ls.comparisons.rows[job_id]), ls.comparisons
    for entry in ls.roots.values():
        job = entry["store"].get(job_id) if entry["store"] else None
        if job is not None:
            return job, entry["runner"]
    return None


def job_line(job: dict) -> str:
    """One line for a job's outcome: "done: drop 0.12 pp, 2.31x vs FP32 default" or "failed: why"."""
    s = job.get("summary") or {}
    if job["state"] == "done" and job.get("kind") == "compare":
        ratio = (s.get("speedup") or {}).get("b_vs_a")
        return "done: " + "; ".join([f"B has {ratio:.2f}x A's throughput" if isinstance(ratio, (int, float))
                                     else "throughput ratio ?", *(s.get("notes") or [])])
    if job["state"] == "done":
        drop = s.get("drop")
        speed, ci, verdict = s.get("speedup_vs_default"), s.get("drop_ci"), s.get("speedup_verdict")
        parts = [_drop("drop", drop, ci),
                 f"{speed:.2f}x vs FP32 default" if isinstance(speed, (int, float)) else "speedup ?"]
        if verdict and isinstance(speed, (int, float)):
            parts[1] += f" ({verdict})"
        held = s.get("heldout") if isinstance(s.get("heldout"), dict) else {}
        if isinstance(held.get("drop"), (int, float)):  # the samples the search never saw
            parts.insert(1, _drop("held-out drop", held["drop"], held.get("drop_ci")))
        rec = s.get("recommendation") if isinstance(s.get("recommendation"), dict) else {}
        if rec.get("choice"):
            parts.append("ship INT8" if rec["choice"] == "int8" else "keep FP32: INT8 does not pay here" + (
                " (INT8 model set aside as .int8.not-faster)" if rec.get("answer") is False else ""))
        return "done: " + ", ".join(parts)
    error = (job.get("error") or "").removeprefix(job["state"]).lstrip(";: ")  # not "cancelled: cancelled; ..."
    return f"{job['state']}: {error}".strip().rstrip(":")


def _drop(name: str, drop, ci) -> str:
    if not isinstance(drop, (int, float)):
        return f"{name} ?"
    interval = f" (95 % interval {ci[0] * 100:.2f} to {ci[1] * 100:.2f} pp)" if isinstance(ci, list) and len(ci) == 2 else ""
    return f"{name} {drop * 100:.2f} pp{interval}"


# -- the commands ---------------------------------------------------------------------------------
async def calibrate(ls: Int8Server, *args) -> str:
    """(spec URI): queues a calibration of the saved, error-free spec; returns the job id."""
    spec = path_arg(first(args, "spec URI"))
    if not spec.name.endswith(SPEC_SUFFIX):
        raise CommandError(f"not a calibration spec (*{SPEC_SUFFIX}): {spec}")
    if not spec.is_file():
        raise CommandError(f"spec not found: {spec}")
    doc = document(ls, uri_of(spec))
    if doc is not None and doc.source != await asyncio.to_thread(saved_text, spec):
        raise CommandError(f"{spec.name} has unsaved changes; save it before calibrating")
    checked = await ls.checker.spec(spec, None, replaceable=False)
    if checked is None:
        raise CommandError("the language server is stopping")
    errors = [p for p in checked.problems if p.severity == "error"]
    if errors:
        raise CommandError(f"{spec.name} cannot be calibrated: " +
                           "; ".join(f"line {p.line}: {p.message}" for p in errors[:5]))
    runner = ls.runner_for(spec)
    try:
        job_id = await asyncio.to_thread(runner.submit, spec)
    except Exception as exc:  # noqa: BLE001
        raise CommandError(f"cannot queue {spec.name}: {exc}") from exc
    await ls.job_progress.start(job_id, f"Calibrating {spec.name}")
    ls.refresh_lenses()
    return job_id


def saved_text(spec: Path) -> str | None:
    try:
        return read_text(spec)
    except (OSError, UnicodeDecodeError):
        return None


def cancel(ls: Int8Server, *args) -> dict:
    """(job id): stops a queued or running job."""
    job_id = str(first(args, "job id"))
    found = find_job(ls, job_id)
    if found is None:
        raise CommandError(f"no such job: {job_id}")
    job, runner = found
    if job["state"] in FINAL:
        return {"id": job_id, "cancelled": False, "state": job["state"]}
    return {"id": job_id, "cancelled": runner.cancel(job_id), "state": "cancelling"}


def jobs(ls: Int8Server, *args) -> list[dict]:
    """(): every job of every workspace folder, newest first."""
    rows = [j for e in ls.roots.values() if e["store"] for j in e["store"].list()] + ls.comparisons.list()
    return sorted(rows, key=lambda j: j["created"], reverse=True)


async def compare(ls: Int8Server, *args) -> dict | str:
    """(spec URI): the spec's last calibration result. (model A URI, model B URI[, {device, batch,
    duration}]): queues any two IR models to be measured side by side, with an HTML report; returns
    the job id (comparing.py)."""
    if len(args) < 2:
        spec = path_arg(first(args, "spec URI"))
        store = ls.store_for(spec)
        job = store.last_result(str(spec)) if store else None
        if job is None:
            raise CommandError(f"no calibration result yet for {spec.name}; run int8wb.calibrate")
        return {"job": job["id"], "finished": job["finished"], **(job["summary"] or {})}
    a, b = path_arg(args[0]), path_arg(args[1])
    given = args[2] if len(args) > 2 and isinstance(args[2], dict) else {}
    for model in (a, b):
        if model.suffix != ".xml" or not model.is_file():
            raise CommandError(f"not an IR model (.xml): {model}")
    try:
        options = {"device": str(given.get("device", "CPU")), "batch": int(given.get("batch", 1)),
                   "duration": float(given.get("duration", 3.0))}
    except (TypeError, ValueError) as exc:
        raise CommandError(f"bad comparison options {given!r}: {exc}") from exc
    report = ls.root_of(a) / STORE_DIR / "compare" / f"{a.stem}-vs-{b.stem}.html"
    return await ls.comparisons.start(a, b, options, report)


async def check(ls: Int8Server, *args) -> list[dict]:
    """(file URI): the problems of a spec (its open buffer, if any) or a model."""
    path = path_arg(first(args, "file URI"))
    if not exists(path):
        raise CommandError(f"no such file: {path}")
    if path.name.endswith(SPEC_SUFFIX):
        doc = document(ls, uri_of(path))
        checked = await ls.checker.spec(path, doc.source if doc else None, replaceable=False)
    else:
        checked = await ls.checker.model(path, settled=True, replaceable=False, scanned=False)
    return [p.to_dict() for p in (checked.problems or [])] if checked else []


async def open_report(ls: Int8Server, *args) -> bool:
    """(report path): asks the editor to open an HTML report outside itself, when it says it can
    (`window.showDocument`; a request it does not know breaks eglot and is an error in Neovim 0.7);
    otherwise, or when it does not open it in time, the path goes in a message. True: opened."""
    report = path_arg(first(args, "report path"))
    if not report.is_file():
        raise CommandError(f"report not found: {report}")
    window = getattr(ls.client_capabilities, "window", None)
    if window is not None and window.show_document is not None and window.show_document.support:
        try:
            result = await asyncio.wait_for(ls.window_show_document_async(types.ShowDocumentParams(
                uri=from_fs_path(str(report)), external=True)), SHOW_DOCUMENT_S)
            if result and result.success:
                return True
        except asyncio.TimeoutError:
            pass
    ls.show(f"int8wb: the report is {report} (open it in a browser)")
    return False


def status(ls: Int8Server, *args) -> dict:
    """(): the daemon's own health (and proof that it never loaded OpenVINO)."""
    rss = None
    try:
        with open("/proc/self/status") as fh:
            rss = next(int(l.split()[1]) * 1024 for l in fh if l.startswith("VmRSS:"))
    except (OSError, StopIteration):
        pass
    return {"pid": os.getpid(), "roots": [str(r) for r in ls.roots], "rss_bytes": rss,
            "untrusted": [str(r) for r, entry in ls.roots.items() if not entry.get("trusted")],
            "openvino_loaded": "openvino" in sys.modules, "nncf_loaded": "nncf" in sys.modules,
            "threads": threading.active_count(), "published": len(ls.diagnostics.published),
            "checks": ls.checker.pending + ls.watching.pending, "checks_done": dict(ls.checker.counts),
            "settings": {"debounceSeconds": ls.settings.debounce_s, "rescanSeconds": ls.settings.rescan_s}}


# -- job progress ---------------------------------------------------------------------------------
class JobProgress:
    """Work-done progress (cancellable) for the jobs queued here when the client supports it, else
    window/logMessage lines; either way the code lenses are refreshed when a job moves on."""

    def __init__(self, ls: Int8Server):
        self.ls = ls
        self.tokens: dict[str, str] = {}      # token -> job id
        self.job_tokens: dict[str, str] = {}  # job id -> token
        self.last_phase: dict[str, str] = {}
        self.shown: set[str] = set()          # jobs queued from the editor: their end is shown, not only logged

    async def start(self, job_id: str, title: str) -> None:
        ls = self.ls
        # The end is a message for every client: progress ends silently in stock Neovim (it only keeps
        # $/progress for statusline plugins) and in VS Code its notification closes with the message.
        self.shown.add(job_id)
        if not ls.supports_progress():  # eglot 1.9: a message the user sees, not only a log line
            ls.show(f"int8wb: {title}: job {job_id} queued; the result is shown here when it ends")
            return
        token = f"int8wb/job/{job_id}"
        try:
            await ls.work_done_progress.create_async(token)
        except Exception as exc:  # noqa: BLE001  (the client refused: fall back to log messages)
            ls.log(f"int8wb: {title}: job {job_id} queued ({exc})")
            return
        job = find_job(ls, job_id)
        if job is not None and job[0]["state"] in FINAL:
            return
        self.job_tokens[job_id] = token
        self.tokens[token] = job_id
        ls.work_done_progress.begin(token, types.WorkDoneProgressBegin(
            title=title, message="queued", percentage=0, cancellable=True))

    def changed(self, job: dict) -> None:
        """Runs on the loop for every state/progress change of any job."""
        ls = self.ls
        job_id = job["id"]
        token = self.job_tokens.get(job_id)
        name = job.get("title") or Path(job["spec"]).name
        if job["state"] in FINAL:
            message = job_line(job)
            if token is not None:
                ls.work_done_progress.end(token, types.WorkDoneProgressEnd(message=message))
                self.job_tokens.pop(job_id, None)
                self.tokens.pop(token, None)
                ls.work_done_progress.tokens.pop(token, None)
            kind = types.MessageType.Info if job["state"] == "done" else types.MessageType.Warning
            report = (job.get("summary") or {}).get("report")
            text = f"int8wb: {name}: {message}" + (f"; report: {report}" if report and job["state"] == "done" else "")
            if job_id in self.shown:
                self.shown.discard(job_id)
                ls.show(text, kind)
            else:
                ls.log(text, kind)
            self.last_phase.pop(job_id, None)
            ls.refresh_lenses()
            return
        if job["state"] != "running":
            return
        pct = int(job["percent"] or 0)
        phase = job["phase"] or "starting"
        if token is not None:
            ls.work_done_progress.report(token, types.WorkDoneProgressReport(
                message=phase, percentage=pct, cancellable=True))
        elif self.last_phase.get(job_id) != phase:
            ls.log(f"int8wb: {name}: job {job_id} {pct}% {phase}")
        if self.last_phase.get(job_id) != phase:
            self.last_phase[job_id] = phase
            ls.refresh_lenses()

    def cancel(self, token: str) -> None:
        job_id = self.tokens.get(token)
        found = find_job(self.ls, job_id) if job_id else None
        if found is not None:
            found[1].cancel(job_id)


def progress_cancel(ls: Int8Server, params: types.WorkDoneProgressCancelParams) -> None:
    """window/workDoneProgress/cancel: the editor's cancel button on a job's progress."""
    ls.job_progress.cancel(str(params.token))
