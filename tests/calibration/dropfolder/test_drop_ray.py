"""The drop folder on a Ray cluster (`[drop] ray`): the same inbox, outbox and job store, the
workers Ray tasks. The cluster is conftest's `ray_cluster` (skipped without ray installed)."""
from __future__ import annotations

import json
import shutil

from drop_helpers import Box, new_box


def test_a_policy_with_ray_calibrates_dropped_models_on_the_cluster(tmp_path, monkeypatch, ray_cluster):
    box: Box = new_box(tmp_path, monkeypatch, extra='ray = "auto"')
    for seed, name in ((1, "a"), (2, "b")):
        m = box.model(name, seed=seed)
        for suffix in (".xml", ".bin"):
            shutil.copy(m.with_suffix(suffix), box.inbox / f"{name}{suffix}")
    lines: list[str] = []
    drop = box.watcher(real=True, jobs=2, echo=lines.append)
    try:
        assert drop.run(once=True, timeout=90) == 0, lines
    finally:
        drop.close()
    assert box.entries() == ["a", "b"] and box.calls_made() == []  # the real worker, not the stand-in
    assert any("2 job(s) at a time on Ray (auto)" in line for line in lines), lines
    for name in ("a", "b"):
        result = json.loads((box.outbox / name / f"{name}.int8.json").read_text())
        assert result["int8_layer_count"] > 0 and (box.outbox / name / f"{name}.int8.xml").is_file()
