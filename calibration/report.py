"""The comparison of a calibration result: plain rows for any front end, and one self-contained HTML page.

The HTML report is DL Workbench's compare page as a single file: the page, its CSS, its sort
script and its SVG charts are all inline, so it opens offline, can be mailed or attached to a CI
run, and prints. Layout lives in `templates/` (Jinja2); this module only shapes the data.
"""
from __future__ import annotations

import functools
import math
import os
import re
from pathlib import Path

import jinja2

from .gate import within
from .deployment import describe
from .result import AccuracyAwareBudget, Result
from .runtime import DEFAULT, F32, INT8, VARIANT_LABELS

VARIANTS = (F32, DEFAULT, INT8)


def _mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB"


def summary_rows(result: Result | dict) -> list[tuple[str, str, str, str]]:
    """(what, FP32, INT8, change) rows of the headline comparison."""
    r = Result.of(result)
    fp32, int8, size = r.fp32.accuracy, r.int8.accuracy, r.model_size
    on = f"{r.accuracy_on.role}, {r.accuracy_on.size}" if r.accuracy_on else "validation"
    rows = [(f"accuracy ({r.metric}; {on})", f"{fp32:.4f}", f"{int8:.4f}", _drop_text(r.drop, r.drop_ci, r.no_interval))]
    if r.heldout:
        h = r.heldout
        rows.append((f"accuracy ({r.metric}; held-out, {h.size})", f"{h.fp32:.4f}", f"{h.int8:.4f}",
                     _drop_text(h.drop, h.drop_ci, r.no_interval)))
    if isinstance(r.budget, AccuracyAwareBudget):
        b = r.budget
        rows.append(("budget", f"max_drop {b.max_drop:g}" + (" relative" if b.drop_type == "relative" else ""),
                     f"bound {b.bound:.4g}" if b.bound is not None else f"{b.measured:.4g}",
                     ("met" if b.met else "NOT met") + (f" (held-out: {b.heldout})" if b.heldout else "")))
    if r.fp32_layers is not None:
        cut = " (search cut short: not minimal)" if r.search and r.search.cut_short else ""
        of = f" of {r.accuracy_aware.quantized_layers} quantized" if r.accuracy_aware else ""
        precise = sum(1 for layer in r.fp32_layers if layer.get("precise"))
        strict = f" ({precise} marked strict f32)" if precise else ""
        rows.append(("layers left in FP32", "", f"{len(r.fp32_layers)}{of}{strict}", cut.strip()))
    rows.append(("model size", _mib(size.fp32), _mib(size.int8), f"{size.int8 / size.fp32:.2f}x"))
    return rows


def _drop_text(drop: float, ci: list[float] | None, no_interval: str | None = None) -> str:
    text = f"drop {drop * 100:+.2f} pp"
    if ci:
        return text + f" [{ci[0] * 100:+.2f}, {ci[1] * 100:+.2f}]"
    return text + (f" (no interval: {no_interval})" if no_interval else "")


def ratio_text(ratio) -> str:
    """"1.34x [1.10–1.60] faster", or the bare value of a result measured before rounds."""
    if ratio.ci is None:
        return f"{ratio.value:.2f}x"
    return f"{ratio.value:.2f}x [{ratio.ci[0]:.2f}–{ratio.ci[1]:.2f}] {ratio.verdict}"


def speed_rows(result: Result | dict) -> list[tuple[str, str, str, str]]:
    """(variant, throughput (min–max over rounds), batch-1 median latency, INT8 speedup against it) rows."""
    r = Result.of(result)
    rows = []
    for variant in (F32, DEFAULT, INT8):
        label = VARIANT_LABELS[variant]
        if variant == DEFAULT:
            label += f" [{r.device_default_precision or '?'}]"
        ratio = {F32: r.speedup.ratio("vs_f32"), DEFAULT: r.speedup.ratio("vs_default")}.get(variant)
        spread = r.speed[variant].get("spread")
        rows.append((label, f"{r.throughput[variant]:.1f}/s" + (f" ({spread[0]:.0f}–{spread[1]:.0f})" if spread else ""),
                     f"{r.latency_ms[variant]:.3f} ms", ratio_text(ratio) if ratio is not None else ""))
    return rows


