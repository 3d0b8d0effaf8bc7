"""An output set (model .xml, .bin, result .json, report .html) is committed as one unit.

Reproduces issue #15, point 9: the commit was four renames, and a worker killed between two of them
left a new `.bin` beside an old `.xml`, which loads and runs without error. The job row then said
"nothing was written". Now a worker is killed at every step of its commit, and the set on disk is
always wholly old or wholly new. The row says which: failed with nothing written, or done.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import pytest

from int8wb.calibration import commit
from int8wb.calibration.commit import Journal, Move, commit_set, ident, recover, resolve, temporary
from int8wb.calibration.jobs import JobStore, Runner
from conftest import copy_example

ROLES = {"model": "model.int8.xml", "weights": "model.int8.bin", "result": "model.int8.json",
         "report": "model.int8.report.html"}
# Each step of a commit is one rename: the journal (the commit point), then .bin, .json, .html, .xml.
STEPS = ["journal", "model.int8.bin", "model.int8.json", "model.int8.report.html", "model.int8.xml"]

FAKE_WORKER = r'''#!{python}
# A worker that stages a new set and commits it the engine's way, killed by SIGKILL at rename {kill_at}.
import json, os, signal, sys
from pathlib import Path
from int8wb.calibration.jobs.protocol import WORKER_MODULE, Failure, Progress, Result, encode, parse_request
from int8wb.calibration.output import Staging

request = parse_request(sys.argv[sys.argv.index(WORKER_MODULE) + 1:])
out, kill_at, tag = Path({out!r}), {kill_at}, {tag!r}
renames, real = [0], os.replace
def replace(src, dst):
    if renames[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    renames[0] += 1
    real(src, dst)
os.replace = replace
finals = {{role: out / name for role, name in {roles!r}.items()}}
result = {{"drop": 0.25, "output": {{k: str(v) for k, v in finals.items()}}, "notes": []}}
print(encode(Progress(48, "saving")), end="", flush=True)
staging = Staging(out)
for role in ("model", "weights", "report"):
    staging.write_text(role, f"{{tag}} {{role}}")
staging.write_json("result", {{**result, "tag": tag}})
staging.commit(finals, Path(request.journal))
if kill_at == len({steps!r}):  # after the whole commit, before the answer
    os.kill(os.getpid(), signal.SIGKILL)
print(encode({answer}), end="", flush=True)
'''


def fake_worker(folder: Path, out: Path, kill_at: int, tag: str = "new", answer: str = "Result(result)") -> str:
    script = folder / f"fake-worker-{kill_at}"
    script.write_text(FAKE_WORKER.format(python=sys.executable, out=str(out), kill_at=kill_at, tag=tag,
                                         roles=ROLES, steps=STEPS, answer=answer))
    script.chmod(0o755)
    return str(script)


def old_set(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for role, name in ROLES.items():
        (out / name).write_text(json.dumps({"tag": "old"}) if role == "result" else f"old {role}")


def which_set(out: Path) -> str:
    """"old" or "new" when every file of the set comes from one commit; fails on a mixed set."""
    tags = {}
    for role, name in ROLES.items():
        text = (out / name).read_text()
        tags[name] = json.loads(text)["tag"] if role == "result" else text.split()[0]
    assert len(set(tags.values())) == 1, f"a mixed output set: {tags}"
    return next(iter(tags.values()))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob(".*") if p.is_file())


@pytest.mark.parametrize("kill_at", range(len(STEPS) + 1), ids=[f"before {s}" for s in STEPS] + ["after commit"])
def test_a_worker_killed_at_any_step_of_its_commit_leaves_a_whole_set_and_the_row_says_which(tmp_path, kill_at):
    spec = copy_example(tmp_path)
    out = spec.parent / "calibrated"
    old_set(out)
    store = JobStore(tmp_path)
    runner = Runner(store, python=fake_worker(tmp_path, out, kill_at)).start()
    try:
        job = runner.wait(runner.submit(spec), 30)
    finally:
        runner.stop()
    assert "SIGKILL" in (job["error"] or "") + " ".join((job["summary"] or {}).get("notes", []))
    if kill_at == 0:  # before the commit point: the old set stands
        assert which_set(out) == "old"
        assert job["state"] == "failed" and job["error"].endswith("nothing was written"), job["error"]
    else:  # after it: the commit is finished for the dead worker, and the row has its result
        assert which_set(out) == "new"
        assert job["state"] == "done", job["error"]
        assert job["summary"]["drop"] == 0.25 and job["summary"]["output"]["model"] == str(out / ROLES["model"])
        assert "after its outputs were committed" in job["summary"]["notes"][-1]
    assert leftovers(out) == [] and not list(store.journal(job["id"]).parent.glob("*"))


def test_a_failure_after_the_commit_says_what_was_kept(tmp_path):
    """Over budget: the worker commits the attempt, then fails; the row keeps its problems and the set."""
    spec = copy_example(tmp_path)
    out = spec.parent / "calibrated"
    store = JobStore(tmp_path)
    runner = Runner(store, python=fake_worker(tmp_path, out, 99, answer='Failure("over budget")')).start()
    try:
        job = runner.wait(runner.submit(spec), 30)
    finally:
        runner.stop()
    assert job["state"] == "failed" and job["error"] == "over budget"
    assert job["summary"]["output"]["model"] == str(out / ROLES["model"]) and which_set(out) == "new"


def stage(out: Path, tag: str) -> dict[str, Path]:
    pending = {}
    for role in ROLES:
        pending[role] = temporary(out, role, ".txt")
        pending[role].write_text(json.dumps({"tag": tag}) if role == "result" else f"{tag} {role}")
    return pending


def finals(out: Path) -> dict[str, Path]:
    return {role: out / name for role, name in ROLES.items()}


class Killed(BaseException):
    """A kill inside the commit, raised in-process: no handler of the engine catches it."""


def stop_at(monkeypatch, step: int) -> None:
    count = [0]
    real = commit.replace

    def replace(src, dst):
        if count[0] == step:
            raise Killed()
        count[0] += 1
        real(src, dst)

    monkeypatch.setattr(commit, "replace", replace)


@pytest.mark.parametrize("step", range(len(STEPS)), ids=[f"before {s}" for s in STEPS])
def test_a_commit_stopped_at_any_step_outside_a_job_is_finished_by_the_next_run(tmp_path, monkeypatch, step):
    """`int8wb calibrate` or the pytest plugin killed mid-commit: the next run into that folder
    (opening a staging there) finishes the commit before anything else."""
    from int8wb.calibration.output import Staging

    out = tmp_path / "calibrated"
    old_set(out)
    staging = Staging(out)
    staging.pending = stage(out, "new")
    stop_at(monkeypatch, step)
    with pytest.raises(Killed):
        staging.commit(finals(out))
    monkeypatch.undo()
    staging.discard()  # what the engine does on the way out: the journal's files are no longer its own
    Staging(out)  # the next run
    assert which_set(out) == ("old" if step == 0 else "new")
    assert leftovers(out) == []


def test_a_stale_journal_never_puts_an_older_set_over_a_newer_one(tmp_path, monkeypatch):
    """A job killed mid-commit whose runner died too; before any runner comes back, `int8wb
    calibrate` commits into the same folder. Finishing the job's commit later must not undo that."""
    out = tmp_path / "calibrated"
    old_set(out)
    journal = tmp_path / "store" / "commits" / "job1.json"
    journal.parent.mkdir(parents=True)
    stop_at(monkeypatch, 3)  # .bin and .json are the job's, .html and .xml still old
    with pytest.raises(Killed):
        commit_set(stage(out, "job"), finals(out), journal)
    monkeypatch.undo()
    commit_set(stage(out, "cli"), finals(out))
    assert which_set(out) == "cli"
    resolution = resolve(journal)
    assert resolution.state == "superseded" and "nothing of this job was kept" in resolution.detail
    assert which_set(out) == "cli" and leftovers(out) == []


