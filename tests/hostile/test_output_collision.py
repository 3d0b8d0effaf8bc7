"""Two specs for one model in one folder must not overwrite each other's output set.

Reproduces issue #15, point 7 (second half): a Default and an AccuracyAware spec for the same
`model.xml` both wrote `calibrated/model.int8.*`, and the second run silently replaced the first
one's result. Now the result records its spec; another spec's set is refused at check time, at the
start of a run, and under the commit's lock when the other run committed meanwhile.
"""
from __future__ import annotations

import json
import shutil

import pytest

from int8wb.calibration import CalibrationError, load_spec
from int8wb.calibration.checker import check_spec
from int8wb.calibration.commit import commit_set
from int8wb.calibration.workflow import calibrate
from conftest import copy_example


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def two_specs(tmp_path_factory):
    """The example calibrated by its own spec, and a second spec for the same model beside it."""
    first = copy_example(tmp_path_factory.mktemp("collision"))
    calibrate(load_spec(first))
    second = first.with_name("second.calibration.toml")
    second.write_text(first.read_text().replace('preset = "performance"', 'preset = "mixed"'))
    assert second.read_text() != first.read_text()
    return first, second


def test_check_names_the_spec_that_owns_the_outputs(two_specs):
    first, second = two_specs
    problems = [p for p in check_spec(second) if p.rule == "output-taken"]
    assert len(problems) == 1, check_spec(second)
    p = problems[0]
    assert p.severity == "error" and p.path == str(second) and first.name in p.message
    assert 'dir = "calibrated/second"' in p.fix
    assert not [p for p in check_spec(first) if p.rule == "output-taken"]  # its own outputs are free


def test_a_run_of_the_other_spec_is_refused_and_writes_nothing(two_specs):
    first, second = two_specs
    before = snapshot(first.parent / "calibrated")
    with pytest.raises(CalibrationError) as err:
        calibrate(load_spec(second))
    assert [p.rule for p in err.value.problems] == ["output-taken"]
    assert snapshot(first.parent / "calibrated") == before


def test_a_byte_identical_copy_asks_for_the_same_calibration(two_specs):
    first, _ = two_specs
    twin = first.with_name("twin.calibration.toml")
    shutil.copy(first, twin)
    assert not [p for p in check_spec(twin) if p.rule == "output-taken"]


def test_its_own_folder_is_the_way_out(two_specs):
    first, second = two_specs
    text = second.read_text()
    assert 'dir = "calibrated"' in text
    own = first.parent / "own.calibration.toml"
    own.write_text(text.replace('dir = "calibrated"', 'dir = "calibrated/own"'))
    assert not [p for p in check_spec(own) if p.rule == "output-taken"]


def test_a_set_whose_spec_is_gone_may_be_replaced(tmp_path):
    spec = copy_example(tmp_path)
    out = spec.parent / "calibrated"
    out.mkdir()
    (out / "model.int8.json").write_text(json.dumps({"spec": str(spec.parent / "deleted.calibration.toml")}))
    assert not [p for p in check_spec(spec) if p.rule == "output-taken"]


def test_a_commit_made_meanwhile_by_another_spec_is_not_replaced(tmp_path):
    """Both runs passed their checks; the other one commits first. This run's commit re-checks
    under the folder's lock and keeps the other set."""
    spec = copy_example(tmp_path)
    other = spec.with_name("other.calibration.toml")
    other.write_text(spec.read_text() + "# another spec\n")
    out = spec.parent / "calibrated"
    theirs = json.dumps({"spec": str(other), "tag": "theirs"})

    def commit_theirs(_pct, phase):
        if phase == "saving" and not out.joinpath("model.int8.json").exists():
            out.mkdir(exist_ok=True)
            (out / "model.int8.json").write_text(theirs)

    with pytest.raises(CalibrationError) as err:
        calibrate(load_spec(spec), progress=commit_theirs)
    assert [p.rule for p in err.value.problems] == ["output-taken"]
    assert snapshot(out) == {"model.int8.json": theirs.encode()}  # nothing of this run, not even staged files
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_a_guard_that_raises_leaves_the_finals_and_the_staged_files(tmp_path):
    staged = tmp_path / ".model.tmp"
    staged.write_text("new")
    final = tmp_path / "model.int8.xml"
    final.write_text("old")
    pending = {"model": staged}

    def guard():
        raise RuntimeError("taken")

    with pytest.raises(RuntimeError):
        commit_set(pending, {"model": final}, guard=guard)
    assert final.read_text() == "old" and pending == {"model": staged} and staged.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".model.tmp", "model.int8.xml"]  # no journal
