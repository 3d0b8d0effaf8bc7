"""A dropped `.onnx` is a model of the inbox like an IR pair: taken once settled, converted by
openvino.convert_model in its worker, calibrated and published; one that does not convert fails with
the conversion's reason."""
from __future__ import annotations

import hashlib
import json
import time

import pytest

from int8wb.calibration.dropfolder import entry_name
from conftest import onnx_net, wait_until
from drop_helpers import Box, Running, complete_entry, new_box, no_staging_left


@pytest.fixture
def box(tmp_path, monkeypatch) -> Box:
    return new_box(tmp_path, monkeypatch)


def test_an_onnx_name_is_its_entry_name():
    assert entry_name("det/model.onnx") == "det__model" and entry_name("a.onnx.xml") == "a.onnx"


def test_a_dropped_onnx_is_converted_calibrated_and_published_and_a_broken_one_fails(box):
    src = onnx_net(box.root / "net.onnx")
    data = src.read_bytes()
    with Running(box.watcher(real=True), timeout=150) as drop:
        # written in pieces, each sooner than `settle` after the last: never taken half-written
        with open(box.inbox / "net.onnx", "wb") as fh:
            for i in range(5):
                fh.write(data[i * len(data) // 5:(i + 1) * len(data) // 5])
                fh.flush()
                time.sleep(0.12)
        (box.inbox / "bad.onnx").write_bytes(b"\x08\x07" + b"not a protobuf graph" * 10)
        wait_until(lambda: (box.outbox / "net" / "drop.json").is_file()
                   and (box.failed / "bad" / "reason.txt").is_file(), 120, "both entries")
        assert drop.failures == ["bad"]
    assert box.calls_made() == []  # the real worker, not the stand-in
    assert box.entries() == ["net"] and box.entries(box.failed) == ["bad"]
    assert complete_entry(box.outbox / "net", "net")
    manifest = json.loads((box.outbox / "net" / "drop.json").read_text())
    assert manifest["sha256"] == hashlib.sha256(data).hexdigest() and manifest["state"] == "done"
    result = json.loads((box.outbox / "net" / "net.int8.json").read_text())
    assert result["conversion"]["route"] == "openvino.convert_model" and result["int8_layer_count"] > 0
    reason = (box.failed / "bad" / "reason.txt").read_text()
    assert f"{box.inbox / 'bad.onnx'}: openvino.convert_model cannot convert this ONNX model" in reason, reason
    assert (box.inbox / "net.onnx").read_bytes() == data  # the original is only read
    no_staging_left(box)


def test_move_takes_the_onnx_file_alone(tmp_path, monkeypatch):
    b = new_box(tmp_path, monkeypatch, extra="move = true")
    onnx_net(b.inbox / "net.onnx")
    unrelated = b.inbox / "net.bin"  # not the ONNX model's: an .onnx has no pair
    unrelated.write_bytes(b"someone else's weights")
    drop = b.watcher(real=True)
    try:
        assert drop.run(once=True, timeout=120) == 0
    finally:
        drop.close()
    assert not (b.inbox / "net.onnx").exists() and unrelated.read_bytes() == b"someone else's weights"
    assert sorted(p.name for p in (b.outbox / "net" / "source").iterdir()) == ["net.onnx"]
