"""pytest plugin: INT8 accuracy-drop budgets as tests.

- With `--int8` (or `int8_collect = true` in the ini file) every `*.calibration.toml` (glob: ini
  `int8_spec_glob`) becomes one test item named after the spec. It calibrates (or reuses a cached
  result) and checks the spec's `[gate]`: drop ≤ `max_drop` (on the held-out `[evaluation]` set
  when the spec has one), optional `min_speedup` against `speedup_baseline`, optional
  `max_model_size`.
- The `int8_calibrate` fixture returns the result dict for custom assertions (cached the same
  way); `int8_calibrate.check(result, **budget)` or `assert_budget(result, **budget)` assert a
  budget; `@pytest.mark.int8_budget(...)` sets budgets for a test using the fixture (every result
  it obtained is checked when the test body has passed).
- Results are cached under `<rootdir>/.int8wb/cache/` (see `editor_client.result_cache`);
  `--int8-rerun` recalibrates. Figures go to junit-xml as properties and to a terminal summary.

Loaded by the `pytest11` entry point `int8wb`, or explicitly with `-p editor_client.pytest_plugin`.
Heavy modules (openvino, nncf) are imported only when a calibration actually runs.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import inspect
import io
import json
import math
import os
import re
import sys
import time
import tomllib
import uuid
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest

from .result_cache import Outcome, ResultCache

SPEC_SUFFIX = ".calibration.toml"
BUDGET_KEYS = ("max_drop", "min_speedup", "speedup_baseline", "max_model_size")
DEFAULT_MAX_DROP = 0.01

_STATE = pytest.StashKey["_State"]()
_ROWS = pytest.StashKey[dict]()          # per item: summary rows by result id
_CALIBRATOR = pytest.StashKey["Int8Calibrate"]()


# --------------------------------------------------------------------------- options and state

def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("int8", "int8-workbench INT8 gates")
    group.addoption("--int8", action="store_true", dest="int8_collect",
                    help="collect *.calibration.toml files as INT8 gate tests (ini: int8_collect)")
    group.addoption("--int8-rerun", action="store_true", dest="int8_rerun",
                    help="recalibrate even when a cached result matches (once per key and session)")
    parser.addini("int8_collect", type="bool", default=False,
                  help="collect calibration specs as INT8 gate tests without --int8")
    parser.addini("int8_spec_glob", type="args", default=["*" + SPEC_SUFFIX],
                  help="glob(s) of spec files to collect, matched against the file name or its "
                       "path relative to rootdir (default: *.calibration.toml)")
    parser.addini("int8_cache_dir", default=".int8wb/cache",
                  help="where calibration results are cached, relative to rootdir")


class _HookSpecs:
    """Hooks this plugin calls; implement them in a conftest.py or a plugin."""

    @pytest.hookspec
    def pytest_int8_calibrated(self, config: pytest.Config, spec, result: dict, seconds: float) -> None:
        """Called after each real calibration (not for cached results), in the process that ran it."""


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(_HookSpecs)


class _State:
    def __init__(self, config: pytest.Config):
        self.config = config
        self.collect = bool(config.getoption("int8_collect") or config.getini("int8_collect"))
        self.globs = config.getini("int8_spec_glob") or ["*" + SPEC_SUFFIX]
        self.rerun = bool(config.getoption("int8_rerun"))
        worker = getattr(config, "workerinput", None)
        self.session = (worker or {}).get("int8_session") or uuid.uuid4().hex
        self.cache_dir = config.rootpath / config.getini("int8_cache_dir")
        self._cache: ResultCache | None = None
        self.rows: list[dict] = []

    @property
    def cache(self) -> ResultCache:
        if self._cache is None:
            self._cache = ResultCache(self.cache_dir, session=self.session)
        return self._cache

    def obtain(self, spec, rerun: bool | None = None) -> Outcome:
        force = self.rerun if rerun is None else rerun
        return self.cache.obtain(spec, lambda: self._calibrate(spec), force=force)

    def _calibrate(self, spec) -> dict:
        t0 = time.perf_counter()
        result = _calibrate_quietly(spec)
        self.config.hook.pytest_int8_calibrated(config=self.config, spec=spec, result=result,
                                                seconds=time.perf_counter() - t0)
        return result


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "int8_budget(max_drop=None, min_speedup=None, speedup_baseline=None, max_model_size=None): "
                   "budgets checked against every result the int8_calibrate fixture returned in this test")
    state = config.stash[_STATE] = _State(config)
    config.pluginmanager.register(_Reporter(state), "int8wb-reporter")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """pytest-xdist: workers share the controller's session id, so `--int8-rerun` recalibrates a
    spec once per run rather than once per worker."""
    node.workerinput["int8_session"] = node.config.stash[_STATE].session


def pytest_report_header(config: pytest.Config) -> str | None:
    state = config.stash[_STATE]
    if state.collect:
        return f"int8: collecting {' '.join(state.globs)}; cache {state.cache_dir}" + \
               ("; --int8-rerun" if state.rerun else "")
    return None


def _calibrate_quietly(spec) -> dict:
    """The engine's calibrate, with no progress and nothing on stdout/stderr."""
    from int8wb.calibration import workflow  # openvino and nncf load here, only when calibrating

    # Running pytest already runs the project's Python code, so a custom metric is trusted here.
    params = inspect.signature(workflow.calibrate).parameters
    extra = {name: True for name in ("trust_custom_metrics", "trusted") if name in params}
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        return workflow.calibrate(spec, progress=None, cancel=None, **extra)


