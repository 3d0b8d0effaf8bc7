"""calibration.dropfolder.publish: entries appear whole, in the outbox or the failed folder."""
from __future__ import annotations

import json
import shutil

from int8wb.calibration.dropfolder import entry_name, load_policy
from int8wb.calibration.dropfolder.publish import failed_entry, install, published_digest, staging
from int8wb.calibration.problems import Problem
from drop_helpers import Box


def test_move_policy_moves_originals_into_the_entry(tmp_path, monkeypatch):
    box = Box(tmp_path, extra="move = true")
    monkeypatch.setenv("FAKE_CALLS", str(box.calls))
    m = box.model("mv", seed=8)
    shutil.copy(m, box.inbox / "mv.xml")
    shutil.copy(m.with_suffix(".bin"), box.inbox / "mv.bin")
    drop = box.watcher()
    assert drop.run(once=True, timeout=30) == 0
    drop.close()
    assert not (box.inbox / "mv.xml").exists() and not (box.inbox / "mv.bin").exists()
    assert (box.outbox / "mv" / "source" / "mv.bin").read_bytes() == m.with_suffix(".bin").read_bytes()


def test_entry_names_are_flat():
    assert entry_name("resnet/model.xml") == "resnet__model"
    assert entry_name("a/b/c.xml") == "a__b__c" and entry_name("m.xml") == "m"


def test_install_replaces_an_older_entry_in_one_rename(tmp_path):
    dest = tmp_path / "outbox" / "m"
    for version in ("old", "new"):
        stage = staging(tmp_path / "outbox") / version
        stage.mkdir(parents=True)
        (stage / "drop.json").write_text(json.dumps({"sha256": version}))
        install(stage, dest)
        assert published_digest(dest) == version
    assert sorted(p.name for p in (tmp_path / "outbox").iterdir()) == ["m"]   # no .replaced-* left behind
    assert published_digest(tmp_path / "outbox" / "gone") is None


def test_a_failed_entry_has_one_reason_line_per_problem(tmp_path):
    box = Box(tmp_path)
    policy = load_policy(box.inbox / "calibration.toml")
    original = box.inbox / "m.xml"
    problems = [Problem("FP16 model", path=str(original), line=2, rule="fp16", fix="export FP32"),
                Problem("no int8 layer", path=str(original), rule="no-int8")]
    dest, reason = failed_entry(policy, "m", original, None, "ab" * 32, "refused", problems)
    assert dest == box.failed / "m" and reason == "\n".join(str(p) for p in problems)
    text = (dest / "reason.txt").read_text()
    assert text.startswith("m: refused at ") and f"model: {original}" in text and reason in text
    manifest = json.loads((dest / "drop.json").read_text())
    assert manifest["state"] == "refused" and [p["rule"] for p in manifest["problems"]] == ["fp16", "no-int8"]
    assert not list(staging(box.failed).iterdir())
