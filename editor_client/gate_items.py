"""The INT8 gate's tests: a spec file's gate item, the `int8_calibrate` fixture's calibrator, and
budgets as assertions (`assert_budget`). Hooks and options live in `pytest_plugin`; the cache and
where calibrations run, in `gate_state`; verdicts come from `calibration.gate`.
"""
from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from int8wb.calibration import CalibrationError, load_spec
from int8wb.calibration.gate import (BUDGET_KEYS, Verdict, cannot_run, evaluate, merge_budget, relative_path,
                                     spec_budget, validated)
from int8wb.calibration.result import Result
from int8wb.calibration.spec import SPEC_SUFFIX
from int8wb.calibration.toml_writer import overlay, to_toml

from .gate_state import STATE, GateState

if TYPE_CHECKING:
    from int8wb.calibration.result_cache import Outcome

ROWS = pytest.StashKey[dict]()                   # per item: summary rows by result id
CALIBRATOR = pytest.StashKey["Int8Calibrate"]()  # per test: its fixture's calibrator


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


# --------------------------------------------------------------------------- spec files as items

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
        state = self.config.stash[STATE]
        rows = self.stash.setdefault(ROWS, {})
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


# --------------------------------------------------------------------------- the fixture's calibrator

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
        self.state: GateState = request.config.stash[STATE]
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
            outcome = self.state.obtain(loaded, rerun=rerun, text=text)
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
        node.stash.setdefault(ROWS, {})[id(result)] = verdict.summary_row(status="unchecked")
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
        self.request.node.stash.setdefault(ROWS, {})[id(result)] = verdict.summary_row()
        return verdict

    def check_marked(self) -> list[Verdict]:
        """The marker's budget on every result not already checked explicitly."""
        if self.marker_budget is None:
            return []
        return [self._check(r, self.budget(r)) for r in self.results if id(r) not in self.checked]
