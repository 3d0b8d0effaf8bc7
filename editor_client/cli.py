"""`int8wb`: the command line over the engine. Exit codes: 0 ok, 1 refused/failed, 2 usage, 130 cancelled."""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from int8wb.calibration import CalibrationError, Cancelled, inspect_model, load_spec
from int8wb.calibration.trust import trusted

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def _print_problems(exc: CalibrationError) -> None:
    for p in exc.problems:
        err.print(f"[bold red]error[/]: {p}" if p.severity == "error" else f"{p.severity}: {p}", markup=True,
                  soft_wrap=True)


def cmd_inspect(args) -> int:
    info = inspect_model(args.model)
    if args.json:
        print(json.dumps(info.to_dict(), indent=2))
        return 0
    table = Table(title=f"{info.name}  ({info.path})", show_header=False)
    shape = lambda t: "[" + ",".join("?" if d < 0 else str(d) for d in t.shape) + "]"  # noqa: E731
    rows = [
        ("IR version", str(info.ir_version)),
        ("precision", info.precision + (" (FP16-compressed weights)" if info.fp16_compressed_weights else "")),
        ("inputs", ", ".join(f"{t.name} {shape(t)} {t.element_type}" for t in info.inputs)),
        ("outputs", ", ".join(f"{t.name} {shape(t)} {t.element_type}" for t in info.outputs)),
        ("layers", f"{info.layer_count} ({len(info.int8_layers)} INT8-able)"),
        ("quantized", info.quantized_evidence or "no"),
        ("int8-workbench output", "yes, from " + info.derived.get("source", "?") if info.derived else "no"),
        ("weights", f"{info.bin_path}: " + ("missing" if info.bin_size is None else
                                             f"{info.bin_size} of {info.bin_expected_size} bytes")),
    ]
    for key, value in rows:
        table.add_row(key, value)
    out.print(table)
    return 0


