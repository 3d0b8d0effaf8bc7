"""`int8wb`: the command line over the engine. Exit codes: 0 ok, 1 refused/failed, 2 usage, 130 cancelled.

The parser and the exit codes live here; the commands live in `models` (specs and models) and
`workspace` (folders, jobs, the drop folder, trust, the language server).
"""
from __future__ import annotations

import argparse
import os
import signal

from rich.markup import escape

from int8wb.calibration import CalibrationError, Cancelled

from .cluster import ray_arguments
from .console import err, print_problems
from .models import cmd_calibrate, cmd_check, cmd_compare, cmd_inspect, cmd_schema, cmd_tensors
from .workspace import cmd_jobs, cmd_serve, cmd_trust, cmd_watch, watch_arguments


EXIT_CODES = """exit status:
  0    success (check: no error found)
  1    refused or failed: bad input, a spec or model problem, a failed run
       (each problem printed to stderr as `file:line: key: message (fix: ...)`)
  2    usage error (unknown command or option, bad option value)
  130  cancelled (Ctrl-C); nothing was written

every subcommand has --help; --json prints data as JSON on stdout (progress and messages go to stderr)"""

def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
        return value
    return parse

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="int8wb", description="INT8 calibration of OpenVINO IR models",
                                     epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"int8wb {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("calibrate", help="baseline FP32 → calibrate → compare, from a *.calibration.toml")
    p.add_argument("spec")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--layers", action="store_true", help="also print the INT8 per-layer table")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--trust", action="store_true",
                   help="run the spec's custom metric (Python code from the workspace); also INT8WB_TRUST=1")
    p.add_argument("--timeout", type=_positive(float), metavar="SECONDS",
                   help="stop after this long (exit 1, nothing written)")
    ray_arguments(p)
    p.set_defaults(func=cmd_calibrate)
    p = sub.add_parser("compare", help="speed, per-layer runtime and size of any two IR models (A vs B)",
                       description="Measures two models (e.g. FP32 vs INT8, or two INT8 variants) on the same random "
                                   "inputs shaped like the model inputs (dynamic dims -> 1): throughput and latency "
                                   "as the device runs each by default (plus strict f32 for models that are not "
                                   "quantized), both per-layer runtime tables side by side, and sizes.")
    p.add_argument("a", metavar="A.xml", help="first model (the reference)")
    p.add_argument("b", metavar="B.xml", help="second model")
    p.add_argument("--device", default="CPU", help="OpenVINO device (default: CPU)")
    p.add_argument("--batch", type=_positive(int), default=1, help="batch size (default: 1)")
    p.add_argument("--duration", type=_positive(float), default=3.0,
                   help="seconds of measurement per variant (default: 3)")
    p.add_argument("--no-f32", action="store_true", help="skip the strict-f32 variant of non-quantized models")
    p.add_argument("--json", action="store_true", help="print the comparison as one JSON object")
    p.add_argument("--html", metavar="OUT", help="write the comparison as one self-contained HTML page")
    p.add_argument("--layers", action="store_true", help="also print both per-layer runtime tables side by side")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_compare)
    p = sub.add_parser("inspect", help="what the IR's XML says: version, inputs, precision, eligibility facts")
    p.add_argument("model", metavar="MODEL.xml")
    p.add_argument("--json", action="store_true", help="print the facts as one JSON object")
    p.set_defaults(func=cmd_inspect)
    p = sub.add_parser("check", help="eligibility and spec problems of specs, models and folders (recursive)")
    p.add_argument("paths", nargs="+")
    p.add_argument("--json", action="store_true", help="a list of {path, rule, severity, message, line, key, fix}")
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("tensors", help="write the exact input tensors a spec feeds, to compare with your pipeline",
                       description="Writes the model input tensors of one split, in dataset order, as the tool "
                                   "feeds them (decode, resize, colour, mean/scale, layout, deployment shape) to an "
                                   ".npz: one array per model input, `paths` (each sample's file), `indices`, and "
                                   "`labels` when annotated.")
    p.add_argument("spec")
    p.add_argument("--split", choices=["calibration", "validation", "evaluation"], default="validation",
                   metavar="SPLIT", help="calibration (the [dataset] subset), validation (default) or evaluation "
                                         "(the held-out set)")
    p.add_argument("--out", required=True, metavar="FILE.npz", help="the file to write")
    p.add_argument("--limit", type=_positive(int), help="only the first N samples of the split")
    p.add_argument("--force", action="store_true", help="replace FILE.npz when it exists")
    p.add_argument("--json", action="store_true", help="print a summary as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_tensors)
    p = sub.add_parser("schema", help="print the JSON Schema of calibration spec files (always JSON)")
    p.set_defaults(func=cmd_schema)
    p = sub.add_parser("trust", help="trust a folder (its custom metrics and drop policy may run); lists them",
                       description="The list lives outside every workspace, in the user's configuration "
                                   "folder (or INT8WB_TRUST_FILE); a trusted folder trusts all below it.")
    p.add_argument("folder", nargs="?", help="the folder to trust (none: only list)")
    p.add_argument("--revoke", action="store_true", help="take the folder's trust back")
    p.set_defaults(func=cmd_trust)
    p = sub.add_parser("serve", help="run the language-server daemon over stdio (for editors)")
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("jobs", help="calibration jobs of a workspace (<folder>/.int8wb/jobs.sqlite)")
    p.add_argument("folder", nargs="?", default=".")
    p.add_argument("--json", action="store_true", help="the rows as a JSON list")
    p.add_argument("--limit", type=_positive(int), default=50, help="at most this many rows, newest first")
    p.set_defaults(func=cmd_jobs)
    p = sub.add_parser("watch", help="calibrate every model dropped in an inbox (policy: INBOX/calibration.toml)")
    watch_arguments(p)
    p.set_defaults(func=cmd_watch)
    return parser

def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("int8-workbench")
    except PackageNotFoundError:
        return "dev"


def _terminate(signum, frame):
    raise KeyboardInterrupt  # SIGTERM (`timeout`, `kill`) cleans up exactly as Ctrl-C does

def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return args.func(args)
    except CalibrationError as exc:
        print_problems(exc)
        return 1
    except (Cancelled, KeyboardInterrupt):
        err.print("cancelled; nothing was written")
        return 130
    except Exception as exc:  # noqa: BLE001  a fault of ours: one line, the traceback on request
        if os.environ.get("INT8WB_DEBUG") == "1":
            raise
        err.print(f"[bold red]internal error[/]: {escape(f'{type(exc).__name__}: {exc}')} (INT8WB_DEBUG=1 shows the traceback)",
                  markup=True, soft_wrap=True)
        return 1
