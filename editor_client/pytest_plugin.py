"""pytest plugin: INT8 accuracy-drop budgets as tests (pytest glue over `calibration.gate`).

- With `--int8` (or `int8_collect = true` in the ini file) every `*.calibration.toml` (glob: ini
  `int8_spec_glob`) becomes one test item named after the spec. It calibrates (or reuses a cached
  result) and checks the spec's `[gate]` on evidence (95 % intervals; see `calibration.gate`).
- The `int8_calibrate` fixture returns the result dict for custom assertions (cached the same
  way); `int8_calibrate.check(result, **budget)` or `assert_budget(result, **budget)` assert a
  budget; `@pytest.mark.int8_budget(...)` sets budgets for a test using the fixture.
- Results are cached under `<rootdir>/.int8wb/cache/`; `--int8-rerun` recalibrates. Figures go
  to junit-xml as properties and to a terminal summary.

Loaded by the `pytest11` entry point `int8wb`, or explicitly with `-p int8wb.editor_client.pytest_plugin`.
Heavy modules (openvino, nncf; numpy for the cache) are imported only when a gate actually runs.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import os
import re
import time
import tomllib
import uuid
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from int8wb.calibration import CalibrationError, load_spec
from int8wb.calibration.gate import (BUDGET_KEYS, Verdict, cannot_run, evaluate, merge_budget, relative_path,
                                     spec_budget, summary_lines, validated)
from int8wb.calibration.result import Result
from int8wb.calibration.spec import SPEC_SUFFIX
from int8wb.calibration.toml_writer import overlay, to_toml

if TYPE_CHECKING:
    from int8wb.calibration.result_cache import Outcome, ResultCache

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
        self.rows: list[dict] = []

    @functools.cached_property
    def cache(self) -> ResultCache:
        from int8wb.calibration.result_cache import ResultCache  # numpy loads here, when a gate runs
        return ResultCache(self.cache_dir, session=self.session)

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

    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        # Running pytest already runs the project's Python code, so a custom metric is trusted here.
        return workflow.calibrate(spec, progress=None, cancel=None, trust_custom_metrics=True)


# --------------------------------------------------------------------------- budgets as assertions

def annotated(outcome: Outcome, spec) -> Result:
    """A copy of the engine's result with the spec's budget (`gate`) and where it came from (`cache`)."""
    return outcome.result.model_copy(update={"gate": spec_budget(spec), "cache": outcome.info()})


def enforce(verdict: Verdict) -> None:
    """Fails an exceeded budget (or an undecided one unless its [gate] says skip); skips it otherwise."""
    if not verdict.ok or verdict.skipped:
        raise Int8BudgetFailure(verdict) if not verdict.ok else pytest.skip.Exception(verdict.render())


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
    verdict = evaluate(result, merge_budget(Result.of(result).gate, budget, "assert_budget()"))
    enforce(verdict)
    return verdict


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
        name = next((name[:-len(s)] for s in (SPEC_SUFFIX, ".toml") if name.endswith(s) and len(name) > len(s)), name)
        yield Int8GateItem.from_parent(self, name=name)


class Int8GateItem(pytest.Item):
    """One spec's budget: calibrate (or reuse), then check its [gate]."""

    # No fixtures here; but pytest-lsp 1.0's pytest_runtest_call wrapper returns without
    # yielding (an error) for items that lack `funcargs`, so every non-Python item needs one.
    funcargs: dict = {}

    def runtest(self) -> None:
        state = self.config.stash[_STATE]
        rows = self.stash.setdefault(_ROWS, {})
        label = self.nodeid
        try:
            spec = load_spec(self.path)
            outcome = state.obtain(spec)
        except CalibrationError as exc:
            base = self.config.invocation_params.dir
            first = str(dataclasses.replace(exc.problems[0], path=relative_path(exc.problems[0].path, base))) \
                if exc.problems else str(exc)
            rows[0] = {"label": label, "status": "error", "source": first}
            raise
        result = annotated(outcome, spec)
        verdict = evaluate(result, result.gate, label=label)
        self.user_properties.extend(verdict.properties())
        rows[0] = verdict.summary_row()
        enforce(verdict)

    def repr_failure(self, excinfo, style=None):
        exc = excinfo.value
        if isinstance(exc, Int8BudgetFailure):
            return str(exc)
        if isinstance(exc, CalibrationError):
            return cannot_run(exc.problems, self.config.invocation_params.dir)
        if type(exc).__name__ == "Cancelled":
            return "calibration cancelled; nothing was written"
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, None, f"int8 gate {self.name}"