def cmd_calibrate(args) -> int:
    from int8wb.calibration.report import layer_rows, speed_rows, summary_rows
    from int8wb.calibration.result import Result
    from int8wb.calibration.workflow import calibrate

    spec = load_spec(args.spec)
    columns = [TextColumn("{task.description:<28}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
               TimeElapsedColumn()]
    with Progress(*columns, console=err, transient=True, disable=args.quiet) as bar:
        task = bar.add_task("starting", total=100)
        # NNCF and OpenVINO print to stdout; keep stdout for our result alone.
        with contextlib.redirect_stdout(sys.stderr):
            result = calibrate(spec, progress=lambda pct, phase: bar.update(task, completed=pct, description=phase),
                               trust_custom_metrics=trusted(args.trust, folder=spec.path.parent))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    typed = Result.of(result)
    table = Table(title=f"{typed.model} → {typed.output.model}")
    for col in ("", "FP32 (strict f32)", "INT8", "change"):
        table.add_column(col)
    for row in summary_rows(typed):
        table.add_row(*row)
    out.print(table)
    speed = Table(title=f"speed on {typed.device} (batch {typed.settings.batch})")
    for col in ("variant", "throughput", "latency (median)", "INT8 speedup vs this"):
        speed.add_column(col)
    for row in speed_rows(typed):
        speed.add_row(*row)
    out.print(speed)
    if args.layers:
        layers = Table(title="INT8 runtime layers")
        for col in ("layer", "type", "outputPrecisions", "runtimePrecision", "time"):
            layers.add_column(col, overflow="fold")
        for row in layer_rows(typed):
            layers.add_row(*row)
        out.print(layers)
    out.print(f"INT8 layers: {typed.int8_layer_count}; result: {typed.output.result}")
    if typed.output.report:
        out.print(f"report: {typed.output.report}")
    for note in typed.notes:
        out.print(f"[yellow]note[/]: {note}")
    return 0


def cmd_check(args) -> int:
    from int8wb.calibration.checker import check_paths

    problems = check_paths(args.paths)
    if args.json:
        print(json.dumps([{k: p.to_dict()[k] for k in ("path", "rule", "severity", "message", "line", "key", "fix")}
                          for p in problems], indent=2))
    else:
        colour = {"error": "red", "warning": "yellow", "info": "blue"}
        for p in problems:
            where = f"{p.path}:{p.line}" if p.line else str(p.path)
            fix = f"\n    fix: {p.fix}" if p.fix else ""
            text = escape(f"[{p.rule}] {(p.key + ': ') if p.key else ''}{p.message}{fix}")
            out.print(f"{escape(where)}: [{colour.get(p.severity, 'white')}]{p.severity}[/] {text}",
                      soft_wrap=True, highlight=False)
        errors = sum(p.severity == "error" for p in problems)
        err.print(f"{errors} error(s), {len(problems) - errors} other finding(s)")
    return 1 if any(p.severity == "error" for p in problems) else 0


def cmd_schema(args) -> int:
    from int8wb.calibration.spec import json_schema
    print(json.dumps(json_schema(), indent=2))
    return 0


def cmd_trust(args) -> int:
    from int8wb.calibration.trust import set_trusted, trust_file, trusted_folders

    if args.folder is not None:
        if not os.path.isdir(args.folder):
            err.print(f"not a folder: {escape(args.folder)}")
            return 2
        set_trusted(args.folder, on=not args.revoke)
    for folder in trusted_folders():
        out.print(escape(str(folder)), highlight=False)
    err.print(f"trusted folders: {escape(str(trust_file()))}")
    return 0


def cmd_serve(args) -> int:
    # The language server is another front end: this process becomes it (same stdio), isolated
    # from the working directory, rather than importing it.
    os.execv(sys.executable, [sys.executable, "-I", "-m", "int8wb.daemon"])


def cmd_watch(args) -> int:
    """Exit status: 0 all succeeded, 1 any refused or failed (or an invalid policy), 2 usage."""
    import signal
    import threading

    from int8wb.calibration.dropfolder import DropFolder, inbox_rows

    def echo(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        drop = DropFolder(args.inbox, policy=args.policy, jobs=args.jobs, echo=None if args.quiet else echo,
                          trust_custom_metrics=trusted(args.trust, folder=args.inbox))
    except CalibrationError as exc:
        for p in exc.problems:
            print(f"error: {p}", file=sys.stderr)
        return 1
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda *_: drop.stop())
    try:
        status = drop.run(once=args.once, timeout=args.timeout)
    except TimeoutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        status = 1
    finally:
        drop.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if args.once:
        left = [r for r in inbox_rows(drop.inbox) or [] if r["state"] in ("incomplete", "settling")]
        print(f"{len(drop.published)} calibrated, {len(drop.failures)} refused or failed"
              + (f", {len(left)} incomplete left for a later run" if left else ""), file=sys.stderr)
    return status


def _watch_arguments(parser: argparse.ArgumentParser) -> None:
    from int8wb.calibration.dropfolder import POLICY_NAME

    parser.add_argument("inbox", help=f"the inbox folder (holding {POLICY_NAME})")
    parser.add_argument("--once", action="store_true", help="process what is there, then exit (cron, CI)")
    parser.add_argument("--policy", help=f"the policy file (default INBOX/{POLICY_NAME})")
    parser.add_argument("--jobs", type=int, help="calibrations at a time (default: [drop] jobs, 1)")
    parser.add_argument("--timeout", type=float, help="give up after this many seconds")
    parser.add_argument("-q", "--quiet", action="store_true", help="log to INBOX/.int8wb/dropfolder.log only")
    parser.add_argument("--trust", action="store_true",
                        help="run the policy's custom metric (Python code); also INT8WB_TRUST=1")


def _inbox_jobs(args) -> bool:
    """`int8wb jobs INBOX`: the inbox's models with their state and job; False when not an inbox."""
    from datetime import datetime

    from int8wb.calibration.dropfolder import inbox_rows

    rows = inbox_rows(args.folder)
    if rows is None:
        return False
    rows = rows[:args.limit]
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return True
    if not rows:
        err.print(f"no models in the inbox {escape(str(args.folder))} yet")
        return True
    when = lambda t: datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") if t else ""  # noqa: E731
    table = Table(title=f"inbox {args.folder}")
    for col in ("model", "state", "sha256", "job", "progress", "updated", "entry / note"):
        table.add_column(col, overflow="fold")
    for r in rows:
        progress = f"{r['percent']:.0f}% {r['phase'] or ''}" if r["job_state"] == "running" else (r["job_state"] or "")
        note = r["entry"] if r["state"] in ("done", "failed") and r["entry"] else (r["note"] or r["error"] or "")
        table.add_row(r["xml"], r["state"], (r["hash"] or "")[:12], r["job"] or "", progress, when(r["updated"]),
                      escape(str(note)))
    out.print(table)
    return True


def cmd_jobs(args) -> int:
    from datetime import datetime
    from pathlib import Path

    from int8wb.calibration.jobs import JobStore, store_path

    if not Path(args.folder).is_dir():
        err.print(f"error: no such folder: {escape(str(args.folder))}")
        return 1
    if _inbox_jobs(args):  # an inbox (int8wb watch): one row per dropped model
        return 0
    if not store_path(args.folder).exists():
        rows = []
    else:
        store = JobStore(args.folder, create=False)
        rows = store.list(limit=args.limit)
        store.close()
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    if not rows:
        err.print(f"no jobs in {store_path(args.folder)}")
        return 0
    when = lambda t: datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") if t else ""  # noqa: E731
    table = Table(title=str(store_path(args.folder)))
    for col in ("id", "spec", "state", "progress", "started", "finished", "result"):
        table.add_column(col, overflow="fold")
    for r in rows:
        s = r["summary"] if isinstance(r["summary"], dict) else {}
        if r["state"] == "done" and s.get("drop") is not None:
            result = f"drop {s['drop'] * 100:.2f} pp, {s.get('speedup_vs_default') or 0:.2f}x vs default"
        else:
            result = r["error"] or ""
        progress = f"{r['percent']:.0f}% {r['phase'] or ''}" if r["state"] == "running" else ""
        table.add_row(r["id"], Path(r["spec"]).name, r["state"], progress, when(r["started"]), when(r["finished"]),
                      escape(result))
    out.print(table)
    return 0


def cmd_compare(args) -> int:
    from pathlib import Path

    from int8wb.calibration.comparison import compare_models
    from int8wb.calibration.report import comparison_layer_rows, comparison_rows, write_html

    settings = {"batch": args.batch, "duration": args.duration}
    columns = [TextColumn("{task.description:<28}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
               TimeElapsedColumn()]
    with Progress(*columns, console=err, transient=True, disable=args.quiet or args.json) as bar:
        task = bar.add_task("starting", total=100)
        with contextlib.redirect_stdout(sys.stderr):  # keep stdout for our result alone
            result = compare_models(args.a, args.b, args.device, settings, strict_f32=not args.no_f32,
                                    progress=lambda pct, phase: bar.update(task, completed=pct, description=phase))
    if args.html:
        result["report"] = str(write_html(result, Path(args.html)).resolve())
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    a, b = result["models"]["a"], result["models"]["b"]
    table = Table(title=f"A {a['name']} vs B {b['name']} on {result['device']} (batch {result['settings']['batch']})")
    table.add_column("")
    for key in result["variants"]:
        table.add_column(result["labels"][key], justify="right")
    for row in comparison_rows(result):
        table.add_row(*row)
    out.print(table)
    if args.layers:
        layers = Table(title="runtime layers, A vs B (device default)")
        for col in ("layer", "type", "A precision", "A time", "B precision", "B time", "Δ time"):
            layers.add_column(col, overflow="fold")
        for row in comparison_layer_rows(result):
            layers.add_row(*row)
        out.print(layers)
    out.print(f"B vs A: {result['speedup']['b_vs_a']:.2f}x throughput, size "
              f"{result['model_size']['b'] / result['model_size']['a']:.2f}x")
    for note in result["notes"]:
        out.print(f"[yellow]note[/]: {escape(note)}")
    if args.html:
        out.print(f"report: {result['report']}")
    return 0


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
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("calibrate", help="baseline FP32 → calibrate → compare, from a *.calibration.toml")
    p.add_argument("spec")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--layers", action="store_true", help="also print the INT8 per-layer table")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--trust", action="store_true",
                   help="run the spec's custom metric (Python code from the workspace); also INT8WB_TRUST=1")
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
    _watch_arguments(p)
    p.set_defaults(func=cmd_watch)
    return parser


def _terminate(signum, frame):
    raise KeyboardInterrupt  # SIGTERM (`timeout`, `kill`) cleans up exactly as Ctrl-C does


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return args.func(args)
    except CalibrationError as exc:
        _print_problems(exc)
        return 1
    except (Cancelled, KeyboardInterrupt):
        err.print("cancelled; nothing was written")
        return 130


if __name__ == "__main__":
    sys.exit(main())
