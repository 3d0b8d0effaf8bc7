"""calibration.model_files: an IR pair on disk, and when it has finished arriving."""
from __future__ import annotations

import shutil

from int8wb.calibration.model_files import Settle, arrival, content_hash, finished, signature, sniff, walk
from conftest import conv_net, save


def test_a_whole_pair_has_arrived_and_a_partial_one_has_not(model_xml):
    assert sniff(model_xml) is True and finished(model_xml)
    assert arrival(model_xml).complete and arrival(model_xml).state == "complete"
    folder = model_xml.parent
    bin_bytes, text = model_xml.with_suffix(".bin").read_bytes(), model_xml.read_text()

    shutil.copy(model_xml, folder / "nobin.xml")                          # the .xml before its .bin
    assert arrival(folder / "nobin.xml").state == "arriving"
    (folder / "short.xml").write_text(text)                               # the .bin half copied
    (folder / "short.bin").write_bytes(bin_bytes[: len(bin_bytes) // 2])
    assert arrival(folder / "short.xml").state == "arriving"
    (folder / "half.xml").write_text(text[: len(text) // 2])              # the .xml half copied
    shutil.copy(model_xml.with_suffix(".bin"), folder / "half.bin")
    assert not finished(folder / "half.xml")
    half = arrival(folder / "half.xml")
    assert half.state == "arriving" and "malformed XML" in half.why
    (folder / "begun.xml").write_text("<?xml")                             # too little to tell
    assert sniff(folder / "begun.xml") is None and arrival(folder / "begun.xml").state == "arriving"


def test_a_whole_but_malformed_xml_is_broken_for_good(model_xml):
    text = model_xml.read_text()
    cut = text.index("<layers>") + len("<layers>")
    bad = model_xml.with_name("bad.xml")
    bad.write_text(text[:cut] + "<layer id='0' <<>" + text[cut:])
    shutil.copy(model_xml.with_suffix(".bin"), bad.with_suffix(".bin"))
    assert finished(bad) and arrival(bad).state == "broken" and "malformed XML" in arrival(bad).why


def test_other_xml_is_not_an_ir(tmp_path):
    notes = tmp_path / "notes.xml"
    notes.write_text("<?xml version='1.0'?><notes>" + "x" * 2000 + "</notes>")
    assert sniff(notes) is False and arrival(notes).state == "not-ir"
    text = tmp_path / "readme.xml"
    text.write_text("plain words")
    assert sniff(text) is False
    assert sniff(tmp_path / "missing.xml") is None and not finished(tmp_path / "missing.xml")


def test_the_signature_follows_both_files(model_xml):
    sig = signature(model_xml)
    assert len(sig) == 4 and sig[0] == model_xml.stat().st_size
    weights = model_xml.with_suffix(".bin")
    with open(weights, "ab") as fh:
        fh.write(b"more")
    assert signature(model_xml) != sig and signature(model_xml)[2] == sig[2] + 4
    weights.unlink()
    assert signature(model_xml)[2:] == (None, None)
    assert signature(model_xml.with_name("gone.xml")) is None
    spec = model_xml.with_name("m.calibration.toml")
    spec.write_text("x = 1\n")
    assert signature(spec) == (6, spec.stat().st_mtime_ns)


def test_settle_waits_for_a_signature_unchanged_for_its_seconds():
    now = [100.0]
    settle = Settle(2.0, clock=lambda: now[0])
    assert settle.observe("m.xml", (1, 1)) == 2.0 and settle.since("m.xml") == 100.0
    now[0] = 101.5
    assert settle.observe("m.xml", (1, 1)) == 0.5
    assert settle.observe("m.xml", (2, 2)) == 2.0          # still copying: the wait starts again
    now[0] = 103.5
    assert settle.observe("m.xml", (2, 2)) == 0.0 and settle.since("m.xml") == 101.5
    settle.forget("m.xml")
    assert settle.since("m.xml") is None and settle.observe("m.xml", (2, 2)) == 2.0
    assert settle.left(since=100.0, now=100.5) == 1.5 and settle.left(since=90.0) == 0.0
    assert Settle(0).observe("x", 1) == 0.0


def test_equal_content_hashes_equal_whatever_the_name(tmp_path):
    a = save(conv_net(seed=1), tmp_path / "a" / "model.xml")
    b = tmp_path / "b" / "other.xml"
    b.parent.mkdir()
    shutil.copy(a, b)
    shutil.copy(a.with_suffix(".bin"), b.with_suffix(".bin"))
    c = save(conv_net(seed=2), tmp_path / "c" / "model.xml")
    assert content_hash(a) == content_hash(b) != content_hash(c)
    assert len(content_hash(a)) == 64
    copy = tmp_path / "copy"
    assert content_hash(a, copy_to=copy) == content_hash(a)
    assert (copy / "model.bin").read_bytes() == a.with_suffix(".bin").read_bytes()
    assert content_hash(copy / "model.xml") == content_hash(a)


def test_walk_skips_hidden_and_given_folders(tmp_path):
    for rel in ("a.xml", "sub/b.xml", "sub/c.bin", "sub/.d.xml", ".hidden/e.xml", "sub/.int8wb/f.xml",
                "outbox/g.xml", "deep/er/h.xml", "s.calibration.toml"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    found = [p.relative_to(tmp_path).as_posix() for p in walk(tmp_path, skip=[tmp_path / "outbox"])]
    assert found == ["a.xml", "deep/er/h.xml", "sub/b.xml"]
    both = [p.name for p in walk(tmp_path, endings=(".xml", ".calibration.toml"))]
    assert both == ["a.xml", "s.calibration.toml", "h.xml", "g.xml", "b.xml"]
