"""pytest plugin: INT8 accuracy-drop budgets as tests (pytest glue over `calibration.gate`).

- With `--int8` (or `int8_collect = true` in the ini file) every `*.calibration.toml` (glob: ini
  `int8_spec_glob`) becomes one test item named after the spec. It calibrates (or reuses a cached
  result) and checks the spec's `[gate]` on evidence (95 % intervals; see `calibration.gate`).
- The `int8_calibrate` fixture returns the result dict for custom assertions (cached the same
  way); `int8_calibrate.check(result, **budget)` or `assert_budget(result, **budget)` assert a
  budget; `@pytest.mark.int8_budget(...)` sets budgets for a test using the fixture.
- Results are cached under `<rootdir>/.int8wb/cache/`; `--int8-rerun` recalibrates. Figures go
  to junit-xml as properties and to a terminal summary.
- Calibrations run in this process, or with `--int8-ray ADDRESS` (ini `int8_ray`) as jobs on a Ray
  cluster, through the job runner `int8wb calibrate --ray` uses (`gate_state`).

Rooms: this module (options, hooks, collection, reporting), `gate_items` (the spec item, the
fixture's calibrator, `assert_budget`), `gate_state` (the cache; where a calibration runs).

Loaded by the `pytest11` entry point `int8wb`, or explicitly with `-p int8wb.editor_client.pytest_plugin`.
Heavy modules (openvino, nncf; numpy for the cache) are imported only when a gate actually runs.
"""
from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path

import pytest

from int8wb.calibration import CalibrationError
from int8wb.calibration.gate import cannot_run, relative_path, summary_lines
from int8wb.calibration.spec import SPEC_SUFFIX

from .gate_items import (CALIBRATOR, ROWS, Int8BudgetFailure, Int8Calibrate, Int8GateItem, Int8SpecFile,
                         annotated, assert_budget, enforce)
from .gate_state import STATE, GateState, add_ray_options

# What a conftest or a test may import from here, as before the items moved to gate_items.
__all__ = ["Int8BudgetFailure", "Int8Calibrate", "Int8GateItem", "Int8SpecFile", "annotated", "assert_budget",
           "enforce", "int8_calibrate"]


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
    add_ray_options(group, parser)


class _HookSpecs:
    """Hooks this plugin calls; implement them in a conftest.py or a plugin."""

    @pytest.hookspec
    def pytest_int8_calibrated(self, config: pytest.Config, spec, result: dict, seconds: float) -> None:
        """Called after each real calibration (not for cached results), in the pytest process that
        asked for it (with --int8-ray the calibration itself ran on the cluster)."""


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(_HookSpecs)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "int8_budget(max_drop=None, min_speedup=None, speedup_baseline=None, max_model_size=None): "
                   "budgets checked against every result the int8_calibrate fixture returned in this test")
    state = config.stash[STATE] = GateState(config)
    config.pluginmanager.register(_Reporter(state), "int8wb-reporter")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """pytest-xdist: workers share the controller's session id, so `--int8-rerun` recalibrates a
    spec once per run rather than once per worker."""
    node.workerinput["int8_session"] = node.config.stash[STATE].session


def pytest_report_header(config: pytest.Config) -> str | None:
    state = config.stash[STATE]
    if state.collect:
        return f"int8: collecting {' '.join(state.globs)}; cache {state.cache_dir}" + \
               ("; --int8-rerun" if state.rerun else "") + (f"; {state.where()}" if state.ray else "")
    return None


# --------------------------------------------------------------------------- collection

def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    state = parent.config.stash[STATE]
    if not state.collect:
        return None
    try:
        rel = file_path.relative_to(parent.config.rootpath).as_posix()
    except ValueError:
        rel = file_path.as_posix()
    if any(fnmatchcase(file_path.name, g) or fnmatchcase(rel, g) for g in state.globs):
        return Int8SpecFile.from_parent(parent, path=file_path)
    return None


# --------------------------------------------------------------------------- the fixture

@pytest.fixture
def int8_calibrate(request: pytest.FixtureRequest) -> Int8Calibrate:
    """Calibrates (or reuses the cached result of) a spec and returns the result dict."""
    calibrator = Int8Calibrate(request)
    request.node.stash[CALIBRATOR] = calibrator
    return calibrator


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    outcome = yield
    calibrator = item.stash.get(CALIBRATOR, None)
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
        rows = [dict(r) for r in item.stash.get(ROWS, {}).values()]
        if not isinstance(item, Int8GateItem):  # a fixture's checked results: the test's outcome
            for row in rows:
                if row["status"] != "unchecked":
                    row["status"] = "passed" if report.passed else "FAILED"
        if rows:
            report.int8_gates = rows  # an extra report attribute travels to the xdist controller
    if call.excinfo is not None and not isinstance(item, Int8GateItem) \
            and item.stash.get(CALIBRATOR, None) is not None and isinstance(call.excinfo.value, CalibrationError):
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

    def __init__(self, state: GateState):
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