# --------------------------------------------------------------------------- budgets

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
            "higher_is_better": spec.accuracy.higher_is_better,
            "source": {"max_drop": source, "min_speedup": "[gate] min_speedup",
                       "max_model_size": "[gate] max_model_size"}}


def _validated(overrides: dict, where: str) -> dict:
    unknown = set(overrides) - set(BUDGET_KEYS)
    if unknown:
        raise TypeError(f"{where}: unknown budget {', '.join(sorted(unknown))}; allowed: {', '.join(BUDGET_KEYS)}")
    out = {}
    for key, value in overrides.items():
        if key == "speedup_baseline":
            if value not in ("f32", "default"):
                raise ValueError(f'{where}: speedup_baseline must be "f32" or "default", got {value!r}')
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
        "speedup_baseline": "default", "max_model_size": None, "higher_is_better": True,
        "source": {"max_drop": "default"}}
    for key, value in _validated(overrides, source).items():
        budget[key] = value
        budget.setdefault("source", {})[key] = source
        if key == "max_drop":
            if value is None:
                budget["max_drop"], budget["source"]["max_drop"] = DEFAULT_MAX_DROP, "default"
            budget["max_drop_relative"] = False
    return budget


# --------------------------------------------------------------------------- verdicts

_BASELINES = {"f32": ("fp32_f32", "vs_f32", "FP32 strict f32"),
              "default": ("fp32_default", "vs_default", "FP32 device default")}


