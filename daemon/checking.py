"""The checker processes: every read of a workspace file's content (spec and model checks, the
hover's model facts) runs in a child process (check_worker.py), never in the daemon.

A hostile file then costs at most a checker's memory limit and the daemon's time limit: a check that
runs past `seconds` or dies (out of memory, a crash) is answered with one problem saying so, its
process is replaced, and the daemon's own loop, memory and GIL stay free for the editor.

Requests wait in one queue (hover first); a request for a file replaces that file's request still
waiting (`key`): a burst of events costs one check, and the replaced caller gets None.
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import os
import sys
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path

from int8wb.calibration.guarded import TEXT_LIMIT
from int8wb.calibration.problems import Problem

LINE_LIMIT = 256 << 20  # one answer: thousands of problems of a hostile spec fit easily
START_S = 120.0         # a checker process has this long to import the engine (a loaded machine is slow)
SHOWN = 100             # problems shown as diagnostics per file (the commands get them all)
HOVER, CHECK = 0, 1     # priorities: what the editor waits for goes first


class _Died(Exception):
    pass


class _Worker:
    def __init__(self, proc: asyncio.subprocess.Process):
        self.proc = proc

    @classmethod
    async def start(cls, memory_mb: int, members: set[_Worker]) -> _Worker:
        """A checker process, one of `members` from the moment it exists (and until it fails to start):
        one still starting when the daemon shuts down is stopped and reaped with the others."""
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-I", "-m", "int8wb.daemon.check_worker", str(memory_mb),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=LINE_LIMIT, env=env)
        worker = cls(proc)
        members.add(worker)
        try:
            if not json.loads(await asyncio.wait_for(proc.stdout.readline(), START_S) or "{}").get("ready"):
                raise _Died(f"did not start (exit code {await proc.wait()})")
        except BaseException:
            worker.kill()
            worker.close()
            members.discard(worker)
            raise
        return worker

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    async def ask(self, request: dict) -> dict:
        self.proc.stdin.write(json.dumps(request).encode() + b"\n")
        await self.proc.stdin.drain()
        line = await self.proc.stdout.readline()
        if not line:
            raise _Died(f"exit code {await self.proc.wait()}")
        return json.loads(line)

    def kill(self) -> None:
        try:
            self.proc.kill()
        except ProcessLookupError:
            pass

    def close(self) -> None:
        """Closes the pipes while the loop runs: left to the garbage collector, asyncio closes them after
        the loop is gone and prints a traceback ("Event loop is closed")."""
        transport = getattr(self.proc, "_transport", None)  # asyncio.subprocess.Process has no close()
        if transport is not None:
            transport.close()


@dataclass
class Checked:
    problems: list[Problem] | None  # None: a model still arriving, not looked at yet
    lengths: dict[int, int]         # line -> its length, for the lines the problems point at
    model: str | None = None        # a spec: the model it names (its diagnostics follow that file)
    state: str | None = None        # a model: its arrival state (model_files.arrival)
    stopped: str | None = None      # why the checker gave no answer: check-timeout, -limit, -crashed


@dataclass(order=True)
class _Job:
    priority: int
    seq: int
    request: dict = field(compare=False)
    key: Hashable = field(compare=False)
    future: asyncio.Future = field(compare=False)


class Checker:
    def __init__(self, workers: int = 2, seconds: float = 10.0, memory_mb: int = 1024):
        self.size, self.seconds, self.memory_mb = max(1, workers), seconds, memory_mb
        self.idle: list[_Worker] = []
        self.all: set[_Worker] = set()
        self.busy = 0
        self.queue: list[_Job] = []
        self.waiting: dict[Hashable, _Job] = {}
        self.seq = itertools.count()
        self.closed = False
        self.counts = {"answered": 0, "check-timeout": 0, "check-limit": 0, "check-crashed": 0}  # int8wb.status

    # -- what the features ask ------------------------------------------------------------------
    async def spec(self, path: Path, text: str | None, *, replaceable: bool = True) -> Checked | None:
        """The problems of a spec (its buffer `text`, or the file) and the model it names. `replaceable`
        (diagnostics): a newer request for the file replaces this one, and at most SHOWN problems come
        back; otherwise (a command) every problem does."""
        if text is not None and len(text) > TEXT_LIMIT:  # what the engine refuses to read from a file
            return Checked([Problem(f"cannot check the buffer: too large ({len(text):,} characters; the limit is "
                                    f"{TEXT_LIMIT:,})", path=str(path), line=1, rule="spec")], {1: 0})
        reply = await self.run({"op": "spec", "path": str(path), "text": text, "limit": SHOWN if replaceable else None},
                               ("spec", str(path)) if replaceable else None)
        return None if reply is None else self._checked(reply, path)

    async def model(self, path: Path, settled: bool = False, *, replaceable: bool = True, scanned: bool = True
                    ) -> Checked | None:
        """An IR model's arrival state, and its problems (None while arriving and not `settled`);
        `scanned`: found in a folder rather than named, so our own outputs are information."""
        reply = await self.run({"op": "model", "path": str(path), "settled": settled, "scanned": scanned,
                                "limit": SHOWN if replaceable else None},
                               ("model", str(path)) if replaceable else None)
        return None if reply is None else self._checked(reply, path)

    async def hover(self, model: Path) -> tuple[str, bool]:
        """(the hover text of a model, whether a checker answered it rather than being stopped)."""
        reply = await self.run({"op": "hover", "path": str(model)}, None, HOVER)
        if reply is None or "error" in reply:
            return f"**{model.name}**: " + self.stopped_problem(reply or {}, model).message, False
        return reply["markdown"], True

    async def layers(self, model: Path) -> dict | None:
        """The model's layer table as the checker read it ({"layers", "int8_able"}); None when stopped."""
        reply = await self.run({"op": "layers", "path": str(model)}, None, HOVER)
        return None if reply is None or "error" in reply and not reply.get("layers") else reply

    def _checked(self, reply: dict, path: Path) -> Checked:
        if "error" in reply:
            return Checked([self.stopped_problem(reply, path)], {1: 0}, state="broken", stopped=reply["error"])
        problems = reply.get("problems")
        return Checked(None if problems is None else [Problem(**p) for p in problems],
                       {int(k): v for k, v in reply.get("lengths", {}).items()},
                       reply.get("model"), reply.get("state"))

    def stopped_problem(self, reply: dict, path: Path) -> Problem:
        rule = reply.get("error", "check-crashed")
        message = {
            "check-timeout": f"checking this file took longer than {self.seconds:g} s; the language server "
                             "stopped it (INT8WB_CHECK_SECONDS)",
            "check-limit": f"checking this file needs more than the {self.memory_mb} MB the language server "
                           "allows its checker; it was stopped (INT8WB_CHECK_MEMORY_MB)",
        }.get(rule, f"checking this file stopped the checker process ({reply.get('detail', 'no answer')})")
        return Problem(message, path=str(path), line=1, rule=rule, severity="warning")

    @property
    def pending(self) -> int:
        """Checks running or waiting (for int8wb.status: 0 once every file has been looked at)."""
        return self.busy + sum(not job.future.done() for job in self.queue)

    # -- the queue and the processes ----------------------------------------------------------------
    async def run(self, request: dict, key: Hashable = None, priority: int = CHECK) -> dict | None:
        """The worker's answer to `request`, or None when a newer request with the same `key` replaced
        it before it started. An answer with "error" says why there is none (timeout, crash, memory)."""
        if self.closed:
            return None
        old = self.waiting.pop(key, None) if key is not None else None
        if old is not None and not old.future.done():
            old.future.set_result(None)
        job = _Job(priority, next(self.seq), request, key, asyncio.get_running_loop().create_future())
        heapq.heappush(self.queue, job)
        if key is not None:
            self.waiting[key] = job
        self._pump()
        return await job.future

    def _pump(self) -> None:
        """Starts the waiting jobs that have a worker. A hover the editor waits for gets one more
        process when all are busy (with slow checks, maybe): it never waits behind them."""
        while self.queue and not self.closed:
            head = self.queue[0]
            if not head.future.done() and not self.idle and self.busy >= self.size + (head.priority == HOVER):
                return
            job = heapq.heappop(self.queue)
            if self.waiting.get(job.key) is job:
                del self.waiting[job.key]
            if job.future.done():  # replaced, or its caller went away
                continue
            self.busy += 1
            asyncio.ensure_future(self._serve(self.idle.pop() if self.idle else None, job))

    async def _serve(self, worker: _Worker | None, job: _Job) -> None:
        reply: dict = {"error": "check-crashed"}
        try:
            if worker is None:
                try:
                    worker = await _Worker.start(self.memory_mb, self.all)
                except asyncio.TimeoutError:
                    raise _Died(f"did not start within {START_S:g} s") from None
            if self.closed:  # shut down while it started: close() has stopped it
                raise _Died("the daemon is shutting down")
            reply = await asyncio.wait_for(worker.ask(job.request), self.seconds)
        except asyncio.TimeoutError:
            reply = {"error": "check-timeout"}
        except (_Died, OSError, ValueError) as exc:  # died, a broken pipe, an answer past LINE_LIMIT
            reply = {"error": "check-crashed", "detail": str(exc)}
        finally:
            self.busy -= 1
            self.counts[reply.get("error", "answered")] = self.counts.get(reply.get("error", "answered"), 0) + 1
            extra = self.busy + len(self.idle) >= self.size  # the hover's extra process goes once done
            if worker is not None and ("error" in reply or reply.get("exiting") or not worker.alive or self.closed
                                       or extra):
                worker.kill()
                worker.close()
                self.all.discard(worker)
                worker = None
            if worker is not None:
                self.idle.append(worker)
            if not job.future.done():
                job.future.set_result(reply)
            self._pump()

    def close(self) -> list[_Worker]:
        """Stops every checker process now (the daemon is exiting); returns them, for `aclose` to reap."""
        self.closed = True
        workers = list(self.all)
        for worker in workers:
            worker.kill()
            worker.close()
        self.all.clear()
        self.idle.clear()
        for job in self.queue:
            if not job.future.done():
                job.future.set_result(None)
        self.queue.clear()
        return workers

    async def aclose(self, timeout: float = 5.0) -> None:
        """`close`, then waits for the processes to be gone: none outlives the daemon's loop."""
        workers = self.close()
        if workers:
            await asyncio.wait([asyncio.ensure_future(w.proc.wait()) for w in workers], timeout=timeout)
