"""Commands about models and specs: inspect, calibrate, compare, check, schema."""
from __future__ import annotations

import contextlib
import json
import sys

from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from int8wb.calibration import inspect_model, load_spec
from int8wb.calibration.deployment import describe
from int8wb.calibration.inspection import pretty_shape
from int8wb.calibration.trust import trusted

from .cluster import backend
from .console import err, out, print_table, progress_columns


def cmd_inspect(args) -> int:
    from pathlib import Path

    from int8wb.calibration import conversion

    model = conversion.ir_for(Path(args.model))  # converted once (cached beside it), then read as the IR
    if model != Path(args.model):
        err.print(escape(f"{args.model}: {conversion.source_kind(Path(args.model))} model, inspected as its "
                         f"conversion by {conversion.ROUTE}: {model}"))
    info = inspect_model(model)
    if args.json:
        print(json.dumps(info.to_dict(), indent=2))
        return 0
    table = Table(title=f"{info.name}  ({info.path})", show_header=False)
    shape = lambda t: pretty_shape(t.shape)  # noqa: E731
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

    import time

    from int8wb.calibration import CalibrationError, Cancelled, Problem

    spec = load_spec(args.spec)
    cluster = backend(args)  # connects before the bar: a cluster that is not there is said at once
    started = time.monotonic()
    deadline = started + args.timeout if args.timeout else None
    plain = not args.quiet and not err.is_terminal  # CI logs, nohup: lines, not a bar nobody sees
    with Progress(*progress_columns(), console=err, transient=True, disable=args.quiet or plain) as bar:
        task = bar.add_task("starting", total=100)
        lines = PlainProgress(started) if plain else None

        def progress(pct: float, phase: str) -> None:
            bar.update(task, completed=pct, description=phase)
            if lines:
                lines(pct, phase)

        # NNCF and OpenVINO print to stdout; keep stdout for our result alone.
        try:
            with contextlib.redirect_stdout(sys.stderr):
                trust = trusted(args.trust, folder=spec.path.parent)
                if cluster is not None:  # a job on the cluster, as the pytest gate's --int8-ray runs it
                    from int8wb.calibration.jobs.as_job import calibrate_as_job

                    result = calibrate_as_job(spec, cluster, trust, progress, deadline)
                else:
                    result = calibrate(spec, progress=progress, trust_custom_metrics=trust,
                                       cancel=(lambda: time.monotonic() > deadline) if deadline else None)
        except Cancelled:
            if deadline is None or time.monotonic() <= deadline:
                raise
            raise CalibrationError(Problem(f"timed out after {args.timeout:g} s (--timeout); nothing was written",
                                           path=str(spec.path), rule="timeout",
                                           fix="raise --timeout, or calibrate on a smaller subset")) from None
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    typed = Result.of(result)
    print_table(f"{typed.model} → {typed.output.model}", ("", "FP32 (strict f32)", "INT8", "change [95 %]"),
                summary_rows(typed))
    rounds = len(typed.speed["int8"].get("rounds") or [1])
    where = f"; {typed.machine.cpu}, {typed.machine.cores} cores, load {typed.machine.load_average}" \
        if typed.machine else ""
    print_table(f"speed on {typed.device} (batch {typed.settings.batch}; {rounds} interleaved rounds{where})",
                ("variant", "throughput (min–max)", "latency (batch 1, median)", "INT8 speedup vs this [95 %]"),
                speed_rows(typed))
    if args.layers:
        print_table("INT8 runtime layers", ("layer", "type", "outputPrecisions", "runtimePrecision", "time"),
                    layer_rows(typed), overflow="fold")
    if typed.recommendation:
        colour = "green" if typed.recommendation.choice == "int8" else "yellow"
        out.print(f"[{colour}]recommendation: {typed.recommendation.choice}[/] — {escape(typed.recommendation.reason)}")
    if typed.deployment:
        out.print(escape(f"measured at the deployment profile: {describe(typed.deployment.model_dump())}"))
    inserted = f"quantize operations inserted: {typed.quantize_ops}; " if typed.quantize_ops is not None else ""
    out.print(escape(f"{inserted}layers that run INT8: {typed.int8_layer_count} of {len(typed.layers['int8'])} "
                     f"runtime layers; result: {typed.output.result}"))
    if typed.output.report:
        out.print(f"report: {escape(typed.output.report)}")
    for note in typed.notes:
        out.print(f"[yellow]note[/]: {escape(note)}")
    return 0

class PlainProgress:
    """Progress as plain lines on stderr when it is not a terminal: each new phase, and every 10 %."""

    def __init__(self, started: float):
        self.started, self.phase, self.step = started, None, -1

    def __call__(self, pct: float, phase: str) -> None:
        import time

        if phase != self.phase or int(pct // 10) > self.step:
            self.phase, self.step = phase, int(pct // 10)
            print(f"int8wb: {pct:5.1f}% {phase} ({time.monotonic() - self.started:.0f} s)", file=sys.stderr, flush=True)


def cmd_compare(args) -> int:
    from pathlib import Path

    from int8wb.calibration.comparison import compare_models
    from int8wb.calibration.report import comparison_layer_rows, comparison_rows, write_html

    settings = {"batch": args.batch, "duration": args.duration}
    columns = progress_columns()
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

def cmd_check(args) -> int:
    from int8wb.calibration.checker import check_paths

    problems = check_paths(args.paths, summaries=args.json)
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

def cmd_tensors(args) -> int:
    from pathlib import Path

    from int8wb.calibration.tensors import write_tensors

    target = Path(args.out)
    if target.exists() and not args.force:
        err.print(escape(f"{target}: exists; nothing written (--force replaces it)"))
        return 1
    spec = load_spec(args.spec)
    with Progress(*progress_columns(), console=err, transient=True, disable=args.quiet) as bar:
        task = bar.add_task(f"{args.split} tensors", total=1.0)
        summary = write_tensors(spec, args.split, target, args.limit,
                                progress=lambda f: bar.update(task, completed=f))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        shapes = ", ".join(f"{name} {shape}" for name, shape in summary["inputs"].items())
        out.print(escape(f"{summary['samples']} {args.split} samples ({shapes}; resize {summary['interpolation']}) "
                         f"→ {summary['file']}: arrays per input, `paths`, `indices`, and `labels` when annotated"))
    return 0
