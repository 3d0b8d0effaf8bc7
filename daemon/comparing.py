"""`int8wb.compare A.xml B.xml` as a job of the daemon: the command returns its id at once, the
comparison runs in a job worker (`calibration.jobs.compare_in_worker`, so OpenVINO never loads here),
its progress and its end reach the editor as a calibration's do (commands.JobProgress), and
`int8wb.jobs` / `int8wb.cancel` list and stop it. Comparisons are the daemon's own: not recorded in
the job store, gone when it exits (their reports stay)."""
from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from int8wb.calibration.jobs import compare_in_worker

if TYPE_CHECKING:
    from int8wb.daemon.server import Int8Server

KEEP = 50  # finished comparisons still listed


class Comparisons:
    def __init__(self, ls: Int8Server):
        self.ls = ls
        self.rows: dict[str, dict] = {}
        self.stops: dict[str, Callable[[], None]] = {}  # running comparison -> stops its worker
        self.cancelled: set[str] = set()
        self.tasks: set[asyncio.Task] = set()

    async def start(self, a: Path, b: Path, options: dict, report: Path) -> str:
        job_id = f"compare-{uuid.uuid4().hex[:10]}"
        now = time.time()
        self.rows[job_id] = {"id": job_id, "kind": "compare", "title": f"{a.name} vs {b.name}", "spec": str(b),
                             "model": str(a), "state": "running", "percent": 0.0, "phase": "starting",
                             "created": now, "started": now, "finished": None, "error": None, "summary": None}
        await self.ls.job_progress.start(job_id, f"Comparing {a.name} and {b.name}")
        task = asyncio.get_running_loop().create_task(self.run(job_id, a, b, options, report))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return job_id

    async def run(self, job_id: str, a: Path, b: Path, options: dict, report: Path) -> None:
        row = self.rows[job_id]
        try:
            summary = await asyncio.to_thread(
                compare_in_worker, a, b, report, **options,
                progress=lambda pct, phase: self.ls.from_thread(self.moved, job_id, pct, phase),
                started=lambda stop: self.ls.from_thread(self.running, job_id, stop))
            row.update(state="done", percent=100.0, phase="done", summary=summary)
        except Exception as exc:  # noqa: BLE001  (CalibrationError, or a worker that could not start)
            cancelled = job_id in self.cancelled
            row.update(state="cancelled" if cancelled else "failed", error=None if cancelled else str(exc))
        row["finished"] = time.time()
        self.stops.pop(job_id, None)
        self.cancelled.discard(job_id)
        self.forget_old()
        self.ls.job_progress.changed(dict(row))

    def running(self, job_id: str, stop: Callable[[], None]) -> None:
        self.stops[job_id] = stop
        if job_id in self.cancelled:  # cancelled before its worker was up
            stop()

    def moved(self, job_id: str, percent: float, phase: str | None) -> None:
        row = self.rows.get(job_id)
        if row is not None and row["state"] == "running":
            row.update(percent=percent, phase=phase or row["phase"])
            self.ls.job_progress.changed(dict(row))

    def cancel(self, job_id: str) -> bool:
        if self.rows.get(job_id, {}).get("state") != "running":
            return False
        self.cancelled.add(job_id)
        if (stop := self.stops.get(job_id)) is not None:
            stop()
        return True

    def stop_all(self) -> None:
        for job_id in list(self.stops):
            self.cancel(job_id)

    def list(self) -> list[dict]:
        return [dict(row) for row in self.rows.values()]

    def forget_old(self) -> None:
        done = [i for i, row in self.rows.items() if row["finished"] is not None]
        for job_id in done[:-KEEP]:
            del self.rows[job_id]
