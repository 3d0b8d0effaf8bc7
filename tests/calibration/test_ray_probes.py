"""AccuracyAware on a Ray cluster: its ranking probes fan out as Ray tasks, and the answer is the
local run's (skipped without ray; one local cluster of 2 CPUs per test process, conftest `ray_cluster`)."""
from __future__ import annotations

import json
from pathlib import Path

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
    same = lambda r: ([(p["groups"], p["accuracy"]) for p in r["accuracy_aware"]["probes"]],  # noqa: E731
                      [(f["name"], f["rank"], f["score"]) for f in r["fp32_layers"]], r["int8"]["accuracy"])
    assert same(got) == same(want)
    assert Path(got["output"]["weights"]).read_bytes() == Path(want["output"]["weights"]).read_bytes()