def test_a_staged_file_that_vanishes_mid_commit_is_an_error_and_the_old_set_stays_whole(tmp_path, monkeypatch):
    out = tmp_path / "calibrated"
    old_set(out)
    pending = stage(out, "new")
    xml = pending["model"]
    real = commit.replace
    monkeypatch.setattr(commit, "replace", lambda src, dst: (real(src, dst), xml.unlink(missing_ok=True)))
    with pytest.raises(OSError, match="model.tmp.* vanished before the commit was done; nothing was written"):
        commit_set(pending, finals(out))
    monkeypatch.undo()
    recover(out)
    assert which_set(out) == "old" and leftovers(out) == []


def test_the_next_runner_finishes_the_commit_of_a_worker_whose_runner_died(tmp_path, monkeypatch):
    spec = copy_example(tmp_path)
    out = spec.parent / "calibrated"
    old_set(out)
    store = JobStore(tmp_path)
    job_id = store.add(str(spec), output_dir=str(out), runner="gone-runner")
    store.update(job_id, state="running", pid=999_999_999, owner=999_999_999, started=time.time())
    store.journal(job_id).parent.mkdir(parents=True)
    stop_at(monkeypatch, 2)
    with pytest.raises(Killed):
        commit_set(stage(out, "new"), finals(out), store.journal(job_id))
    monkeypatch.undo()
    with pytest.raises(AssertionError, match="mixed"):
        which_set(out)
    runner = Runner(store).start()
    runner.stop()
    row = store.get(job_id)
    assert row["state"] == "done" and which_set(out) == "new"
    assert "worker process 999999999 is gone" in row["summary"]["notes"][-1]
    assert not store.journal(job_id).exists()


def test_two_commits_into_one_folder_take_turns(tmp_path, monkeypatch):
    """Two jobs of one spec finishing together: their renames must not interleave."""
    out = tmp_path / "calibrated"
    old_set(out)
    real = commit.replace
    monkeypatch.setattr(commit, "replace", lambda src, dst: (time.sleep(0.02), real(src, dst)))
    sets = {tag: stage(out, tag) for tag in ("a", "b")}
    threads = [threading.Thread(target=commit_set, args=(sets[tag], finals(out))) for tag in sets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert which_set(out) in ("a", "b") and leftovers(out) == []


def test_a_journal_names_the_files_it_put_in_place(tmp_path):
    out = tmp_path / "calibrated"
    out.mkdir()
    pending = stage(out, "new")
    staged = {role: ident(p) for role, p in pending.items()}
    journal = tmp_path / "j.json"
    done = commit_set(pending, finals(out), journal)
    assert done.state == "committed" and pending == {}
    read = Journal.read(journal)
    assert {m.role: m.new for m in read.moves} == staged == {r: ident(p) for r, p in finals(out).items()}
    assert [Path(m.final).name for m in read.moves] == STEPS[1:]
    assert all(isinstance(m, Move) and m.old is None for m in read.moves)
    assert recover(out) == [] and resolve(tmp_path / "missing.json") is None
