"""The only contract between a runner and its worker process: what to run, and what comes back.

A request travels as the worker's command line (`python -I -m int8wb.calibration.jobs.worker
calibrate -- SPEC`), so it is visible in /proc and `JobStore.reconcile` can tell our workers from a
reused pid. The answer is one JSON object per line on the worker's stdout: any number of
`Progress`, then at most one `Result` or `Failure`. Both sides build and read these types only;
nobody else touches the dicts on the wire.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from ..problems import Problem

WORKER_MODULE = "int8wb.calibration.jobs.worker"


class ProtocolError(ValueError):
    """A line or a command line that is not one of our messages."""


# -- requests: the worker's command line ---------------------------------------------------------

@dataclass(frozen=True)
class Calibrate:
    """Run `workflow.calibrate` on the spec; `trust` runs the spec's custom metric. `journal`: where
    the outputs' commit is journalled, for the runner to read if the worker dies (`commit.commit_set`).
    `probes`: the address of the Ray cluster running the job, where AccuracyAware's ranking probes fan out."""
    spec: str
    trust: bool = False
    journal: str | None = None
    probes: str | None = None

    def argv(self) -> list[str]:
        return ["calibrate", *(["--trust"] if self.trust else []),
                *([f"--journal={self.journal}"] if self.journal else []),
                *([f"--probes={self.probes}"] if self.probes else []), "--", self.spec]


@dataclass(frozen=True)
class Compare:
    """Run `comparison.compare_models` on two IR models; with `html`, also write the report there."""
    a: str
    b: str
    html: str | None = None
    device: str = "CPU"
    batch: int = 1
    duration: float = 3.0
    strict_f32: bool = True

    def argv(self) -> list[str]:
        # --key=value and "--" before the paths: a path may start with "-"
        out = ["compare", f"--device={self.device}", f"--batch={self.batch}", f"--duration={float(self.duration)}"]
        out += ([f"--html={self.html}"] if self.html else []) + ([] if self.strict_f32 else ["--no-f32"])
        return out + ["--", self.a, self.b]


Request = Calibrate | Compare


def command(python: str, request: Request) -> list[str]:
    """The worker's full command line. -I: isolated from the workspace (no cwd or PYTHON* variables on
    sys.path), so a workspace folder named like one of our modules is never imported in its place."""
    return [python, "-I", "-m", WORKER_MODULE, *request.argv()]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # a ProtocolError instead of exit(2): the caller decides
        raise ProtocolError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=f"python -m {WORKER_MODULE}", description="one job, answered as JSON lines on stdout")
    sub = parser.add_subparsers(dest="request", required=True, parser_class=_Parser)
    c = sub.add_parser("calibrate", help="calibrate one spec")
    c.add_argument("spec")
    c.add_argument("--trust", action="store_true")
    c.add_argument("--journal")
    c.add_argument("--probes")
    m = sub.add_parser("compare", help="measure two IR models side by side")
    m.add_argument("a")
    m.add_argument("b")
    m.add_argument("--html")
    m.add_argument("--device", default="CPU")
    m.add_argument("--batch", type=int, default=1)
    m.add_argument("--duration", type=float, default=3.0)
    m.add_argument("--no-f32", dest="strict_f32", action="store_false")
    return parser


def parse_request(argv: list[str]) -> Request:
    """The inverse of `Request.argv()`; raises ProtocolError for anything else."""
    args = vars(_parser().parse_args(argv))
    kind = args.pop("request")
    return Calibrate(**args) if kind == "calibrate" else Compare(**args)


# -- answers: JSON lines on the worker's stdout ---------------------------------------------------

@dataclass(frozen=True)
class Progress:
    percent: float
    phase: str | None = None


@dataclass(frozen=True)
class Result:
    """The finished job's result: plain JSON data (a calibration or a comparison result)."""
    data: dict


@dataclass(frozen=True)
class Failure:
    """The job did not succeed; `problems` say what to fix ("cancelled" has none). Whatever it wrote
    (an over-budget attempt) is what its commit journal says, never a partial set."""
    error: str
    problems: tuple[Problem, ...] = ()


Message = Progress | Result | Failure


def encode(msg: Message) -> str:
    """One line (with its newline). Values JSON does not know (paths, numpy scalars) become strings."""
    if isinstance(msg, Progress):
        obj = {"kind": "progress", "percent": float(msg.percent), "phase": msg.phase}
    elif isinstance(msg, Result):
        obj = {"kind": "result", "data": msg.data}
    elif isinstance(msg, Failure):
        obj = {"kind": "failure", "error": msg.error, "problems": [p.to_dict() for p in msg.problems]}
    else:
        raise TypeError(f"not a worker message: {msg!r}")
    return json.dumps(obj, default=str) + "\n"


def decode(line: str | bytes) -> Message:
    """The message of one line; raises ProtocolError for a line that is not one."""
    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise ProtocolError(f"not JSON: {exc}") from None
    kind = obj.get("kind") if isinstance(obj, dict) else None
    try:
        if kind == "progress":
            percent, phase = obj["percent"], obj.get("phase")
            if isinstance(percent, bool) or not isinstance(percent, (int, float)):
                raise ProtocolError(f"progress percent is not a number: {percent!r}")
            if phase is not None and not isinstance(phase, str):
                raise ProtocolError(f"progress phase is not a string: {phase!r}")
            return Progress(float(percent), phase)
        if kind == "result" and isinstance(obj.get("data"), dict):
            return Result(obj["data"])
        if kind == "failure" and isinstance(obj.get("error"), str):
            problems = tuple(Problem(**p) for p in obj.get("problems") or ())
            return Failure(obj["error"], problems)
    except (KeyError, TypeError) as exc:
        raise ProtocolError(f"malformed {kind} message: {exc}") from None
    raise ProtocolError(f"not a worker message: {str(line)[:80]!r}")


def messages(lines: Iterable[str | bytes]) -> Iterator[Message]:
    """The messages of a worker's stream; lines that are not messages are skipped (a worker never
    writes them, and one stray line must not stop a runner from reading the rest)."""
    for line in lines:
        try:
            yield decode(line)
        except ProtocolError:
            continue


def answer(lines: Iterable[str | bytes], on_progress: Callable[[Progress], None]) -> Result | Failure | None:
    """Reads a worker's whole stream: each Progress to `on_progress`, then its last Result or Failure
    (None: it ended without one, e.g. killed)."""
    outcome = None
    for msg in messages(lines):
        if isinstance(msg, Progress):
            on_progress(msg)
        else:
            outcome = msg
    return outcome
