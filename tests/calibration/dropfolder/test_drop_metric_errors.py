"""A custom metric that raises on one dropped model: that model fails with the located metric-error
in its reason, and the watcher goes on to calibrate the next model (the real worker runs both)."""
from __future__ import annotations

import json
import shutil

from conftest import wait_until
from drop_helpers import Running, complete_entry, new_box

METRIC = '''import numpy as np

class Top1:
    """Dataset level; refuses outputs of five classes."""
    def __init__(self):
        self.right = []
    def update(self, output, sample):
        if output.shape[-1] == 5:
            raise ValueError(f"five classes in {sample.path}")
        self.right.append(float(int(np.argmax(output)) == sample.label))
    def compute(self):
        return sum(self.right) / len(self.right)
    def per_sample(self):
        return self.right
'''


def drop(box, name: str, **kw) -> None:
    model = box.model(name, **kw)
    shutil.copy(model, box.inbox / model.name)
    shutil.copy(model.with_suffix(".bin"), box.inbox / model.with_suffix(".bin").name)


def test_a_raising_metric_fails_its_model_and_the_watcher_goes_on(tmp_path, monkeypatch):
    box = new_box(tmp_path, monkeypatch, extra='[accuracy]\nmetric = "custom"\ncustom = "../top1.py:Top1"\n')
    (tmp_path / "top1.py").write_text(METRIC)
    watcher = box.watcher(real=True, trust_custom_metrics=True)
    with Running(watcher, timeout=120):
        drop(box, "five", classes=5)
        reason = wait_until(lambda: (box.failed / "five" / "reason.txt").is_file()
                            and (box.failed / "five" / "reason.txt").read_text(), 90, "the failed entry")
        drop(box, "four", classes=4)
        wait_until(lambda: (box.outbox / "four").is_dir() and complete_entry(box.outbox / "four", "four"), 90,
                   "the next model calibrated")
    line = METRIC.splitlines().index('            raise ValueError(f"five classes in {sample.path}")') + 1
    assert f"{tmp_path / 'top1.py'}:{line}: metric 'Top1' raised ValueError: five classes in " in reason
    assert "data.npz[0] on sample" in reason
    assert box.entries() == ["four"] and box.entries(box.failed) == ["five"]
    result = json.loads((box.outbox / "four" / "four.int8.json").read_text())
    assert result["metric"] == "Top1" and result["drop_ci"][0] <= result["drop"] <= result["drop_ci"][1]