def layer_rows(result: Result | dict, variant: str = INT8) -> list[tuple[str, str, str, str, str]]:
    """(layer, type, outputPrecisions, runtimePrecision, time) of one variant's runtime model."""
    return [(r["name"], r["type"], r["outputPrecisions"], r["runtimePrecision"], f"{r['time_us']:.1f} us")
            for r in Result.of(result).layers[variant]]


# ---- HTML report ---------------------------------------------------------------------------

# One format per kind of figure; the tests read the page back and expect exactly these.
# Built-in metrics are fractions shown as percent; a custom metric is shown in its own units.
FORMATS = {
    "acc": lambda v, percent=True: f"{v * 100:.2f} %" if percent else f"{v:.4g}",
    "drop": lambda v, percent=True: f"{v * 100:+.2f} pp" if percent else f"{v:+.4g}",
    "limit": lambda v, percent=True: f"{v * 100:.2f} pp" if percent else f"{v:.4g}",
    "rel": lambda v: f"{v * 100:.2f} %",          # a relative drop or budget, a fraction of FP32's
    "rate": lambda v: f"{v:,.1f} /s",             # throughput, samples per second
    "ms": lambda v: f"{v:.3f} ms",
    "us": lambda v: f"{v:,.1f} µs",
    "dus": lambda v: f"{v:+,.1f} µs" if round(v, 1) else "0.0 µs",  # a time difference
    "x": lambda v: f"{v:.2f}×",                   # a ratio
    "size": lambda n: f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB",
}
PERCENT_METRICS = re.compile(r"top\d+|agreement|iou|miou|pixel_accuracy")


def pair_layers(fp32_rows: list[dict], int8_rows: list[dict], keys: tuple[str, str] = ("fp32", "int8"),
                only: tuple[str, str] = ("FP32", "INT8")) -> list[dict]:
    """FP32 and INT8 runtime rows side by side, in execution order.

    `keys` name the two sides in each pair and `only` how a one-sided row is tagged (a comparison of
    any two models uses ("a", "b") and ("A", "B")).

    The runtime fuses and renames nodes differently in each model, so rows are matched on the
    original (IR) layers they were built from; a row without any (a Reorder, say) matches by name.
    Rows with no counterpart (a FakeQuantize the INT8 model adds) stand alone.
    """
    used: set[int] = set()

    def match(row: dict) -> int | None:
        mine = set(row["originalLayers"])
        best, overlap = None, 0
        for i, other in enumerate(fp32_rows):
            common = len(mine & set(other["originalLayers"]))
            if i not in used and common > overlap:
                best, overlap = i, common
        if best is None:
            best = next((i for i, o in enumerate(fp32_rows) if i not in used and o["name"] == row["name"]), None)
        return best

    matches = []
    for row in int8_rows:
        j = match(row)
        if j is not None:
            used.add(j)
        matches.append(j)
    pairs, upto = [], 0
    for row, j in zip(int8_rows, matches):
        if j is not None:
            # FP32-only rows that run before the match keep their place.
            pairs += [_pair(fp32_rows[i], None, keys, only) for i in range(upto, j) if i not in used]
            upto = max(upto, j + 1)
        pairs.append(_pair(fp32_rows[j] if j is not None else None, row, keys, only))
    pairs += [_pair(fp32_rows[i], None, keys, only) for i in range(upto, len(fp32_rows)) if i not in used]
    return pairs


def _pair(fp32: dict | None, int8: dict | None, keys=("fp32", "int8"), only=("FP32", "INT8")) -> dict:
    # A missing side costs nothing there, so the deltas add up to the difference of the totals.
    delta = (int8["time_us"] if int8 else 0.0) - (fp32["time_us"] if fp32 else 0.0)
    return {keys[0]: fp32, keys[1]: int8, "delta": round(delta, 2),
            "only": None if fp32 and int8 else (only[1] if int8 else only[0])}


