"""A drop policy is the workspace's word: it may not reach outside, and nothing the tool did not
publish is ever replaced or removed. Same-named models never overwrite each other."""
from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "calibration" / "dropfolder"))
from drop_helpers import new_box  # noqa: E402

from int8wb.calibration.dropfolder import load_policy  # noqa: E402
from int8wb.calibration.problems import CalibrationError  # noqa: E402
from int8wb.calibration.trust import set_trusted  # noqa: E402


@pytest.fixture
def box(tmp_path, monkeypatch):
    return new_box(tmp_path, monkeypatch)


def drop_in(box, rel: str, seed: int) -> None:
    m = box.model(f"m{seed}", seed=seed)
    (box.inbox / rel).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(m, box.inbox / rel)
    shutil.copy(m.with_suffix(".bin"), (box.inbox / rel).with_suffix(".bin"))


def test_a_policy_cannot_send_results_outside_the_folder_that_holds_the_inbox(box, tmp_path):
    victim = tmp_path.parent / f"{tmp_path.name}-victim"
    policy = box.inbox / "calibration.toml"
    policy.write_text(policy.read_text().replace('failed = "../failed"', f'failed = "../../{victim.name}"'))
    with pytest.raises(CalibrationError) as exc:
        load_policy(policy)
    (p,) = exc.value.problems
    line = policy.read_text().splitlines().index(f'failed = "../../{victim.name}"') + 1
    assert (p.rule, p.key, p.line) == ("path-outside", "drop.failed", line) and "int8wb trust" in p.fix
    set_trusted(victim)  # the user, from outside the workspace, may allow it
    assert load_policy(policy).failed == victim.resolve()


def test_a_folder_the_tool_did_not_publish_is_never_replaced(box):
    """`failed = "../victim"` plus a broken `important.xml` used to delete `victim/important/`."""
    precious = box.failed / "important"
    precious.mkdir(parents=True)
    (precious / "thesis.txt").write_text("years of work")
    (box.inbox / "important.bin").write_bytes(b"")
    (box.inbox / "important.xml").write_text(  # whole but not a sane IR: refused at once
"<?xml version='1.0'?>\n<net name='x' version='11'>\n<layers>"
                                              "<layer id='0' type='Nope'/></layers>\n</net>\n")
    drop = box.watcher()
    assert drop.run(once=True, timeout=30) == 1
    drop.close()
    assert (precious / "thesis.txt").read_text() == "years of work"
    assert box.entries(box.failed) == ["important", "important~2"]
    assert (box.failed / "important~2" / "reason.txt").is_file()


def test_models_whose_names_flatten_alike_get_entries_of_their_own(box):
    """`coll/m.xml` and `coll__m.xml` both read `coll__m`: both used to publish there, one lost."""
    drop_in(box, "coll/m.xml", seed=1)
    drop_in(box, "coll__m.xml", seed=2)
    drop = box.watcher()
    assert drop.run(once=True, timeout=30) == 0
    drop.close()
    entries = box.entries()
    assert len(entries) == 2 and "coll__m" in entries
    sources = {json.loads((box.outbox / e / "drop.json").read_text())["source"] for e in entries}
    assert sources == {str(box.inbox / "coll" / "m.xml"), str(box.inbox / "coll__m.xml")}


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_the_inbox_state_is_private_whatever_the_umask(box, umask):
    """`INBOX/.int8wb/` holds the log, job specs and snapshots of the team's models: 0700, files 0600."""
    drop_in(box, "m.xml", seed=3)
    previous = os.umask(umask)
    try:
        drop = box.watcher()
        assert drop.run(once=True, timeout=30) == 0
        drop.close()
    finally:
        os.umask(previous)
    state = box.inbox / ".int8wb"
    made = [p for p in [state, *state.rglob("*")] if "logs" not in p.parts and "commits" not in p.parts]
    assert {p.name for p in made} >= {"specs", "work", "dropfolder.log", "watch.lock", "jobs.sqlite"}
    loose = {str(p.relative_to(state)): oct(stat.S_IMODE(p.stat().st_mode)) for p in made
             if stat.S_IMODE(p.stat().st_mode) != (0o700 if p.is_dir() else 0o600)}
    assert loose == {}
