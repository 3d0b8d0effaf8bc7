"""How a job ended, as its row records it: the worker's answer, or, when it gave none, what it
committed. The runner calls `ending` when a worker exits, and `JobStore.reconcile` calls it when
the runner of a job is gone.

The worker commits its outputs as one unit and journals the commit in the job store
(`commit.commit_set`). A worker killed during or after its commit, but before it could answer, has
written a whole new output set. The row then says done, never "nothing was written".
"""
from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from ..commit import Resolution, resolve
from .protocol import Failure, Result

NOTHING = "nothing was written"


def summarise(result: dict) -> dict:
    """What the editor shows of a result: drop, speedup, outputs (including the report)."""
    vs_default = (result.get("speedup") or {}).get("vs_default")
    if not isinstance(vs_default, dict):  # results before interleaved rounds held one number
        vs_default = {"value": vs_default}
    return {
        "drop": result.get("drop"),
        "drop_relative": result.get("drop_relative"),
        "accuracy": {"fp32": result.get("fp32", {}).get("accuracy"), "int8": result.get("int8", {}).get("accuracy")},
        "metric": result.get("metric"),
        "speedup": result.get("speedup"),
        "speedup_vs_default": vs_default.get("value"),
        "speedup_verdict": vs_default.get("verdict"),
        "drop_ci": result.get("drop_ci"),
        "heldout": result.get("heldout"),
        "throughput": result.get("throughput"),
        "model_size": result.get("model_size"),
        "int8_layer_count": result.get("int8_layer_count"),
        "budget": result.get("budget"),
        "output": result.get("output"),
        "report": (result.get("output") or {}).get("report"),
        "notes": result.get("notes", []),
        "deployment": result.get("deployment"),
        "recommendation": result.get("recommendation"),
        "fp32_layers": [layer.get("name") for layer in result.get("fp32_layers") or [] if isinstance(layer, dict)],
    }


def exit_reason(code: int, stderr_tail: str) -> str:
    """Why a worker ended without an answer, from its exit status (negative: the signal that killed it)."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        why = " (out of memory?)" if -code == signal.SIGKILL else ""
        return f"the worker was killed by {name}{why}"
    return f"the worker exited with code {code}: {stderr_tail}"


def tail(text: str, lines: int) -> str:
    return " | ".join(text.strip().splitlines()[-lines:]) or "no output"


def remove_temporaries(output_dir: str | None, pid: int | None, *more: Path) -> None:
    """The staged files of a worker that was killed before it could discard them (in its output
    folder, and in `more` folders: the job store's journal folder)."""
    if not pid:
        return
    for folder in ([Path(output_dir)] if output_dir else []) + list(more):
        if folder.is_dir():
            for tmp in folder.glob(f".*.tmp-{pid}-*"):
                tmp.unlink(missing_ok=True)


def _committed(resolution: Resolution) -> dict:
    """The summary of a set the worker committed but did not report: read from its result JSON."""
    try:
        with open(resolution.finals["result"], encoding="utf-8") as fh:
            return summarise(json.load(fh))
    except (KeyError, OSError, ValueError):
        return {"output": resolution.finals, "notes": []}


def ending(outcome: Result | Failure | None, ok: bool, cancelled: bool, why: str, journal: Path) -> dict:
    """The row's final fields. `outcome`: the worker's answer (None: it gave none); `ok`: it exited
    with status 0; `why`: why it ended without one (`exit_reason`); `journal`: where its commit was
    journalled. A commit the worker did not finish is rolled forward first, so the set on disk is
    whole, old or new, and the row says which."""
    fields: dict = {"finished": time.time()}
    if isinstance(outcome, Result) and ok:
        return {**fields, "state": "done", "percent": 100.0, "phase": "done", "summary": summarise(outcome.data)}
    resolution = resolve(journal) if journal.is_file() else None
    if resolution is not None and resolution.state == "committed":
        if isinstance(outcome, Failure) and not cancelled:  # e.g. over budget: the attempt is kept, as said
            return {**fields, "state": "failed", "error": outcome.error,
                    "summary": {"problems": [p.to_dict() for p in outcome.problems], "output": resolution.finals}}
        summary = summarise(outcome.data) if isinstance(outcome, Result) else _committed(resolution)
        ended = "was cancelled" if cancelled else f"ended ({why})"
        summary["notes"] = [*summary.get("notes", []), f"The worker {ended} after its outputs were committed."]
        return {**fields, "state": "done", "percent": 100.0, "phase": "done", "summary": summary}
    written = resolution.detail if resolution is not None else NOTHING
    if cancelled:
        return {**fields, "state": "cancelled", "error": f"cancelled; the worker was stopped and {written}"}
    if isinstance(outcome, Failure):
        summary = {"problems": [p.to_dict() for p in outcome.problems]} if outcome.problems else None
        error = outcome.error if resolution is None else f"{outcome.error}; {written}"
        return {**fields, "state": "failed", "error": error, "summary": summary}
    return {**fields, "state": "failed", "error": f"{why}; {written}"}


def conclude(job: dict, pid: int | None, outcome: Result | Failure | None, ok: bool, cancelled: bool, why: str,
             journal: Path) -> tuple[dict, bool]:
    """`ending`, and the dead worker's staged files removed. Returns the fields and whether the
    journal may go once they are recorded (not when the commit could not be finished now: the
    next runner on the folder finishes it)."""
    try:
        fields = ending(outcome, ok, cancelled, why, journal)
    except (OSError, TimeoutError) as exc:
        return {"state": "failed", "finished": time.time(), "error": f"{why}; its commit could not be finished "
                f"now ({type(exc).__name__}: {exc}); the next runner on this folder finishes it"}, False
    if fields["state"] != "done":
        remove_temporaries(job.get("output_dir"), pid, journal.parent)
    return fields, True


def journal_path(store_dir: Path, job_id: str) -> Path:
    """Where a job's worker journals its commit (inside the private store folder)."""
    return store_dir / "commits" / f"{job_id}.json"


def forget_journal(store_dir: Path, job_id: str) -> None:
    journal_path(store_dir, job_id).unlink(missing_ok=True)


def journals(store_dir: Path) -> list[str]:
    """The job ids that have a journal."""
    folder = store_dir / "commits"
    return [p.stem for p in folder.glob("*.json") if not p.name.startswith(".")] if folder.is_dir() else []