def axis(values, ticks: int = 4) -> dict:
    """A round axis maximum ≥ every value, and its tick values, for the SVG charts."""
    top = max([v for v in values if v] or [1.0])
    raw = top / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(s * magnitude for s in (1, 2, 2.5, 5, 10) if s * magnitude >= raw)
    end = math.ceil(top / step - 1e-9) * step
    return {"max": end, "ticks": [round(i * step, 10) for i in range(int(round(end / step)) + 1)]}


def _budget(r: Result) -> dict | None:
    """The accuracy budget when the result carries one: AccuracyAware's max_drop, or a bare number."""
    budget = r.budget
    if budget is None:
        return None
    if isinstance(budget, AccuracyAwareBudget):
        relative = budget.drop_type == "relative"
        return {"max_drop": budget.max_drop, "relative": relative, "measured": budget.measured, "met": budget.met,
                "heldout": budget.heldout, "unseen": budget.unseen, "guarantee": budget.guarantee}
    measured = r.drop
    return {"max_drop": budget, "relative": False, "measured": measured, "met": within(measured, budget),
            "heldout": None, "guarantee": None}


def _view(r: Result) -> dict:
    """What the template needs beyond the result itself: paired rows and chart data."""
    reference = F32 if F32 in r.layers else DEFAULT
    summary = r.layer_summary
    by_type = {v: summary[v]["time_us_by_type"] for v in (reference, INT8)}
    types = sorted(set(by_type[reference]) | set(by_type[INT8]),
                   key=lambda t: -max(by_type[reference].get(t, 0.0), by_type[INT8].get(t, 0.0)))
    labels = dict(VARIANT_LABELS)
    labels[DEFAULT] = f"FP32 default ({r.device_default_precision or '?'})"
    return {
        "names": (Path(r.model).name, Path(r.output.model).name),
        "percent": bool(PERCENT_METRICS.fullmatch(r.metric)),
        "reference": reference,
        "labels": labels,
        "pairs": pair_layers(r.layers[reference], r.layers[INT8]),
        "layer_types": [{"type": t, reference: by_type[reference].get(t, 0.0), INT8: by_type[INT8].get(t, 0.0)}
                        for t in types],
        "precisions": {v: summary[v]["layers_by_precision"] for v in (reference, INT8)},
        "budget": _budget(r),
        "speedups": {key: r.speedup.ratio(key) for key in ("vs_f32", "vs_default")},
        "fp32_layers": sorted(r.fp32_layers, key=lambda row: -(row.get("score") or 0.0))
        if r.fp32_layers is not None else None,
        "controls": controls_text(r.controls) if r.controls else None,
        "deployment": describe(r.deployment.model_dump()) if r.deployment else None,
    }


def controls_text(controls: dict, prefix: str = "") -> str:
    """Every control in force as `key value` pairs (nested tables dotted; empty lists left out)."""
    parts = []
    for key, value in controls.items():
        if isinstance(value, dict):
            inner = controls_text(value, f"{prefix}{key}.")
            parts += [inner] if inner else []
        elif value not in ([], None):
            parts.append(f"{prefix}{key} {value}")
    return " · ".join(parts)


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.do"])
    env.filters.update(FORMATS, tick=lambda v: f"{v:,.0f}" if v == int(v) else f"{v:g}")
    env.globals.update(axis=axis, VARIANTS=VARIANTS, F32=F32, DEFAULT=DEFAULT, INT8=INT8)
    return env


def is_comparison(result: Result | dict) -> bool:
    """A result of `calibration.comparison.compare_models` (two models, no accuracy), not a calibration."""
    return isinstance(result, dict) and result.get("kind") == "comparison"


# Colours of a comparison's variants: the calibration report's palette, under neutral names.
COMPARISON_CLASSES = {"a_f32": "fp32_f32", "a": "fp32_default", "b": "int8", "b_f32": "b_f32"}


