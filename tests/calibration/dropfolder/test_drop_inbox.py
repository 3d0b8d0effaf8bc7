"""calibration.dropfolder.inbox: when a pair is taken, and exactly once by content."""
from __future__ import annotations

import json
import os
import shutil
import time

import pytest

from int8wb.calibration.dropfolder import inbox_rows
from int8wb.calibration.model_files import content_hash
from conftest import tree, wait_until
from drop_helpers import Box, Running, complete_entry, no_staging_left, new_box


@pytest.fixture
def box(tmp_path, monkeypatch) -> Box:
    return new_box(tmp_path, monkeypatch)


# -- when a pair is taken ----------------------------------------------------------------------

def test_slow_copy_is_taken_once_complete(box):
    src = box.model("slow")
    with Running(box.watcher()) as drop:
        dst = box.inbox / "slow.xml"
        # the .bin first, then the .xml, each written in pieces over about a second
        for path in (src.with_suffix(".bin"), src):
            data = path.read_bytes()
            with open(box.inbox / path.name, "wb") as fh:
                for i in range(5):
                    fh.write(data[i * len(data) // 5:(i + 1) * len(data) // 5])
                    fh.flush()
                    time.sleep(0.12)
        wait_until(lambda: (box.outbox / "slow" / "drop.json").is_file(), 20, "the calibrated model")
        assert drop.failures == []
    assert box.calls_made() == [str(box.inbox / ".int8wb" / "work" /
                                    json.loads((box.outbox / "slow" / "drop.json").read_text())["sha256"][:16]
                                    / "slow.xml")]
    assert complete_entry(box.outbox / "slow", "slow")
    assert (box.outbox / "slow" / "slow.int8.bin").read_bytes() == src.with_suffix(".bin").read_bytes()
    assert dst.read_bytes() == src.read_bytes()  # the original is untouched
    no_staging_left(box)


@pytest.mark.parametrize("first", [".xml", ".bin"])
def test_one_file_of_the_pair_long_before_the_other(box, first):
    src = box.model("pair")
    second = ".bin" if first == ".xml" else ".xml"
    with Running(box.watcher()) as drop:
        shutil.copy(src.with_suffix(first), box.inbox / f"pair{first}")
        time.sleep(1.0)  # well past settle: the lone file must not be taken
        assert box.calls_made() == [] and box.entries() == [] and box.entries(box.failed) == []
        shutil.copy(src.with_suffix(second), box.inbox / f"pair{second}")
        wait_until(lambda: (box.outbox / "pair" / "drop.json").is_file(), 20, "the calibrated model")
    assert len(box.calls_made()) == 1 and drop.failures == []
    log = (box.inbox / ".int8wb" / "dropfolder.log").read_text()
    if first == ".xml":
        assert "pair: waiting (incomplete" in log


def test_atomic_rename_and_whole_folder_moved_in(box):
    a, b = box.model("a", seed=1), box.model("b", seed=2)
    folder = box.root / "batch"
    folder.mkdir()
    for m in (a, b):
        shutil.copy(m, folder / m.name)
        shutil.copy(m.with_suffix(".bin"), folder / m.with_suffix(".bin").name)
    single = box.model("single", seed=3)
    with Running(box.watcher()) as drop:
        os.rename(folder, box.inbox / "batch")              # a whole folder
        os.rename(single.with_suffix(".bin"), box.inbox / "single.bin")  # a pair, one rename each
        os.rename(single, box.inbox / "single.xml")
        wait_until(lambda: len(box.entries()) == 3, 20, "three entries")
    assert box.entries() == ["batch__a", "batch__b", "single"]
    assert len(box.calls_made()) == 3 and drop.failures == []
    assert all(complete_entry(box.outbox / n, n.split("__")[-1]) for n in box.entries())


def test_a_whole_but_malformed_xml_is_refused_without_waiting(box):
    good = box.model("good", seed=8)
    text = good.read_text()
    cut = text.index("<layers>") + len("<layers>")
    (box.inbox / "bad.xml").write_text(text[:cut] + "<layer id='0' <<>" + text[cut:])  # ends with </net>
    shutil.copy(good.with_suffix(".bin"), box.inbox / "bad.bin")
    drop = box.watcher()
    started = time.monotonic()
    assert drop.run(once=True, timeout=20) == 1   # incomplete_after is 30 s: it did not wait for that
    drop.close()
    assert time.monotonic() - started < 20
    reason = (box.failed / "bad" / "reason.txt").read_text()
    assert "malformed XML" in reason and "(fix: " in reason


# -- exactly once, by content ------------------------------------------------------------------

def test_duplicate_content_under_two_names_and_changed_content_under_one(box):
    m = box.model("m", seed=4)
    for name in ("first", "second"):
        shutil.copy(m, box.inbox / f"{name}.xml")
        shutil.copy(m.with_suffix(".bin"), box.inbox / f"{name}.bin")
    drop = box.watcher()
    assert drop.run(once=True, timeout=30) == 0
    drop.close()
    assert len(box.calls_made()) == 1
    assert box.entries() == ["first", "second"]
    dup = box.outbox / "second"
    assert "same content" in (dup / "duplicate.txt").read_text()
    assert json.loads((dup / "drop.json").read_text())["duplicate_of"] == "first"
    assert (dup / "first.int8.xml").read_bytes() == (box.outbox / "first" / "first.int8.xml").read_bytes()
    first_hash = json.loads((box.outbox / "first" / "drop.json").read_text())["sha256"]
    assert first_hash == content_hash(box.inbox / "first.xml")

    # the same name again, unchanged (even touched): nothing to do; changed: processed again
    os.utime(box.inbox / "first.xml")
    changed = box.model("changed", seed=5)
    shutil.copy(changed.with_suffix(".bin"), box.inbox / "second.bin")
    shutil.copy(changed, box.inbox / "second.xml")
    drop = box.watcher()
    assert drop.run(once=True, timeout=30) == 0
    drop.close()
    assert len(box.calls_made()) == 2
    manifest = json.loads((box.outbox / "second" / "drop.json").read_text())
    assert manifest["state"] == "done" and manifest["sha256"] == content_hash(box.inbox / "second.xml")
    assert not (box.outbox / "second" / "duplicate.txt").exists()
    assert json.loads((box.outbox / "first" / "drop.json").read_text())["sha256"] == first_hash

    rows = inbox_rows(box.inbox)
    assert {r["xml"]: r["state"] for r in rows} == {"first.xml": "done", "second.xml": "done"}
    no_staging_left(box)


def test_corrupt_and_ineligible_models_land_in_failed_with_a_reason(tmp_path, monkeypatch):
    box = Box(tmp_path, incomplete_after=0.2)
    monkeypatch.setenv("FAKE_CALLS", str(box.calls))
    good = box.model("good", seed=6)
    fp16 = box.model("half", seed=7, fp16=True)
    for m in (good, fp16):
        shutil.copy(m, box.inbox / m.name)
        shutil.copy(m.with_suffix(".bin"), box.inbox / m.with_suffix(".bin").name)
    text = good.read_text()
    (box.inbox / "broken.xml").write_text(text[: len(text) // 2])   # an IR cut in half
    shutil.copy(good.with_suffix(".bin"), box.inbox / "broken.bin")
    (box.inbox / "notes.xml").write_text("<?xml version='1.0'?><notes>" + "x" * 2000 + "</notes>")
    before = tree(box.inbox)
    drop = box.watcher()
    assert drop.run(once=True, timeout=30) == 1   # something failed
    drop.close()
    assert box.entries() == ["good"]
    assert box.entries(box.failed) == ["broken", "half"]
    reason = (box.failed / "broken" / "reason.txt").read_text()
    line = next(l for l in reason.splitlines() if l.startswith(f"{box.inbox / 'broken.xml'}:"))
    assert "malformed XML" in line and "(fix: " in line
    half = (box.failed / "half" / "reason.txt").read_text()
    line = next(l for l in half.splitlines() if l.startswith(str(box.inbox / "half.xml")))
    assert "FP16" in line and "(fix: " in line
    assert len(box.calls_made()) == 1   # only the good one reached a worker
    after = tree(box.inbox)
    assert {k: v for k, v in after.items() if not k.startswith(".int8wb")} == \
        {k: v for k, v in before.items() if not k.startswith(".int8wb")}   # originals untouched