# --------------------------------------------------------------------------- the fixture

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
                self.marker_budget = validated(dict(marker.kwargs), "@pytest.mark.int8_budget")
            except (TypeError, ValueError) as exc:
                pytest.fail(str(exc), pytrace=False)

    def _spec(self, spec, base_dir, fields):
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
            text = to_toml(overlay(data, fields))
            return load_spec(path, text=text), text
        if not fields:
            raise TypeError("int8_calibrate needs a spec path, a dict, or the spec's keys as arguments")
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.request.node.name)
        text = to_toml(overlay({}, fields))
        return load_spec(base / f"{name}{SPEC_SUFFIX}", text=text), text

    def __call__(self, spec: str | os.PathLike | dict | None = None, /, *, base_dir=None,
                 rerun: bool | None = None, **fields) -> dict:
        __tracebackhide__ = True
        text = None
        try:
            loaded, text = self._spec(spec, base_dir, fields)
            outcome = self.state.obtain(loaded, rerun=rerun)
        except CalibrationError as exc:
            exc.int8_generated = text
            raise
        typed = annotated(outcome, loaded)
        result = typed.to_json()
        self.results.append(result)
        verdict = evaluate(typed, typed.gate, label=self._label(typed))
        node = self.request.node
        node.user_properties.extend((k, v) for k, v in verdict.properties(self._prefix(len(self.results)))
                                    if k.split(".")[-1] not in BUDGET_KEYS)
        node.stash.setdefault(_ROWS, {})[id(result)] = verdict.summary_row(status="unchecked")
        return result

    def _label(self, result: Result | dict) -> str:
        spec = Path(Result.of(result).spec or "spec").name
        return f"{self.request.node.nodeid} [{spec}]"

    @staticmethod
    def _prefix(n: int) -> str:
        return "int8." if n == 1 else f"int8.{n}."

    def budget(self, result: dict | None = None, **overrides) -> dict:
        """The budget `check` would apply: the result's spec, the marker, then `overrides`."""
        budget = merge_budget(Result.of(result).gate if result else None, self.marker_budget or {},
                              "@pytest.mark.int8_budget")
        return merge_budget(budget, overrides, "check()") if overrides else budget

    def check(self, result: dict, **overrides) -> Verdict:
        """Asserts `result` against its spec's budget, the marker's and `overrides`."""
        __tracebackhide__ = True
        verdict = self._check(result, self.budget(result, **overrides))
        enforce(verdict)
        return verdict

    def _check(self, result: dict, budget: dict) -> Verdict:
        self.checked.add(id(result))
        verdict = evaluate(result, budget, label=self._label(result))
        n = next((i for i, r in enumerate(self.results, start=1) if r is result), len(self.results) + 1)
        prefix = self._prefix(n)
        self.request.node.user_properties.extend((prefix + k, verdict.figures[k]) for k in BUDGET_KEYS)
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
        unmet = [v for v in calibrator.check_marked() if not v.ok or v.skipped]
        if unmet:  # fails when one fails; skips when every unmet one is an undecided budget that says skip
            text = "\n\n".join(v.render() for v in unmet)
            pytest.fail(text, pytrace=False) if any(not v.ok for v in unmet) else pytest.skip(text)
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
            and item.stash.get(_CALIBRATOR, None) is not None and isinstance(call.excinfo.value, CalibrationError):
        exc, base = call.excinfo.value, item.config.invocation_params.dir
        entry = next((e for e in reversed(call.excinfo.traceback) if Path(str(e.path)) == item.path), None)
        where = f"\n  (raised by int8_calibrate at {relative_path(str(item.path), base)}" \
                f":{entry.lineno + 1})" if entry is not None else ""
        report.longrepr = cannot_run(exc.problems, base, getattr(exc, "int8_generated", None)) + where
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
        terminalreporter.write_sep("=", "int8 gates")
        for line in summary_lines(self.state.rows):
            terminalreporter.write_line(line)