def comparison_rows(result: dict) -> list[tuple[str, ...]]:
    """(what, one column per variant) rows of a two-model comparison, for terminals."""
    order, speed = result["variants"], result["speed"]
    side = lambda k: k.split("_")[0]  # noqa: E731
    rows = [
        ("model", *(result["models"][side(k)]["name"] for k in order)),
        ("compiled with", *("INFERENCE_PRECISION_HINT f32" if k.endswith("_f32") else
                            f"device default ({result.get('device_default_precision') or '?'})" for k in order)),
        ("throughput", *(FORMATS["rate"](result["throughput"][k]) for k in order)),
        ("latency median", *(FORMATS["ms"](result["latency_ms"][k]) for k in order)),
        ("B speedup vs this", *("" if k == "b" else FORMATS["x"](result["throughput"]["b"] / result["throughput"][k])
                                for k in order)),
        ("streams · requests", *(f"{speed[k]['streams']} · {speed[k]['requests']}" for k in order)),
        ("model size", *(FORMATS["size"](result["model_size"][side(k)]) for k in order)),
        ("layers that run INT8", *(str(result["int8_layer_count"][side(k)]) for k in order)),
    ]
    return rows


def comparison_layer_rows(result: dict) -> list[tuple[str, ...]]:
    """(layer, type, A precision, A time, B precision, B time, Δ) of the paired runtime layers."""
    rows = []
    for p in pair_layers(result["layers"]["a"], result["layers"]["b"], ("a", "b"), ("A", "B")):
        main = p["b"] or p["a"]
        cell = lambda r: (r["runtimePrecision"], FORMATS["us"](r["time_us"])) if r else ("—", "—")  # noqa: E731
        rows.append((main["name"], main["type"], *cell(p["a"]), *cell(p["b"]), FORMATS["dus"](p["delta"])))
    return rows


def _comparison_view(result: dict) -> dict:
    summary = result["layer_summary"]
    by_type = {s: summary[s]["time_us_by_type"] for s in ("a", "b")}
    types = sorted(set(by_type["a"]) | set(by_type["b"]),
                   key=lambda t: -max(by_type["a"].get(t, 0.0), by_type["b"].get(t, 0.0)))
    labels = dict(result["labels"])
    labels.setdefault("a", "A")
    labels.setdefault("b", "B")
    return {
        "names": (result["models"]["a"]["name"], result["models"]["b"]["name"]),
        "labels": labels,
        "order": result["variants"],
        "cls": {k: COMPARISON_CLASSES.get(k, k) for k in result["variants"]},
        "pairs": pair_layers(result["layers"]["a"], result["layers"]["b"], ("a", "b"), ("A", "B")),
        "layer_types": [{"type": t, "a": by_type["a"].get(t, 0.0), "b": by_type["b"].get(t, 0.0)} for t in types],
        "precisions": {s: summary[s]["layers_by_precision"] for s in ("a", "b")},
    }


def render_html(result: Result | dict) -> str:
    """The whole report as one HTML document (CSS, script and SVG charts inline, no network).

    A calibration result renders as the FP32 → INT8 report; a two-model comparison
    (`calibration.comparison.compare_models`) as the same page with neutral labels A and B."""
    if is_comparison(result):
        return _environment().get_template("compare.html.j2").render(r=result, v=_comparison_view(result))
    r = Result.of(result)
    return _environment().get_template("report.html.j2").render(r=r, v=_view(r))


def write_html(result: Result | dict, path: str | os.PathLike) -> Path:
    """Writes the report under a temporary name beside `path`, then renames it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(render_html(result), encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def main(argv: list[str] | None = None) -> int:
    """`python -m int8wb.calibration.report RESULT.json [REPORT.html]`: re-renders a saved result."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m int8wb.calibration.report", description=main.__doc__)
    parser.add_argument("result", type=Path)
    parser.add_argument("html", type=Path, nargs="?")
    args = parser.parse_args(argv)
    out = args.html or args.result.with_name(args.result.name.removesuffix(".json") + ".report.html")
    print(write_html(json.loads(args.result.read_text(encoding="utf-8")), out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
