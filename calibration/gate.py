"""The gate: a result's budget and the verdict on it. The one judge of "within budget".

A budget is a JSON-able dict (`spec_budget`, `merge_budget`): the largest accuracy drop (absolute,
or relative to FP32's accuracy), an optional smallest speedup against one FP32 baseline and an
optional largest INT8 model size, each with where it came from. `evaluate` checks a result against
one and returns a `Verdict`: the failures, a table and the figures. Front ends decide what a failed
verdict means (the pytest plugin raises it as an assertion; the report shows it).
"""
from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path
from typing import Any

from . import stats
from .deployment import describe
from .result import Result

BUDGET_KEYS = ("max_drop", "min_speedup", "speedup_baseline", "max_model_size")
DEFAULT_MAX_DROP = 0.01
# Drops are differences of sums of floats: a drop equal to its budget may come out a hair above.
TOLERANCE = 1e-12


def within(drop: float, max_drop: float) -> bool:
    """Whether an accuracy drop meets its budget (both in the same units)."""
    return drop <= max_drop + TOLERANCE


def worse_by(fp32: float, int8: float, higher_is_better: bool) -> float:
    """How much worse INT8 is than FP32, in the metric's direction (negative: better)."""
    return fp32 - int8 if higher_is_better else int8 - fp32


# ---- budgets ---------------------------------------------------------------------------------

def spec_budget(spec) -> dict:
    """The budget a spec declares: its [gate], with max_drop defaulting to the accuracy-aware
    method's own budget, else 0.01. JSON-able; stored in results as `result["gate"]`."""
    gate, method = spec.gate, spec.calibration
    relative = False
    if gate.max_drop is not None:
        max_drop, source = gate.max_drop, "[gate] max_drop"
    elif method.method == "accuracy_aware":
        max_drop, source = method.max_drop, "[calibration] max_drop"
        relative = method.drop_type == "relative"
    else:
        max_drop, source = DEFAULT_MAX_DROP, "default"
    return {"max_drop": max_drop, "max_drop_relative": relative, "min_speedup": gate.min_speedup,
            "speedup_baseline": gate.speedup_baseline, "max_model_size": gate.max_model_size,
            "undecided": gate.undecided,
            "higher_is_better": spec.accuracy.higher_is_better,
            "source": {"max_drop": source, "min_speedup": "[gate] min_speedup",
                       "max_model_size": "[gate] max_model_size"}}


def validated(overrides: dict, where: str) -> dict:
    """Budget overrides checked key by key; `where` names their source in the errors."""
    allowed = (*BUDGET_KEYS, "undecided")
    unknown = set(overrides) - set(allowed)
    if unknown:
        raise TypeError(f"{where}: unknown budget {', '.join(sorted(unknown))}; allowed: {', '.join(allowed)}")
    out = {}
    for key, value in overrides.items():
        if key in ("speedup_baseline", "undecided"):
            choices = ("f32", "default") if key == "speedup_baseline" else ("fail", "skip")
            if value not in choices:
                raise ValueError(f'{where}: {key} must be "{choices[0]}" or "{choices[1]}", got {value!r}')
        elif value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{where}: {key} must be a number or None, got {value!r}")
            if key == "max_drop" and value < 0:
                raise ValueError(f"{where}: max_drop must be ≥ 0, got {value!r}")
            if key in ("min_speedup", "max_model_size") and value <= 0:
                raise ValueError(f"{where}: {key} must be > 0, got {value!r}")
        out[key] = value
    return out


def merge_budget(base: dict | None, overrides: dict, source: str) -> dict:
    """`base` (a spec budget or None for the defaults) with `overrides` on top."""
    budget = copy.deepcopy(base) if base else {
        "max_drop": DEFAULT_MAX_DROP, "max_drop_relative": False, "min_speedup": None,
        "speedup_baseline": "default", "max_model_size": None, "higher_is_better": True, "undecided": "fail",
        "source": {"max_drop": "default"}}
    for key, value in validated(overrides, source).items():
        budget[key] = value
        budget.setdefault("source", {})[key] = source
        if key == "max_drop":
            if value is None:
                budget["max_drop"], budget["source"]["max_drop"] = DEFAULT_MAX_DROP, "default"
            budget["max_drop_relative"] = False
    return budget


