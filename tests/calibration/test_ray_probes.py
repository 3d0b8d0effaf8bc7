"""AccuracyAware on a Ray cluster: its ranking probes fan out as Ray tasks, and the answer is the
local run's (skipped without ray; one local cluster of 2 CPUs per test process, conftest `ray_cluster`)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import openvino as ov
from openvino import opset13 as ops

from int8wb.calibration.jobs import JobStore, Runner
from conftest import outlier_mlp
from test_accuracy_aware import write_spec


def aa_spec(folder: Path) -> Path:
    outlier_mlp(folder)
    write_spec(folder, "aa", 'method = "accuracy_aware"\nmax_drop = 0.005')
    return folder / "aa.calibration.toml"


def result_of(row: dict) -> dict:
    assert row["state"] == "done", row["error"]
    return json.loads(Path(row["summary"]["output"]["result"]).read_text())


def same(result: dict) -> tuple:
    """What the search found and measured: equal, the two runs gave one answer."""
    return ([(p["groups"], p["accuracy"]) for p in result["accuracy_aware"]["probes"]],
            [(f["name"], f["rank"], f["score"]) for f in result["fp32_layers"]], result["int8"]["accuracy"])


def test_ranking_probes_run_as_ray_tasks_with_the_local_answer(tmp_path, ray_cluster):
    on_ray, here = aa_spec(tmp_path / "ray"), aa_spec(tmp_path / "local")
    from int8wb.calibration.jobs.ray_backend import RayBackend

    runner = Runner(JobStore(on_ray.parent), backend=RayBackend()).start()
    local = Runner(JobStore(here.parent)).start()
    try:
        ray_row = runner.wait(runner.submit(on_ray), 180)
        local_row = local.wait(local.submit(here), 180)
    finally:
        runner.stop()
        local.stop()
    got, want = result_of(ray_row), result_of(local_row)
    assert got["search"]["ranked_on"] == "ray" and want["search"]["ranked_on"] == "this process"
    assert got["search"]["ranked_groups"] == want["search"]["ranked_groups"] == 3  # it did rank
    assert same(got) == same(want)
    assert Path(got["output"]["weights"]).read_bytes() == Path(want["output"]["weights"]).read_bytes()


def test_starved_of_cpus_the_ranking_runs_in_the_job_and_gives_the_same_answer(tmp_path, ray_cluster):
    """The job holds both CPUs of the cluster: no probe task can start, the job's process takes them all."""
    from int8wb.calibration.jobs.ray_backend import RayBackend

    starved, here = aa_spec(tmp_path / "ray"), aa_spec(tmp_path / "local")
    runner = Runner(JobStore(starved.parent), backend=RayBackend(num_cpus=2)).start()
    local = Runner(JobStore(here.parent)).start()
    try:
        got, want = result_of(runner.wait(runner.submit(starved), 180)), result_of(local.wait(local.submit(here), 180))
    finally:
        runner.stop()
        local.stop()
    assert got["search"]["ranked_on"] == "ray" and got["search"]["probes_on_cluster"] == 0
    assert same(got) == same(want)


def two_layer_model(quantized: bool) -> ov.Model:
    rng = np.random.default_rng(3)
    w1, w2 = rng.normal(size=(8, 16)).astype(np.float32), rng.normal(size=(16, 4)).astype(np.float32)
    fq = lambda v, r, levels: ops.fake_quantize(v, -r, r, -r, r, levels) if quantized else v  # noqa: E731
    x = ops.parameter([1, 8], np.float32, name="x")
    first = ops.matmul(fq(x, 3.0, 16), fq(ops.constant(w1), 3.0, 255), False, False)
    first.set_friendly_name("first")
    second = ops.matmul(fq(ops.relu(first), 12.0, 256), fq(ops.constant(w2), 3.0, 255), False, False)
    second.set_friendly_name("second")
    return ov.Model([second], [x], "two")


class Samples:
    def __init__(self, n: int):
        self.x = np.random.default_rng(4).normal(size=(n, 1, 8)).astype(np.float32)

    def load(self, i: int) -> dict:
        return {"x": self.x[i]}


def test_probe_tasks_alone_measure_what_the_process_measures(ray_cluster):
    from int8wb.calibration.methods.accuracy_aware import revert
    from int8wb.calibration.methods.probes import OnRay
    from int8wb.calibration.methods.ranking import rank

    core, fp32, quantized = ov.Core(), two_layer_model(False), two_layer_model(True)
    args = (core, fp32, quantized, [["first"], ["second"]], revert, "CPU", {"INFERENCE_PRECISION_HINT": "f32"},
            Samples(6), list(range(6)))
    on_cluster = OnRay(ray_cluster, here=False)
    got, want = rank(*args, where=on_cluster), rank(*args)
    assert on_cluster.on_cluster == 3  # the all-INT8 model and one probe per group
    assert got == want and want[0] == (0, want[0][1]) and want[0][1] > 0.5  # the 16-level input matters most


def test_probes_two_at_a_time_measure_what_one_at_a_time_measures():
    from int8wb.calibration.methods.accuracy_aware import revert
    from int8wb.calibration.methods.ranking import InProcess, rank

    core, fp32, quantized = ov.Core(), two_layer_model(False), two_layer_model(True)
    groups = [["first"], ["second"], ["first", "second"]]
    args = (core, fp32, quantized, groups, revert, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}, Samples(6), list(range(6)))
    seen: list[float] = []
    assert rank(*args, progress=seen.append, where=InProcess(2)) == rank(*args, where=InProcess(1))
    assert seen[-1] == 1.0 and seen == sorted(seen)
