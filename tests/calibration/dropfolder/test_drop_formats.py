"""A dropped `.tflite`, `.pdmodel` (with its `.pdiparams`) or SavedModel folder is a model of the inbox like
an `.onnx`: taken once every file it is made of is there and settled, converted by openvino.convert_model
in its worker, calibrated and published; a broken one fails with the conversion's reason."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from int8wb.calibration.dropfolder import entry_name
from int8wb.calibration.model_files import MODEL_ENDINGS, arrival, content_hash, files_of, signature, walk
from conftest import wait_until
from drop_helpers import Box, Running, complete_entry, new_box, no_staging_left

FORMATS = Path(__file__).resolve().parents[2] / "fixtures" / "formats"
SHARD = "variables/variables.data-00000-of-00001"
POLICY = """\
[dataset]
kind = "npz"
path = "../digits.npz"

[accuracy]
metric = "top1"

[calibration]
only_if_faster = false

[inference]
duration = 0.05

[drop]
settle = 1.0
move = true
"""


def digits_box(tmp_path: Path, monkeypatch, layout: str) -> Box:
    """An inbox whose policy calibrates and measures on held-out digits, laid out as the models want them."""
    box = new_box(tmp_path, monkeypatch)
    with np.load(FORMATS / "digits.npz") as data:
        x, labels = (data["pixels"] / 16.0).astype(np.float32), data["labels"].astype(np.int64)
    np.savez(tmp_path / "digits.npz", inputs=x[:, :, :, None] if layout == "nhwc" else x[:, None], labels=labels)
    (box.inbox / "calibration.toml").write_text(POLICY)
    return box


def write_in_pieces(dst: Path, data: bytes, pieces: int = 4) -> None:
    """Each piece far sooner than `settle` after the last: a copy in progress, never taken half-written."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(dst, "wb") as fh:
        for i in range(pieces):
            fh.write(data[i * len(data) // pieces:(i + 1) * len(data) // pieces])
            fh.flush()
            time.sleep(0.1)


def log_of(box: Box) -> str:
    return (box.inbox / ".int8wb" / "dropfolder.log").read_text()


def test_entry_names_and_what_a_model_is_made_of(tmp_path):
    assert entry_name("a/net.tflite") == "a__net" and entry_name("net.pdmodel") == "net"
    assert entry_name("team/digits_savedmodel") == "team__digits_savedmodel"
    shutil.copytree(FORMATS / "digits_savedmodel", tmp_path / "in" / "team" / "sm")
    for name in ("digits.pdmodel", "digits.tflite"):
        shutil.copy(FORMATS / name, tmp_path / "in" / name)
    found = list(walk(tmp_path / "in", endings=MODEL_ENDINGS))
    assert found == [tmp_path / "in" / "digits.pdmodel", tmp_path / "in" / "digits.tflite", tmp_path / "in" / "team" / "sm"]
    pd, sm = found[0], found[2]
    assert files_of(pd) == (pd, pd.with_suffix(".pdiparams"))
    assert [f.relative_to(sm).as_posix() for f in files_of(sm)] == ["fingerprint.pb", "saved_model.pb", SHARD,
                                                                     "variables/variables.index"]
    assert arrival(pd).state == "arriving" and "digits.pdiparams is not there yet" in arrival(pd).why
    shutil.copy(FORMATS / "digits.pdiparams", tmp_path / "in")
    assert arrival(pd).complete and arrival(sm).complete and arrival(found[1]).complete
    before = signature(sm)
    (sm / "variables" / "variables.index").rename(sm / "variables.index")
    assert arrival(sm).state == "arriving" and signature(sm) != before
    (sm / "variables.index").rename(sm / "variables" / "variables.index")
    copy = tmp_path / "snap"
    digest = content_hash(sm, copy_to=copy)
    assert digest == content_hash(copy / "sm") and (copy / "sm" / SHARD).read_bytes() == (sm / SHARD).read_bytes()


def calibrated(box: Box, name: str, stem: str) -> dict:
    """The result published for `name`, after checking the entry is whole and the model was converted."""
    assert complete_entry(box.outbox / name, stem)
    result = json.loads((box.outbox / name / f"{stem}.int8.json").read_text())
    assert result["conversion"]["route"] == "openvino.convert_model" and result["int8_layer_count"] >= 2
    assert result["fp32"]["accuracy"] >= 0.9 and abs(result["drop"]) <= 0.03
    return result


def test_a_tflite_copied_in_is_calibrated_and_a_broken_one_fails(tmp_path, monkeypatch):
    box = digits_box(tmp_path, monkeypatch, "nhwc")
    with Running(box.watcher(real=True), timeout=120) as drop:
        write_in_pieces(box.inbox / "digits.tflite", (FORMATS / "digits.tflite").read_bytes())
        (box.inbox / "bad.tflite").write_bytes(b"\x18\x00\x00\x00TFL3" + b"\xff" * 40)
        wait_until(lambda: box.entries() == ["digits"] and box.entries(box.failed) == ["bad"], 100, "both entries")
    assert drop.failures == ["bad"]
    calibrated(box, "digits", "digits")
    manifest = json.loads((box.outbox / "digits" / "drop.json").read_text())
    assert manifest["sha256"] == hashlib.sha256((FORMATS / "digits.tflite").read_bytes()).hexdigest()
    reason = (box.failed / "bad" / "reason.txt").read_text()
    assert f"{box.inbox / 'bad.tflite'}: openvino.convert_model cannot convert this TensorFlow Lite model" in reason
    assert not (box.inbox / "digits.tflite").exists()  # move = true
    no_staging_left(box)


def test_a_savedmodel_folder_is_taken_whole_and_a_truncated_one_fails(tmp_path, monkeypatch):
    box = digits_box(tmp_path, monkeypatch, "nhwc")
    sm_src = FORMATS / "digits_savedmodel"
    broken = box.root / "broken_savedmodel"  # built outside, moved in by one rename of the folder
    shutil.copytree(sm_src, broken)
    (broken / SHARD).write_bytes((sm_src / SHARD).read_bytes()[:1000])
    sm = box.inbox / "digits_savedmodel"
    with Running(box.watcher(real=True), timeout=120) as drop:
        # a folder copied file by file: saved_model.pb first, the variables' data last, in pieces
        for name in ("saved_model.pb", "fingerprint.pb", "variables/variables.index", SHARD):
            write_in_pieces(sm / name, (sm_src / name).read_bytes(), pieces=2)
        os.rename(broken, box.inbox / "broken_savedmodel")
        wait_until(lambda: box.entries() == ["digits_savedmodel"] and box.entries(box.failed) == ["broken_savedmodel"],
                   100, "both entries")
    assert drop.failures == ["broken_savedmodel"]
    calibrated(box, "digits_savedmodel", "digits_savedmodel")
    manifest = json.loads((box.outbox / "digits_savedmodel" / "drop.json").read_text())
    assert manifest["sha256"] == content_hash(sm_src)  # taken whole: the content of the complete folder
    # move = true: the original folder left the inbox, the entry keeps it as it was dropped
    source = box.outbox / "digits_savedmodel" / "source" / "digits_savedmodel"
    assert (source / SHARD).read_bytes() == (sm_src / SHARD).read_bytes() and (source / "saved_model.pb").is_file()
    assert not sm.exists()
    reason = (box.failed / "broken_savedmodel" / "reason.txt").read_text()
    assert f"{box.inbox / 'broken_savedmodel'}: openvino.convert_model cannot convert this TensorFlow SavedModel" \
        in reason and "cut short" in reason, reason
    no_staging_left(box)


def test_a_paddle_model_waits_for_its_pdiparams(tmp_path, monkeypatch):
    box = digits_box(tmp_path, monkeypatch, "nchw")
    with Running(box.watcher(real=True), timeout=120) as drop:
        shutil.copy(FORMATS / "digits.pdmodel", box.inbox / "digits.pdmodel")
        wait_until(lambda: "digits: waiting (incomplete: digits.pdiparams is not there yet)" in log_of(box), 20,
                   "the .pdmodel judged incomplete")
        assert box.entries() == [] and box.entries(box.failed) == []
        shutil.copy(FORMATS / "digits.pdiparams", box.inbox / "digits.pdiparams")
        wait_until(lambda: (box.outbox / "digits" / "drop.json").is_file(), 100, "the calibrated model")
    assert drop.failures == []
    assert calibrated(box, "digits", "digits")["conversion"]["source"].endswith("digits.pdmodel")
    assert sorted(p.name for p in (box.outbox / "digits" / "source").iterdir()) == ["digits.pdiparams", "digits.pdmodel"]
    assert not (box.inbox / "digits.pdmodel").exists() and not (box.inbox / "digits.pdiparams").exists()
    no_staging_left(box)


def test_a_pdmodel_whose_weights_never_come_is_refused_with_the_reason(tmp_path, monkeypatch):
    box = digits_box(tmp_path, monkeypatch, "nchw")
    policy = box.inbox / "calibration.toml"
    policy.write_text(policy.read_text() + "incomplete_after = 0.5\n")
    with Running(box.watcher(real=True), timeout=30) as drop:
        shutil.copy(FORMATS / "digits.pdmodel", box.inbox / "lonely.pdmodel")
        wait_until(lambda: (box.failed / "lonely" / "reason.txt").is_file(), 20, "the refusal")
    assert drop.failures == ["lonely"]
    reason = (box.failed / "lonely" / "reason.txt").read_text()
    assert "lonely.pdiparams, are not beside it" in reason and "save it again with paddle.jit.save" in reason, reason
