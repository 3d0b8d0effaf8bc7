"""calibration.dropfolder.policy: the policy file, its problems, and each dropped model's spec."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from int8wb.calibration.dropfolder import load_policy
from int8wb.calibration.problems import CalibrationError, Problem
from int8wb.calibration.spec import load_spec
from drop_helpers import Box, new_box


@pytest.fixture
def box(tmp_path, monkeypatch) -> Box:
    return new_box(tmp_path, monkeypatch)


def test_policy_errors_name_file_line_and_key(box):
    policy = box.inbox / "calibration.toml"
    policy.write_text('model = "x.xml"\n[dataset]\nkind = "npz"\npath = "../nope.npz"\n[inference]\n'
                      'duration = -1\n[drop]\noutbx = "../o"\nsettle = "soon"\n')
    with pytest.raises(CalibrationError) as info:
        load_policy(policy)
    found = {p.key: p for p in info.value.problems}
    assert found["model"].line == 1 and found["model"].path == str(policy)
    assert found["drop.outbx"].line == 8 and "did you mean 'outbox'" in found["drop.outbx"].message
    assert found["drop.settle"].line == 9
    assert found["inference.duration"].line == 6
    with pytest.raises(CalibrationError) as info:   # the spec's own checks, then the dataset path
        load_policy(policy, text='[dataset]\nkind = "npz"\npath = "../nope.npz"\n')
    (p,) = info.value.problems
    assert (p.key, p.line, p.rule) == ("dataset.path", 3, "dataset-missing")
    assert str(p).startswith(f"{policy}:3: dataset.path: dataset not found")
    with pytest.raises(CalibrationError) as info:
        load_policy(policy, text='[dataset]\nkind = "generated"\n[drop]\noutbox = "."\n')
    assert info.value.problems[0].key == "drop.outbox" and info.value.problems[0].line == 4


def test_job_tables_make_every_path_absolute(box):
    policy = load_policy(box.inbox / "calibration.toml")
    tables = policy.job_tables(Path("/snap/m.xml"), Path("/stage/x"))
    handed = box.root / "elsewhere" / "s.json"   # a worker reads them from any folder
    handed.parent.mkdir()
    handed.write_text(json.dumps(tables))
    spec = load_spec(handed)
    assert spec.model_path == Path("/snap/m.xml") and spec.output_dir == Path("/stage/x")
    assert spec.resolve(spec.dataset.path) == box.root / "data.npz"
    assert spec.inference.duration == 0.05
    assert "drop" not in tables


def test_a_models_spec_is_the_policy_located_in_the_policy(box):
    """No spec text in between: the spec of a dropped model resolves and locates in the policy file."""
    policy = load_policy(box.inbox / "calibration.toml")
    spec = policy.spec_for(Path("/snap/m.xml"), Path("/stage/x"))
    assert spec.path == policy.path and spec.resolve(spec.dataset.path) == box.root / "data.npz"
    line = (box.inbox / "calibration.toml").read_text().splitlines().index("duration = 0.05") + 1
    assert spec.line("inference", "duration") == line
    problem = spec.problem("too short", "inference", "duration")
    assert (problem.path, problem.line) == (str(policy.path), line)


def test_what_a_worker_finds_is_told_where_the_user_fixes_it(box):
    policy = load_policy(box.inbox / "calibration.toml")
    job, snap, original = Path("/w/specs/ab.json"), Path("/w/work/ab/m.xml"), box.inbox / "m.xml"
    found = [Problem("no samples", path=str(job), line=1, key="dataset.path", rule="dataset-empty", fix="add some"),
             Problem("bad input", path=str(job), line=1, key="model", rule="model-input"),
             Problem(f"cannot read {snap}", path=str(snap), line=3, rule="corrupt-model", severity="warning")]
    dataset, model, snapshot = policy.locate(found, job, snap, original)
    assert (dataset.path, dataset.line, dataset.key, dataset.rule, dataset.fix) == \
        (str(policy.path), 4, "dataset.path", "dataset-empty", "add some")
    assert (model.path, model.line, model.key) == (str(original), None, "model")
    assert (snapshot.path, snapshot.line, snapshot.severity) == (str(original), 3, "warning")
    assert snapshot.message == f"cannot read {original}"


def test_a_ray_cluster_address_is_the_users_word_not_the_workspaces(tmp_path, monkeypatch):
    """`[drop] ray = "auto"` is the cluster this machine joined; an address only from a trusted folder
    (the watcher sends jobs there and reads back what it answers)."""
    from int8wb.calibration.trust import set_trusted

    box = new_box(tmp_path, monkeypatch, extra='ray = "10.0.0.9:6379"\nray_cpus = 4')
    with pytest.raises(CalibrationError) as err:
        load_policy(box.inbox / "calibration.toml")
    assert [(p.rule, p.key) for p in err.value.problems] == [("untrusted-cluster", "drop.ray")]
    set_trusted(box.inbox)
    policy = load_policy(box.inbox / "calibration.toml")
    assert (policy.drop.ray, policy.drop.ray_cpus) == ("10.0.0.9:6379", 4)
    (box.inbox / "calibration.toml").write_text((box.inbox / "calibration.toml").read_text()
                                                .replace('"10.0.0.9:6379"', '"auto"'))
    set_trusted(box.inbox, on=False)
    assert load_policy(box.inbox / "calibration.toml").drop.ray == "auto"