@dataclasses.dataclass
class Verdict:
    """A result checked against a budget: the failures, a table, and the figures."""
    label: str
    result: dict
    budget: dict
    failures: list[str]
    rows: list[tuple[str, ...]]
    figures: dict

    @property
    def ok(self) -> bool:
        return not self.failures

    def render(self) -> str:
        head = (f"INT8 budget exceeded: {self.label}" if self.failures else f"INT8 budget met: {self.label}")
        lines = [head] + [f"  - {f}" for f in self.failures] + [""]
        widths = [max(len(r[i]) for r in self.rows) for i in range(len(self.rows[0]))]
        for n, row in enumerate(self.rows):
            lines.append("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                          for i, (c, w) in enumerate(zip(row, widths))).rstrip())
            if n == 0:
                lines.append("  " + "  ".join("-" * w for w in widths))
        out = self.result.get("output", {})
        lines.append("")
        lines.append(f"  INT8 model: {out.get('model', '?')}")
        lines.append(f"  result:     {out.get('result', '?')}")
        report = out.get("report") or _sibling_report(out.get("result"))
        if report:
            lines.append(f"  report:     {report}")
        lines += [f"  note: {n}" for n in self.result.get("notes", [])]
        cache = self.result.get("cache")
        if cache:
            where = f" ({cache['entry']})" if cache.get("hit") and cache.get("entry") else ""
            lines.append(f"  source: {cache['source']}{where}"
                         + ("; run with --int8-rerun to recalibrate" if cache.get("hit") else ""))
        return "\n".join(lines)

    def properties(self, prefix: str = "int8.") -> list[tuple[str, Any]]:
        return [(prefix + k, v) for k, v in self.figures.items()]

    def summary_row(self, status: str | None = None) -> dict:
        return {**self.figures, "label": self.label,
                "status": status or ("passed" if self.ok else "FAILED")}


def _sibling_report(result_path: str | None) -> str | None:
    """The HTML report beside the result (`model.int8.json` → `model.int8.report.html`), if written."""
    if not result_path:
        return None
    report = Path(result_path).with_suffix(".report.html")
    return str(report) if report.is_file() else None


def _num(x: float, digits: int = 4) -> str:
    return f"{x:.{digits}f}"


def figures_of(result: dict) -> dict:
    """The result's figures the gate talks about (junit properties and summary columns)."""
    held = result.get("heldout")
    measured = held if held else {"fp32": result["fp32"]["accuracy"], "int8": result["int8"]["accuracy"],
                                  "drop": result["drop"]}
    figures = {
        "spec": result.get("spec"),
        "metric": result.get("metric"),
        "drop_on": "held-out" if held else "validation",
        "fp32_accuracy": measured["fp32"], "int8_accuracy": measured["int8"], "drop": measured["drop"],
        "validation_drop": result["drop"],
        "speedup_vs_f32": round(result["speedup"]["vs_f32"], 4),
        "speedup_vs_default": round(result["speedup"]["vs_default"], 4),
        "throughput_fp32_f32": result["throughput"].get("fp32_f32"),
        "throughput_fp32_default": result["throughput"].get("fp32_default"),
        "throughput_int8": result["throughput"].get("int8"),
        "model_size_fp32": result["model_size"]["fp32"], "model_size_int8": result["model_size"]["int8"],
        "int8_model": result.get("output", {}).get("model"),
        "result": result.get("output", {}).get("result"),
    }
    cache = result.get("cache")
    if cache:
        figures["cached"] = cache.get("hit")
        figures["source"] = cache.get("source")
    return figures


def _worse(fp32: float, int8: float, higher_is_better: bool) -> float:
    return fp32 - int8 if higher_is_better else int8 - fp32


def evaluate(result: dict, budget: dict, label: str = "") -> Verdict:
    """Checks `result` against `budget` (see `spec_budget`/`merge_budget`)."""
    figures = figures_of(result)
    metric = result.get("metric", "accuracy")
    held = result.get("heldout")
    src = budget.get("source", {})
    failures: list[str] = []
    rows = [("check", "FP32", "INT8", "value", "budget", "")]

    max_drop = budget["max_drop"]
    if budget.get("max_drop_relative"):
        max_drop = max_drop * abs(figures["fp32_accuracy"])
    # The drop is recomputed from the two accuracies in the metric's direction (positive: INT8 is
    # worse), so a lower-is-better metric is gated the right way whatever sign `drop` has.
    higher = result.get("metric_higher_is_better", budget.get("higher_is_better", True))
    loss = _worse(figures["fp32_accuracy"], figures["int8_accuracy"], higher)
    drop_ok = loss <= max_drop + 1e-12
    on_size = held["size"] if held else result.get("accuracy_on", {}).get("size", "?")
    on_name = "held-out" if held else result.get("accuracy_on", {}).get("role", "validation")
    budget_text = f"<= {_num(max_drop)}" + (" (relative)" if budget.get("max_drop_relative") else "")
    rows.append((f"{metric} drop, {on_name} ({on_size})", _num(figures["fp32_accuracy"]),
                 _num(figures["int8_accuracy"]), _num(loss), budget_text, "ok" if drop_ok else "FAIL"))
    if held:
        rows.append((f"{metric} drop, validation ({result.get('accuracy_on', {}).get('size', '?')})",
                     _num(result["fp32"]["accuracy"]), _num(result["int8"]["accuracy"]),
                     _num(_worse(result["fp32"]["accuracy"], result["int8"]["accuracy"], higher)), "not gated", ""))
    if not drop_ok:
        where = f"the held-out set ({on_size} samples)" if held else f"{on_name} ({on_size} samples)"
        failures.append(f"{metric} drop {_num(loss)} on {where} exceeds max_drop {_num(max_drop)} "
                        f"({src.get('max_drop', 'default')})")

    gated = budget.get("speedup_baseline") or "default"
    for name in (gated, "f32" if gated == "default" else "default"):
        variant, key, title = _BASELINES[name]
        value = result["speedup"][key]
        fp32_tp = result["throughput"].get(variant, float("nan"))
        int8_tp = result["throughput"].get("int8", float("nan"))
        if name == gated and budget.get("min_speedup") is not None:
            ok = value >= budget["min_speedup"]
            status, budget_text = ("ok" if ok else "FAIL"), f">= {budget['min_speedup']:g}x"
            if not ok:
                device = result.get("device", "the device")
                how = ("in strict f32" if name == "f32" else
                       f"as {device} runs it by default ({result.get('device_default_precision', '?')})")
                failures.append(f"speedup {value:.2f}x vs the FP32 model {how} is below min_speedup "
                                f"{budget['min_speedup']:g}x ({src.get('min_speedup', '')})".replace(" ()", ""))
        else:
            status, budget_text = "", "-"
        rows.append((f"speedup vs {title}", f"{fp32_tp:,.1f}/s", f"{int8_tp:,.1f}/s", f"{value:.2f}x",
                     budget_text, status))

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
    return Verdict(label or str(result.get("spec", "")), result, budget, failures, rows, figures)


def annotated(outcome: Outcome, spec) -> dict:
    """A copy of the engine's result with the spec's budget (`gate`) and where it came from (`cache`)."""
    result = copy.deepcopy(outcome.result)
    result["gate"] = spec_budget(spec)
    result["cache"] = {"hit": outcome.cached, "key": outcome.key,
                       "entry": str(outcome.entry_path) if outcome.entry_path else None,
                       "created": outcome.created, "seconds": round(outcome.seconds, 3),
                       "why": outcome.why, "source": outcome.describe()}
    return result


class Int8BudgetFailure(AssertionError):
    """A result exceeded its budget; the message is the whole verdict."""

    def __init__(self, verdict: Verdict):
        self.verdict = verdict
        super().__init__(verdict.render())


def assert_budget(result: dict, **budget) -> Verdict:
    """Asserts `result` against a budget: the spec's (`result["gate"]`, present on results from the
    gate or the fixture), else the defaults, with `budget` (max_drop, min_speedup,
    speedup_baseline, max_model_size) on top. Raises Int8BudgetFailure; returns the verdict."""
    __tracebackhide__ = True
    verdict = evaluate(result, merge_budget(result.get("gate"), budget, "assert_budget()"))
    if not verdict.ok:
        raise Int8BudgetFailure(verdict)
    return verdict


# --------------------------------------------------------------------------- spec problems

def _relative(path: str | None, base: Path) -> str | None:
    if not path:
        return path
    with contextlib.suppress(ValueError):
        return str(Path(path).relative_to(base))
    return path


def format_problems(exc, base: Path, generated: str | None = None) -> str:
    problems = [dataclasses.replace(p, path=_relative(p.path, base)) for p in exc.problems]
    n = len(problems)
    lines = [f"INT8 gate cannot run: {n} problem{'s' if n != 1 else ''} in the spec or its inputs"]
    lines += [f"  {p.severity}: {p}" for p in problems]
    if generated:
        lines += ["", "  (the spec was generated by int8_calibrate; line numbers refer to this text:)"]
        lines += [f"  {i:3d} | {line}" for i, line in enumerate(generated.splitlines(), start=1)]
    return "\n".join(lines)


def _is_calibration_error(exc: BaseException) -> bool:
    problems = sys.modules.get("int8wb.calibration.problems")
    return problems is not None and isinstance(exc, problems.CalibrationError)


# --------------------------------------------------------------------------- collection

def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    state = parent.config.stash[_STATE]
    if not state.collect:
        return None
    try:
        rel = file_path.relative_to(parent.config.rootpath).as_posix()
    except ValueError:
        rel = file_path.as_posix()
    if any(fnmatchcase(file_path.name, g) or fnmatchcase(rel, g) for g in state.globs):
        return Int8SpecFile.from_parent(parent, path=file_path)
    return None


class Int8SpecFile(pytest.File):
    def collect(self):
        name = self.path.name
        for suffix in (SPEC_SUFFIX, ".toml"):
            if name.endswith(suffix) and len(name) > len(suffix):
                name = name[: -len(suffix)]
                break
        yield Int8GateItem.from_parent(self, name=name)


class Int8GateItem(pytest.Item):
    """One spec's budget: calibrate (or reuse), then check its [gate]."""

    # No fixtures here; but pytest-lsp 1.0's pytest_runtest_call wrapper returns without
    # yielding (an error) for items that lack `funcargs`, so every non-Python item needs one.
    funcargs: dict = {}

    def runtest(self) -> None:
        from int8wb.calibration import load_spec

        state = self.config.stash[_STATE]
        rows = self.stash.setdefault(_ROWS, {})
        label = self.nodeid
        try:
            spec = load_spec(self.path)
            outcome = state.obtain(spec)
        except Exception as exc:
            if _is_calibration_error(exc):
                base = self.config.invocation_params.dir
                first = str(dataclasses.replace(exc.problems[0], path=_relative(exc.problems[0].path, base))) \
                    if exc.problems else str(exc)
                rows[0] = {"label": label, "status": "error", "source": first}
            raise
        result = annotated(outcome, spec)
        verdict = evaluate(result, result["gate"], label=label)
        self.user_properties.extend(verdict.properties())
        rows[0] = verdict.summary_row()
        if not verdict.ok:
            raise Int8BudgetFailure(verdict)

    def repr_failure(self, excinfo, style=None):
        exc = excinfo.value
        if isinstance(exc, Int8BudgetFailure):
            return str(exc)
        if _is_calibration_error(exc):
            return format_problems(exc, self.config.invocation_params.dir)
        if type(exc).__name__ == "Cancelled":
            return "calibration cancelled; nothing was written"
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, None, f"int8 gate {self.name}"


# --------------------------------------------------------------------------- the fixture

def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (str, os.PathLike)):
        return json.dumps(os.fspath(value))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"int8_calibrate: cannot write {value!r} into a spec")


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def to_toml(data: dict) -> str:
    """A spec dict as TOML text (top-level keys and one level of tables, as specs have)."""
    lines = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for key, table in data.items():
        if isinstance(table, dict):
            lines += ["", f"[{_toml_key(key)}]"]
            for k, v in table.items():
                if isinstance(v, dict):
                    raise TypeError(f"int8_calibrate: [{key}] {k} cannot be a table")
                lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
    return "\n".join(lines) + "\n"