# ---- verdicts --------------------------------------------------------------------------------

_BASELINES = {"f32": ("fp32_f32", "vs_f32", "FP32 strict f32"),
              "default": ("fp32_default", "vs_default", "FP32 device default")}


@dataclasses.dataclass
class Verdict:
    """A result checked against a budget: the failures, a table, and the figures."""
    label: str
    result: Result
    budget: dict
    failures: list[str]
    rows: list[tuple[str, ...]]
    figures: dict
    undecided: list[str] = dataclasses.field(default_factory=list)  # budgets the intervals straddle

    @property
    def ok(self) -> bool:
        """Passes only on evidence: an undecided budget fails unless the budget says to skip it."""
        return not self.failures and not (self.undecided and self.budget.get("undecided", "fail") == "fail")

    @property
    def skipped(self) -> bool:
        return not self.failures and bool(self.undecided) and self.budget.get("undecided") == "skip"

    def render(self) -> str:
        head = (f"INT8 budget exceeded: {self.label}" if self.failures else
                f"INT8 budget undecided: {self.label}" if self.undecided else f"INT8 budget met: {self.label}")
        lines = [head] + [f"  - {f}" for f in self.failures] + [f"  ? {u}" for u in self.undecided]
        if self.undecided:
            lines.append("    (the 95 % interval straddles the budget: more samples or longer speed rounds decide it; "
                         '[gate] undecided = "skip" skips instead of failing)')
        if self.result.deployment:  # the verdict holds for the profile it was measured on
            lines.append(f"  measured at: {describe(self.result.deployment.model_dump())}")
        lines.append("")
        widths = [max(len(r[i]) for r in self.rows) for i in range(len(self.rows[0]))]
        for n, row in enumerate(self.rows):
            lines.append("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                          for i, (c, w) in enumerate(zip(row, widths))).rstrip())
            if n == 0:
                lines.append("  " + "  ".join("-" * w for w in widths))
        out = self.result.output
        lines.append("")
        lines.append(f"  INT8 model: {out.model}")
        lines.append(f"  result:     {out.result}")
        report = out.report or _sibling_report(out.result)
        if report:
            lines.append(f"  report:     {report}")
        lines += [f"  note: {n}" for n in self.result.notes]
        cache = self.result.cache
        if cache:
            where = f" ({cache.entry})" if cache.hit and cache.entry else ""
            lines.append(f"  source: {cache.source}{where}"
                         + ("; run with --int8-rerun to recalibrate" if cache.hit else ""))
        return "\n".join(lines)

    def properties(self, prefix: str = "int8.") -> list[tuple[str, Any]]:
        return [(prefix + k, v) for k, v in self.figures.items()]

    def summary_row(self, status: str | None = None) -> dict:
        return {**self.figures, "label": self.label,
                "status": status or ("skipped: undecided" if self.skipped else "passed" if self.ok else
                                     "FAILED: undecided" if not self.failures else "FAILED")}


def _sibling_report(result_path: str | None) -> str | None:
    """The HTML report beside the result (`model.int8.json` → `model.int8.report.html`), if written."""
    if not result_path:
        return None
    report = Path(result_path).with_suffix(".report.html")
    return str(report) if report.is_file() else None


def _num(x: float, digits: int = 4) -> str:
    return f"{x:.{digits}f}"


def figures_of(result: Result | dict) -> dict:
    """The result's figures the gate talks about (junit properties and summary columns)."""
    r = Result.of(result)
    held = r.heldout
    fp32, int8, drop = (held.fp32, held.int8, held.drop) if held else (r.fp32.accuracy, r.int8.accuracy, r.drop)
    figures = {
        "spec": r.spec,
        "metric": r.metric,
        "drop_on": "held-out" if held else "validation",
        "fp32_accuracy": fp32, "int8_accuracy": int8, "drop": drop,
        "validation_drop": r.drop,
        "speedup_vs_f32": round(r.speedup.ratio("vs_f32").value, 4),
        "speedup_vs_default": round(r.speedup.ratio("vs_default").value, 4),
        "drop_ci": (held.drop_ci if held else r.drop_ci),
        "throughput_fp32_f32": r.throughput.get("fp32_f32"),
        "throughput_fp32_default": r.throughput.get("fp32_default"),
        "throughput_int8": r.throughput.get("int8"),
        "model_size_fp32": r.model_size.fp32, "model_size_int8": r.model_size.int8,
        "int8_model": r.output.model,
        "result": r.output.result,
    }
    if r.cache:
        figures["cached"] = r.cache.hit
        figures["source"] = r.cache.source
    return figures


def evaluate(result: Result | dict, budget: dict, label: str = "") -> Verdict:
    """Checks `result` against `budget` (see `spec_budget`/`merge_budget`)."""
    r = Result.of(result)
    figures = figures_of(r)
    held = r.heldout
    src = budget.get("source", {})
    failures: list[str] = []
    rows = [("check", "FP32", "INT8", "value", "budget", "")]

    max_drop = budget["max_drop"]
    if budget.get("max_drop_relative"):
        max_drop = max_drop * abs(figures["fp32_accuracy"])
    # The drop is recomputed from the two accuracies in the metric's direction (positive: INT8 is
    # worse), so a lower-is-better metric is gated the right way whatever sign `drop` has.
    higher = r.metric_higher_is_better if r.metric_higher_is_better is not None \
        else budget.get("higher_is_better", True)
    loss = worse_by(figures["fp32_accuracy"], figures["int8_accuracy"], higher)
    ci = figures["drop_ci"]  # in the metric's direction already (positive: INT8 is worse)
    undecided: list[str] = []
    state = stats.budget_verdict(ci, max_drop, TOLERANCE) if ci else ("met" if within(loss, max_drop) else "exceeded")
    drop_ok = state != "exceeded"
    on_size = held.size if held else (r.accuracy_on.size if r.accuracy_on else "?")
    on_name = "held-out" if held else (r.accuracy_on.role if r.accuracy_on else "validation")
    budget_text = f"<= {_num(max_drop)}" + (" (relative)" if budget.get("max_drop_relative") else "")
    value = _num(loss) + (f" [{_num(ci[0])}, {_num(ci[1])}]" if ci else "")
    rows.append((f"{r.metric} drop, {on_name} ({on_size})", _num(figures["fp32_accuracy"]),
                 _num(figures["int8_accuracy"]), value, budget_text, {"met": "ok", "exceeded": "FAIL"}.get(state, "?")))
    if held:
        rows.append((f"{r.metric} drop, validation ({r.accuracy_on.size if r.accuracy_on else '?'})",
                     _num(r.fp32.accuracy), _num(r.int8.accuracy),
                     _num(worse_by(r.fp32.accuracy, r.int8.accuracy, higher)), "not gated", ""))
    where = f"the held-out set ({on_size} samples)" if held else f"{on_name} ({on_size} samples)"
    interval = f" (95 % interval {_num(ci[0])} to {_num(ci[1])})" if ci else ""
    if not drop_ok:
        failures.append(f"{r.metric} drop {_num(loss)}{interval} on {where} exceeds max_drop {_num(max_drop)} "
                        f"({src.get('max_drop', 'default')})")
    elif state == "undecided":
        undecided.append(f"{r.metric} drop {_num(loss)}{interval} on {where}: cannot tell whether it is within "
                         f"max_drop {_num(max_drop)} ({src.get('max_drop', 'default')})")

    gated = budget.get("speedup_baseline") or "default"
    for name in (gated, "f32" if gated == "default" else "default"):
        variant, key, title = _BASELINES[name]
        ratio = r.speedup.ratio(key)
        value, low, high = ratio.value, *(ratio.ci or (ratio.value, ratio.value))
        fp32_tp = r.throughput.get(variant, float("nan"))
        int8_tp = r.throughput.get("int8", float("nan"))
        shown = f"{value:.2f}x" + (f" [{low:.2f}, {high:.2f}]" if ratio.ci else "")
        if name == gated and budget.get("min_speedup") is not None:
            floor = budget["min_speedup"]
            how = ("in strict f32" if name == "f32" else
                   f"as {r.device} runs it by default ({r.device_default_precision or '?'})")
            what = f"speedup {value:.2f}x vs the FP32 model {how}" + \
                (f" (95 % interval {low:.2f}x to {high:.2f}x)" if ratio.ci else "")
            why = f"min_speedup {floor:g}x ({src.get('min_speedup', '')})".replace(" ()", "")
            status, budget_text = ("ok" if low >= floor else "FAIL" if high < floor else "?"), f">= {floor:g}x"
            if status == "FAIL":
                failures.append(f"{what} is below {why}")
            elif status == "?":
                undecided.append(f"{what}: cannot tell whether it reaches {why}")
        else:
            status, budget_text = "", "-"
        rows.append((f"speedup vs {title}", f"{fp32_tp:,.1f}/s", f"{int8_tp:,.1f}/s", shown, budget_text, status))

    size, limit = figures["model_size_int8"], budget.get("max_model_size")
    status, budget_text = "", "-"
    if limit is not None:
        ok = size <= limit
        status, budget_text = ("ok" if ok else "FAIL"), f"<= {int(limit):,} B"
        if not ok:
            failures.append(f"INT8 model size {size:,} B (.xml + .bin) exceeds max_model_size {int(limit):,} B "
                            f"({src.get('max_model_size', '')})".replace(" ()", ""))
    rows.append(("model size (.xml + .bin)", f"{figures['model_size_fp32']:,} B", f"{size:,} B",
                 f"{size / figures['model_size_fp32']:.2f}x", budget_text, status))

    figures.update({"drop": loss, "max_drop": max_drop, "min_speedup": budget.get("min_speedup"),
                    "speedup_baseline": gated, "max_model_size": limit})
    return Verdict(label or r.spec, r, budget, failures, rows, figures, undecided)


# ---- texts for a run of many gates -----------------------------------------------------------

SUMMARY_HEAD = ("gate", "drop", "max", "speedup", "min", "INT8 size", "status", "source")


def summary_lines(rows: list[dict]) -> list[str]:
    """The table of many gates' `Verdict.summary_row`s (or error rows: label, status "error", source)."""
    table = [SUMMARY_HEAD] + [_summary_cells(r) for r in sorted(rows, key=lambda r: r["label"])]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
    return lines[:1] + ["  ".join("-" * w for w in widths)] + lines[1:]


def _summary_cells(r: dict) -> tuple[str, ...]:
    if r.get("status") == "error":
        return (r["label"], "", "", "", "", "", "error", r.get("source", ""))
    baseline = r.get("speedup_baseline") or "default"
    md, ms, limit = r.get("max_drop"), r.get("min_speedup"), r.get("max_model_size")
    return (r["label"],
            f"{r['drop']:.4f} {r['drop_on']}",
            "-" if md is None else f"{md:.4f}",
            f"{r['speedup_vs_' + baseline]:.2f}x vs {baseline}",
            "-" if ms is None else f"{ms:g}x",
            f"{r['model_size_int8']:,} B" + ("" if limit is None else f" (max {int(limit):,})"),
            r.get("status", ""), r.get("source", ""))


def relative_path(path: str | None, base: Path) -> str | None:
    """`path` relative to `base` when it lies below it (problems read shorter from where pytest ran)."""
    if not path:
        return path
    try:
        return str(Path(path).relative_to(base))
    except ValueError:
        return path


def cannot_run(problems: list, base: Path, generated: str | None = None) -> str:
    """Why a gate could not run: the spec's or its inputs' problems, paths relative to `base`;
    `generated` is the spec text when it was made from Python (its lines are what problems cite)."""
    problems = [dataclasses.replace(p, path=relative_path(p.path, base)) for p in problems]
    n = len(problems)
    lines = [f"INT8 gate cannot run: {n} problem{'s' if n != 1 else ''} in the spec or its inputs"]
    lines += [f"  {p.severity}: {p}" for p in problems]
    if generated:
        lines += ["", "  (the spec was generated by int8_calibrate; line numbers refer to this text:)"]
        lines += [f"  {i:3d} | {line}" for i, line in enumerate(generated.splitlines(), start=1)]
    return "\n".join(lines)
