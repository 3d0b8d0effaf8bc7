"""The result cache: a key that follows every input of a calibration and nothing else, and entries
that hold results as `calibration.result.Result` reads them. Its use by the pytest gate (hits,
misses, xdist workers): tests/editor_client/test_pytest_plugin.py."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from int8wb.calibration import load_spec, result_cache, workflow
from int8wb.calibration.result import Result
from conftest import copy_example

SAMPLE = json.loads((Path(__file__).with_name("data") / "default.int8.json").read_text())


def test_the_key_follows_every_input_and_only_the_inputs(tmp_path):
    spec_path = copy_example(tmp_path)
    spec_path.write_text(spec_path.read_text().replace("duration = 0.3", "duration = 0.1"))
    folder = spec_path.parent
    hashes = result_cache.FileHashes(tmp_path / "files.json")

    def key(text: str | None = None) -> str:
        return result_cache.fingerprint(load_spec(spec_path, text=text), hashes)[0]

    base = key()
    hashes.save()
    warm = result_cache.FileHashes(tmp_path / "files.json")
    assert result_cache.fingerprint(load_spec(spec_path), warm)[0] == base
    assert warm.read == 0, "unchanged files are recognised by size and mtime, not re-read"

    text = spec_path.read_text()
    assert key("# a comment\n" + text) == base
    assert key(text.replace("max_drop = 0.01", "max_drop = 0.02\nmin_speedup = 3")) == base, \
        "budgets do not change the calibration"
    assert key(text.replace("duration = 0.1", "duration = 0.4")) != base

    xml = folder / "model.xml"
    original = xml.read_bytes()
    xml.write_bytes(original + b"\n")
    assert key() != base
    xml.write_bytes(original)
    assert key() == base

    weights = folder / "model.bin"
    data = bytearray(weights.read_bytes())
    data[100] ^= 1
    weights.write_bytes(bytes(data))
    assert key() != base
    data[100] ^= 1
    weights.write_bytes(bytes(data))
    assert key() == base

    extra = folder / "data" / "calibration" / "0" / "extra.png"
    shutil.copyfile(next((folder / "data" / "calibration" / "1").iterdir()), extra)
    assert key() != base
    extra.unlink()
    assert key() == base

    # An image list: the images it names count, not only the list's text.
    listed = text + '\n[evaluation]\nkind = "image_list"\npath = "data/test_list.txt"\n'
    with_list = key(listed)
    first_image = folder / "data" / (folder / "data" / "test_list.txt").read_text().split()[0]
    image = first_image.read_bytes()
    shutil.copyfile(next(p for p in first_image.parent.iterdir() if p != first_image), first_image)
    assert key(listed) != with_list
    first_image.write_bytes(image)
    assert key(listed) == with_list


def test_versions_in_the_key_are_the_engines():
    assert result_cache.versions() == workflow.versions()


def spec_and_result(tmp_path):
    """The example's spec and a stored-looking result whose outputs exist."""
    spec = load_spec(copy_example(tmp_path))
    out = tmp_path / "out"
    out.mkdir()
    result = {**SAMPLE, "output": {k: str(out / f"m.int8.{k}") for k in ("model", "weights", "result")}}
    for path in result["output"].values():
        Path(path).write_text("x")
    return spec, result


def test_an_entry_is_a_hit_only_while_it_reads_as_a_result(tmp_path):
    """A stored result comes back as the model; one that no longer validates is recalibrated."""
    spec, result = spec_and_result(tmp_path)
    cache = result_cache.ResultCache(tmp_path / "cache", session="s")
    first = cache.obtain(spec, lambda: result)
    assert not first.cached and isinstance(first.result, Result) and first.result.to_json() == result
    again = cache.obtain(spec, lambda: pytest.fail("an unchanged spec must not recalibrate"))
    assert again.cached and again.result == first.result
    assert again.info().hit and again.info().source.startswith("cached (")

    entry = tmp_path / "cache" / f"{again.key}.json"
    stored = json.loads(entry.read_text())
    del stored["result"]["throughput"]
    entry.write_text(json.dumps(stored))
    calls = []
    cache.obtain(spec, lambda: calls.append(1) or result)
    assert calls == [1]


def test_the_default_cache_folder_keeps_the_project_state_private(tmp_path):
    """Under `.int8wb/` (the plugin's default) the state folder is 0700 like the job store's; a
    cache the user points elsewhere (shared by a team) keeps the umask's modes."""
    import os
    import stat

    spec, result = spec_and_result(tmp_path)
    previous = os.umask(0o022)
    try:
        result_cache.ResultCache(tmp_path / ".int8wb" / "cache", session="s").obtain(spec, lambda: result)
        result_cache.ResultCache(tmp_path / "shared" / "cache", session="s").obtain(spec, lambda: result)
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / ".int8wb").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "shared").stat().st_mode) == 0o755
