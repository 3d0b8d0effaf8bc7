"""`int8wb`: the command line over the engine. Exit codes: 0 ok, 1 refused/failed, 2 usage, 130 cancelled."""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from calibration import CalibrationError, Cancelled, inspect_model, load_spec

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
    from calibration.report import layer_rows, speed_rows, summary_rows
    from calibration.workflow import calibrate

    spec = load_spec(args.spec)
    columns = [TextColumn("{task.description:<28}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
               TimeElapsedColumn()]
    with Progress(*columns, console=err, transient=True, disable=args.quiet) as bar:
        task = bar.add_task("starting", total=100)
        # NNCF and OpenVINO print to stdout; keep stdout for our result alone.
        with contextlib.redirect_stdout(sys.stderr):
            result = calibrate(spec, progress=lambda pct, phase: bar.update(task, completed=pct, description=phase),
                               trust_custom_metrics=args.trust or os.environ.get("INT8WB_TRUST") == "1")
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    table = Table(title=f"{result['model']} → {result['output']['model']}")
    for col in ("", "FP32 (strict f32)", "INT8", "change"):
        table.add_column(col)
    for row in summary_rows(result):
        table.add_row(*row)
    out.print(table)
    speed = Table(title=f"speed on {result['device']} (batch {result['settings']['batch']})")
    for col in ("variant", "throughput", "latency (median)", "INT8 speedup vs this"):
        speed.add_column(col)
    for row in speed_rows(result):
        speed.add_row(*row)
    out.print(speed)
    if args.layers:
        layers = Table(title="INT8 runtime layers")
        for col in ("layer", "type", "outputPrecisions", "runtimePrecision", "time"):
            layers.add_column(col, overflow="fold")
        for row in layer_rows(result):
            layers.add_row(*row)
        out.print(layers)
    out.print(f"INT8 layers: {result['int8_layer_count']}; result: {result['output']['result']}")
    for note in result["notes"]:
        out.print(f"[yellow]note[/]: {note}")
    return 0


def cmd_check(args) -> int:
    from calibration.checker import check_paths

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
    from calibration.spec import json_schema
    print(json.dumps(json_schema(), indent=2))
    return 0


def cmd_serve(args) -> int:
    from daemon.server import main as serve
    serve()
    return 0


def cmd_jobs(args) -> int:
    from datetime import datetime
    from pathlib import Path

    from calibration.jobs import JobStore, store_path

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="int8wb", description="INT8 calibration of OpenVINO IR models")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("calibrate", help="baseline FP32 → calibrate → compare, from a *.calibration.toml")
    p.add_argument("spec")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--layers", action="store_true", help="also print the INT8 per-layer table")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--trust", action="store_true",
                   help="run the spec's custom metric (Python code from the workspace); also INT8WB_TRUST=1")
    p.set_defaults(func=cmd_calibrate)
    p = sub.add_parser("inspect", help="what the IR's XML says: version, inputs, precision, eligibility facts")
    p.add_argument("model")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_inspect)
    p = sub.add_parser("check", help="eligibility and spec problems of specs, models and folders (recursive)")
    p.add_argument("paths", nargs="+")
    p.add_argument("--json", action="store_true", help="a list of {path, rule, severity, message, line, key, fix}")
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("schema", help="print the JSON Schema of calibration spec files")
    p.set_defaults(func=cmd_schema)
    p = sub.add_parser("serve", help="run the language-server daemon over stdio (for editors)")
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("jobs", help="calibration jobs of a workspace (<folder>/.int8wb/jobs.sqlite)")
    p.add_argument("folder", nargs="?", default=".")
    p.add_argument("--json", action="store_true", help="the rows as a JSON list")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=cmd_jobs)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
