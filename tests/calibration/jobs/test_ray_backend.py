"""calibration.jobs.ray_backend: jobs of a runner on a local Ray cluster, started here (2 CPUs).

Skipped only when ray is not installed (`pip install 'int8-workbench[ray]'`; `make install` does).
One cluster serves every Ray test of a test process (conftest `ray_cluster`)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from int8wb.calibration.jobs import JobStore, Runner, alive
from int8wb.calibration.jobs.protocol import WORKER_MODULE
from conftest import copy_example, wait_until
from jobs_helpers import temporaries, visible


def ray_runner(store: JobStore, events: list | None = None, retries: int = 1, jobs: int = 3) -> Runner:
    from int8wb.calibration.jobs.ray_backend import RayBackend

    return Runner(store, max_concurrent=jobs, backend=RayBackend(retries=retries),
                  on_change=events.append if events is not None else None).start()


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as fh:
        return int(fh.read().rsplit(b")", 1)[1].split()[1])


def outputs(spec: Path) -> list[str]:
    return [n for n in visible(spec.parent / "calibrated") if n.startswith("model.int8")]


def test_nothing_imports_ray_unless_asked():
    code = ("import sys, int8wb.calibration.jobs, int8wb.calibration.jobs.ray_backend, int8wb.editor_client.cli, "
            "int8wb.calibration.jobs.as_job, int8wb.editor_client.pytest_plugin, int8wb.editor_client.gate_state, "
            "int8wb.calibration.dropfolder, int8wb.daemon.server; sys.exit('ray' in sys.modules)")
    assert subprocess.run([sys.executable, "-I", "-c", code]).returncode == 0


def test_a_batch_on_ray_matches_the_local_runner(tmp_path, ray_cluster):
    """Two jobs on Ray at once (one CPU each) and the same spec on the local runner."""
    specs = [copy_example(tmp_path / name) for name in ("a", "b")]
    local_spec = copy_example(tmp_path / "local")
    store, local_store = JobStore(tmp_path), JobStore(tmp_path / "local")
    events: list[dict] = []
    runner, local = ray_runner(store, events), Runner(local_store).start()
    try:
        local_id = local.submit(local_spec)
        ids = [runner.submit(spec) for spec in specs]
        rows = [runner.wait(i, 120) for i in ids]
        local_row = local.wait(local_id, 120)
    finally:
        runner.stop()
        local.stop()
    assert local_row["state"] == "done", local_row["error"]
    assert [r["state"] for r in rows] == ["done"] * 2, [r["error"] for r in rows]
    deterministic = lambda s: (s["accuracy"], s["drop"], s["metric"], s["int8_layer_count"])  # noqa: E731
    for spec, row in zip(specs, rows):
        s = row["summary"]
        assert deterministic(s) == deterministic(local_row["summary"])
        assert Path(s["output"]["model"]).parent == spec.parent / "calibrated"
        assert Path(s["output"]["model"]).with_suffix(".bin").read_bytes() == \
            Path(local_row["summary"]["output"]["model"]).with_suffix(".bin").read_bytes()
        assert s["speedup_vs_default"] > 0 and Path(s["report"]).is_file()
        assert not temporaries(spec.parent / "calibrated")
    for job_id in ids:  # progress came back through Ray, in order, into the same store
        seen = [(e["percent"], e["phase"]) for e in events if e["id"] == job_id and e["state"] == "running"]
        assert seen[0] == (0, "waiting for the cluster") and (0, "starting") in seen
        assert {"calibrating", "speed (interleaved rounds)"} <= {phase for _, phase in seen}
        percents = [p for p, _ in seen]
        assert percents == sorted(percents)
    # the worker ran on this machine: its pid is on record, and the log has its stderr
    assert all(r["pid"] > 0 for r in rows)
    assert all((store.path.parent / "logs" / f"{i}.log").is_file() for i in ids)


def test_a_dead_ray_worker_is_retried_then_the_job_fails_with_the_reason(tmp_path, ray_cluster):
    spec = copy_example(tmp_path)
    store = JobStore(tmp_path)
    events: list[dict] = []
    runner = ray_runner(store, events, retries=1)
    killed = []
    try:
        job_id = runner.submit(spec)
        for _ in range(2):  # the first try, then its one retry
            pid = wait_until(lambda: (j := store.get(job_id))["pid"] not in (None, *killed) and j["pid"], 60,
                             "a worker")
            os.kill(parent_of(pid), signal.SIGKILL)  # the Ray process that runs the task: as if its node died
            killed.append(pid)
        final = runner.wait(job_id, 60)
    finally:
        runner.stop()
    assert final["state"] == "failed"
    assert "the Ray worker running it died (WorkerCrashedError" in final["error"]
    assert final["error"].endswith("attempt 2 of 2; nothing was written")
    assert any(e["phase"] == "retrying: the Ray worker died" for e in events)
    for pid in killed:  # each worker died with its Ray process
        wait_until(lambda: not alive(pid, WORKER_MODULE), 5, f"worker {pid} gone")
    assert not outputs(spec) and not temporaries(spec.parent / "calibrated")


def test_a_worker_that_dies_itself_fails_its_job_as_on_a_local_runner(tmp_path, ray_cluster):
    """Not a Ray failure (the OOM killer took the worker): no retry, the exit status is the reason."""
    spec = copy_example(tmp_path)
    store = JobStore(tmp_path)
    runner = ray_runner(store, retries=1)
    try:
        job_id = runner.submit(spec)
        pid = wait_until(lambda: store.get(job_id)["pid"], 60, "a worker")
        os.kill(pid, signal.SIGKILL)
        final = runner.wait(job_id, 30)
    finally:
        runner.stop()
    assert final["state"] == "failed" and final["pid"] == pid
    assert final["error"] == "the worker was killed by SIGKILL (out of memory?); nothing was written"


def test_cancel_on_ray_stops_the_worker_and_leaves_no_output(tmp_path, ray_cluster):
    spec = copy_example(tmp_path)
    store = JobStore(tmp_path)
    runner = ray_runner(store)
    try:
        job_id = runner.submit(spec)
        # past "saving": the engine has staged its temporaries in the output folder
        running = wait_until(lambda: (j := store.get(job_id))["percent"] >= 52 and j, 90, "job in progress")
        assert runner.cancel(job_id)
        final = runner.wait(job_id, 10)
    finally:
        runner.stop()
    assert final["state"] == "cancelled"
    assert final["error"] == "cancelled; the worker was stopped and nothing was written"
    assert not alive(running["pid"], WORKER_MODULE)
    assert not outputs(spec) and not temporaries(spec.parent / "calibrated")


def test_int8wb_calibrate_on_ray_is_a_job_of_the_spec_folder(tmp_path, ray_cluster, capsys):
    from int8wb.editor_client.cli import main

    spec = copy_example(tmp_path)
    assert main(["calibrate", str(spec), "--ray", "auto", "--json", "-q"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["fp32"]["accuracy"] > 0.9 and Path(result["output"]["model"]).is_file()
    rows = JobStore(spec.parent, create=False).list()
    assert [(r["state"], r["summary"]["accuracy"]["int8"]) for r in rows] == [("done", result["int8"]["accuracy"])]


def test_sigterm_to_int8wb_calibrate_on_ray_cancels_its_job(tmp_path, ray_cluster):
    """ray.init installs a SIGTERM handler that exits at once; the command line's own must win, so
    the job is cancelled on the cluster and the exit status says so."""
    spec = copy_example(tmp_path)
    address = ray_cluster.get_runtime_context().gcs_address
    proc = subprocess.Popen([sys.executable, "-I", "-m", "int8wb.editor_client.cli", "calibrate", str(spec),
                             "--ray", address, "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        store_file = spec.parent / ".int8wb" / "jobs.sqlite"
        job = wait_until(lambda: store_file.exists() and (rows := JobStore(spec.parent, create=False).list())
                         and rows[0]["percent"] >= 10 and rows[0], 60, "the job under way")
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "cancelled; nothing was written" in stderr, stderr
    final = JobStore(spec.parent, create=False).get(job["id"])
    assert final["state"] == "cancelled" and not alive(job["pid"], WORKER_MODULE)
    assert not outputs(spec)