def _merge(base: dict, overrides: dict) -> dict:
    """Tables merge key by key; None removes a key or table."""
    out = dict(base)
    for key, value in overrides.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {k: v for k, v in {**out[key], **value}.items() if v is not None}
        else:
            out[key] = value
    return out


class Int8Calibrate:
    """The `int8_calibrate` fixture: `int8_calibrate(spec, **overrides)` → the result dict.

    `spec` is a spec path (relative paths: from the test file's folder, else from rootdir) or a
    dict of spec tables; keyword arguments override tables of the file (`inference={"duration":
    0.3}`; None removes a key or table) or, without a path, are the spec itself, whose relative
    paths start at `base_dir` (default: the test file's folder). `rerun=True` recalibrates.
    Results carry `result["gate"]` (the spec's budget) and `result["cache"]`.
    """

    def __init__(self, request: pytest.FixtureRequest):
        self.request = request
        self.state: _State = request.config.stash[_STATE]
        self.results: list[dict] = []
        self.checked: set[int] = set()
        marker = request.node.get_closest_marker("int8_budget")
        self.marker_budget: dict | None = None
        if marker is not None:
            if marker.args:
                pytest.fail("@pytest.mark.int8_budget takes keyword arguments only "
                            f"({', '.join(BUDGET_KEYS)})", pytrace=False)
            try:
                self.marker_budget = _validated(dict(marker.kwargs), "@pytest.mark.int8_budget")
            except (TypeError, ValueError) as exc:
                pytest.fail(str(exc), pytrace=False)

    def _spec(self, spec, base_dir, fields):
        from int8wb.calibration import load_spec

        here = self.request.path.parent
        base = here / base_dir if base_dir is not None else here  # an absolute base_dir stays as it is
        if isinstance(spec, dict):
            fields, spec = {**spec, **fields}, None
        if spec is not None:
            path = Path(spec)
            if not path.is_absolute():
                path = base / path if (base / path).exists() or base_dir is not None \
                    else self.request.config.rootpath / path
            if not fields:
                return load_spec(path), None
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError):
                return load_spec(path), None  # raises the located error
            text = to_toml(_merge(data, fields))
            return load_spec(path, text=text), text
        if not fields:
            raise TypeError("int8_calibrate needs a spec path, a dict, or the spec's keys as arguments")
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.request.node.name)
        text = to_toml(_merge({}, fields))
        return load_spec(base / f"{name}{SPEC_SUFFIX}", text=text), text

    def __call__(self, spec: str | os.PathLike | dict | None = None, /, *, base_dir=None,
                 rerun: bool | None = None, **fields) -> dict:
        __tracebackhide__ = True
        text = None
        try:
            loaded, text = self._spec(spec, base_dir, fields)
            outcome = self.state.obtain(loaded, rerun=rerun)
        except Exception as exc:
            if _is_calibration_error(exc):
                exc.int8_generated = text
            raise
        result = annotated(outcome, loaded)
        self.results.append(result)
        n = len(self.results)
        verdict = evaluate(result, result["gate"], label=self._label(result))
        node = self.request.node
        node.user_properties.extend((k, v) for k, v in verdict.properties(self._prefix(n))
                                    if k.split(".")[-1] not in ("max_drop", "min_speedup", "speedup_baseline",
                                                                "max_model_size"))
        node.stash.setdefault(_ROWS, {})[id(result)] = verdict.summary_row(status="unchecked")
        return result

    def _label(self, result: dict) -> str:
        spec = Path(result.get("spec") or "spec").name
        return f"{self.request.node.nodeid} [{spec}]"

    @staticmethod
    def _prefix(n: int) -> str:
        return "int8." if n == 1 else f"int8.{n}."

    def budget(self, result: dict | None = None, **overrides) -> dict:
        """The budget `check` would apply: the result's spec, the marker, then `overrides`."""
        budget = merge_budget((result or {}).get("gate"), self.marker_budget or {}, "@pytest.mark.int8_budget")
        return merge_budget(budget, overrides, "check()") if overrides else budget

    def check(self, result: dict, **overrides) -> Verdict:
        """Asserts `result` against its spec's budget, the marker's and `overrides`."""
        __tracebackhide__ = True
        verdict = self._check(result, self.budget(result, **overrides))
        if not verdict.ok:
            raise Int8BudgetFailure(verdict)
        return verdict

    def _check(self, result: dict, budget: dict) -> Verdict:
        self.checked.add(id(result))
        verdict = evaluate(result, budget, label=self._label(result))
        n = next((i for i, r in enumerate(self.results, start=1) if r is result), len(self.results) + 1)
        prefix = self._prefix(n)
        self.request.node.user_properties.extend(
            (prefix + k, verdict.figures[k]) for k in ("max_drop", "min_speedup", "speedup_baseline",
                                                        "max_model_size"))
        self.request.node.user_properties.append((prefix + "status", "passed" if verdict.ok else "FAILED"))
        self.request.node.stash.setdefault(_ROWS, {})[id(result)] = verdict.summary_row()
        return verdict

    def check_marked(self) -> list[Verdict]:
        """The marker's budget on every result not already checked explicitly."""
        if self.marker_budget is None:
            return []
        return [self._check(r, self.budget(r)) for r in self.results if id(r) not in self.checked]


