"""What a pytest run's INT8 gates share: the result cache, and where a calibration runs.

By default a gate calibrates in the pytest process (`workflow.calibrate`). With `--int8-ray ADDRESS`
(ini `int8_ray`) each calibration is a job on that Ray cluster, run by the runner and back end that
`int8wb calibrate --ray` uses (`calibration.jobs.as_job`); the gate then judges the result the
worker committed, which holds the same INT8 model and accuracy figures as a local run's. The
result cache sits in front either way: a cached result is not recalibrated anywhere. Nothing
imports ray unless the option is given.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from int8wb.calibration import CalibrationError, Problem, load_spec
from int8wb.calibration.spec import SPEC_SUFFIX

if TYPE_CHECKING:
    from int8wb.calibration.jobs.backend import Backend
    from int8wb.calibration.result_cache import Outcome, ResultCache

STATE = pytest.StashKey["GateState"]()
JOB_LABEL = "pytest --int8-ray"


def add_ray_options(group, parser: pytest.Parser) -> None:
    group.addoption("--int8-ray", metavar="ADDRESS", dest="int8_ray",
                    help="run the gates' calibrations as jobs on a Ray cluster: auto (the one this machine "
                         "joined), local (a new one here) or its address; the same paths on every node "
                         "(docs/scale.md); needs int8-workbench[ray] (ini: int8_ray)")
    group.addoption("--int8-ray-cpus", metavar="N", type=float, dest="int8_ray_cpus",
                    help="CPUs each calibration reserves on the cluster (default 1; ini: int8_ray_cpus)")
    parser.addini("int8_ray", default="", help="Ray cluster for the gates' calibrations (as --int8-ray)")
    parser.addini("int8_ray_cpus", default="1", help="CPUs each calibration reserves on the Ray cluster")


def ray_cpus(config: pytest.Config) -> float:
    """--int8-ray-cpus, else the ini's int8_ray_cpus; a value that is no positive number is a usage error."""
    given = config.getoption("int8_ray_cpus")
    where = "--int8-ray-cpus" if given is not None else f"{config.inipath or 'the ini file'}: int8_ray_cpus"
    text = given if given is not None else config.getini("int8_ray_cpus")
    try:
        cpus = float(text)
    except (TypeError, ValueError):
        cpus = float("nan")
    if not cpus > 0:
        raise pytest.UsageError(f"{where} = {text!r}: not a positive number of CPUs")
    return cpus


class GateState:
    """One per pytest process (each xdist worker has its own, sharing the controller's session id)."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.collect = bool(config.getoption("int8_collect") or config.getini("int8_collect"))
        self.globs = config.getini("int8_spec_glob") or ["*" + SPEC_SUFFIX]
        self.rerun = bool(config.getoption("int8_rerun"))
        self.ray = config.getoption("int8_ray") or config.getini("int8_ray").strip() or None
        self.ray_cpus = ray_cpus(config)
        worker = getattr(config, "workerinput", None)
        self.session = (worker or {}).get("int8_session") or uuid.uuid4().hex
        self.cache_dir = config.rootpath / config.getini("int8_cache_dir")
        self.rows: list[dict] = []

    @functools.cached_property
    def cache(self) -> ResultCache:
        from int8wb.calibration.result_cache import ResultCache  # numpy loads here, when a gate runs
        return ResultCache(self.cache_dir, session=self.session)

    @functools.cached_property
    def cluster(self) -> Backend:
        """The Ray back end, joined at the first calibration (CalibrationError when there is no cluster)."""
        from int8wb.calibration.jobs.ray_backend import join
        return join(self.ray, num_cpus=self.ray_cpus)

    def obtain(self, spec, rerun: bool | None = None, text: str | None = None) -> Outcome:
        """The cached result of `spec`, or a new calibration's. `text`: the spec's TOML when it
        exists only here (the fixture's overrides), not as the file at `spec.path`."""
        force = self.rerun if rerun is None else rerun
        return self.cache.obtain(spec, lambda: self._calibrate(spec, text), force=force)

    def _calibrate(self, spec, text: str | None) -> dict:
        t0 = time.perf_counter()
        result = on_cluster(spec, text, self.cluster) if self.ray else calibrate_quietly(spec)
        self.config.hook.pytest_int8_calibrated(config=self.config, spec=spec, result=result,
                                                seconds=time.perf_counter() - t0)
        return result

    def where(self) -> str:
        return f"calibrations on Ray ({self.ray}, {self.ray_cpus:g} CPU each)" if self.ray else "calibrations here"



def calibrate_quietly(spec) -> dict:
    """The engine's calibrate, with no progress and nothing on stdout/stderr."""
    from int8wb.calibration import workflow  # openvino and nncf load here, only when calibrating

    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        # Running pytest already runs the project's Python code, so a custom metric is trusted here.
        return workflow.calibrate(spec, progress=None, cancel=None, trust_custom_metrics=True)


def on_cluster(spec, text: str | None, cluster: Backend) -> dict:
    """A calibration as a job of the spec folder's store, its worker a Ray task; trusted as above."""
    from int8wb.calibration.jobs.as_job import calibrate_as_job

    quiet = lambda percent, phase: None  # noqa: E731
    if text is None:
        return calibrate_as_job(spec, cluster, True, quiet, None, label=JOB_LABEL)
    # A worker reads its spec from a file. This one exists only here: a hidden copy beside where it
    # would be, so its relative paths (model, data, output folder) resolve as they do in-process.
    job_spec = spec.path.with_name(f".{spec.path.name}.{uuid.uuid4().hex[:8]}.int8-ray")
    try:
        job_spec.write_text(text, encoding="utf-8")
        result = calibrate_as_job(load_spec(job_spec), cluster, True, quiet, None, label=JOB_LABEL)
    except CalibrationError as exc:  # its problems name the spec the test asked for
        raise CalibrationError([as_asked(p, job_spec, spec.path) for p in exc.problems]) from None
    finally:
        job_spec.unlink(missing_ok=True)
    return {**result, "spec": str(spec.path)}


def as_asked(problem: Problem, job_spec: Path, spec_path: Path) -> Problem:
    """A problem of the hidden job spec, said of the spec the test asked for. In-process an
    overridden spec replaces its file's own INT8 set; as a job it is another spec, and the engine
    refuses to replace another spec's set (`output-taken`): say why, and the way out."""
    if problem.path != str(job_spec):
        return problem
    if problem.rule == "output-taken":
        return dataclasses.replace(
            problem, path=str(spec_path),
            message=f"with --int8-ray a spec with overrides runs as a spec file of its own: {problem.message}",
            fix='give the overrides an output folder of their own, e.g. output={"dir": "calibrated/overridden"}')
    return dataclasses.replace(problem, path=str(spec_path))
