"""The worker process: `python -I -m int8wb.calibration.jobs.worker calibrate [--trust] -- SPEC` or
`… compare [--html=OUT …] -- A.xml B.xml` (protocol.py builds and reads these). It runs one
request and answers in protocol messages on its stdout; its stderr is the runner's log. Only this
process loads OpenVINO and NNCF, so a crash, an OOM kill or a cancel ends it and never its caller.
"""
from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Callable

from ..problems import CalibrationError, Cancelled
from ..trust import trusted
from .protocol import Calibrate, Compare, Failure, Message, Progress, ProtocolError, Request, Result, encode, \
    parse_request

Send = Callable[[Message], None]


def calibrate(request: Calibrate, send: Send) -> dict:
    from ..spec import load_spec
    from ..workflow import calibrate as run

    spec = load_spec(request.spec)
    if request.probes:
        from ..methods.probes import join

        join(request.probes)
    return run(spec, progress=lambda pct, phase: send(Progress(pct, phase)), trust_custom_metrics=request.trust,
               journal=Path(request.journal) if request.journal else None)


def compare(request: Compare, send: Send) -> dict:
    """What `int8wb compare --json --html OUT` prints: the comparison, with the report's path."""
    from ..comparison import compare_models
    from ..report import write_html

    settings = {"batch": request.batch, "duration": request.duration}
    result = compare_models(request.a, request.b, request.device, settings, strict_f32=request.strict_f32,
                            progress=lambda pct, phase: send(Progress(pct, phase)))
    if request.html:
        result["report"] = str(write_html(result, Path(request.html)).resolve())
    return result


def run(request: Request, send: Send) -> int:
    """Runs `request`, sends its one Result or Failure, and returns the exit status."""
    try:
        result = calibrate(request, send) if isinstance(request, Calibrate) else compare(request, send)
    except CalibrationError as exc:
        send(Failure(str(exc), tuple(exc.problems)))
        return 1
    except Cancelled:
        send(Failure("cancelled"))
        return 130
    except Exception as exc:  # noqa: BLE001
        send(Failure(f"{type(exc).__name__}: {exc}"))
        return 1
    send(Result(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        request = parse_request(sys.argv[1:] if argv is None else argv)
    except ProtocolError as exc:
        print(f"{sys.argv[0]}: {exc}", file=sys.stderr)
        return 2
    if isinstance(request, Calibrate):  # trust is given from outside the workspace: the flag or INT8WB_TRUST
        request = dataclasses.replace(request, trust=trusted(request.trust))
    # Our protocol owns the real stdout; everything else (OpenVINO, NNCF, print) goes to stderr.
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def send(msg: Message) -> None:
        proto.write(encode(msg))
        proto.flush()

    return run(request, send)


if __name__ == "__main__":
    sys.exit(main())