@pytest.fixture
def int8_calibrate(request: pytest.FixtureRequest) -> Int8Calibrate:
    """Calibrates (or reuses the cached result of) a spec and returns the result dict."""
    calibrator = Int8Calibrate(request)
    request.node.stash[_CALIBRATOR] = calibrator
    return calibrator


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    outcome = yield
    calibrator = item.stash.get(_CALIBRATOR, None)
    if calibrator is not None:
        failed = [v for v in calibrator.check_marked() if not v.ok]
        if failed:
            pytest.fail("\n\n".join(v.render() for v in failed), pytrace=False)
    return outcome


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if call.when == "call":
        rows = [dict(r) for r in item.stash.get(_ROWS, {}).values()]
        if not isinstance(item, Int8GateItem):  # a fixture's checked results: the test's outcome
            for row in rows:
                if row["status"] != "unchecked":
                    row["status"] = "passed" if report.passed else "FAILED"
        if rows:
            report.int8_gates = rows  # an extra report attribute travels to the xdist controller
    if call.excinfo is not None and not isinstance(item, Int8GateItem) \
            and item.stash.get(_CALIBRATOR, None) is not None and _is_calibration_error(call.excinfo.value):
        exc = call.excinfo.value
        entry = next((e for e in reversed(call.excinfo.traceback) if Path(str(e.path)) == item.path), None)
        where = f"\n  (raised by int8_calibrate at {_relative(str(item.path), item.config.invocation_params.dir)}" \
                f":{entry.lineno + 1})" if entry is not None else ""
        report.longrepr = format_problems(exc, item.config.invocation_params.dir,
                                          getattr(exc, "int8_generated", None)) + where
    return report


# --------------------------------------------------------------------------- reporting

class _Reporter:
    """Collects the gates' rows from reports (under xdist: the workers' reports, on the
    controller) and prints them as one table at the end."""

    def __init__(self, state: _State):
        self.state = state

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        rows = getattr(report, "int8_gates", None)
        if rows and report.when == "call":
            self.state.rows.extend(rows)

    def pytest_terminal_summary(self, terminalreporter, exitstatus, config: pytest.Config) -> None:
        if hasattr(config, "workerinput") or not self.state.rows:
            return
        table = [("gate", "drop", "max", "speedup", "min", "INT8 size", "status", "source")] + \
                [_summary_cells(r) for r in sorted(self.state.rows, key=lambda r: r["label"])]
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        terminalreporter.write_sep("=", "int8 gates")
        for n, row in enumerate(table):
            terminalreporter.write_line("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
            if n == 0:
                terminalreporter.write_line("  ".join("-" * w for w in widths))


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
