"""Shared fixtures: real IR models built with OpenVINO's opset API and the shipped example."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import openvino as ov
import pytest
from openvino import opset13 as ops

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "digits"


def conv_net(channels: int = 3, classes: int = 4, seed: int = 0, fp16: bool = False) -> ov.Model:
    """A small real conv classifier: conv-relu-conv-relu-pool-matmul."""
    rng = np.random.default_rng(seed)
    et = np.float16 if fp16 else np.float32
    x = ops.parameter([-1, channels, 16, 16], et, name="image")
    w1 = ops.constant(rng.standard_normal((8, channels, 3, 3)).astype(et) * 0.3)
    h = ops.relu(ops.convolution(x, w1, [1, 1], [1, 1], [1, 1], [1, 1]))
    w2 = ops.constant(rng.standard_normal((16, 8, 3, 3)).astype(et) * 0.3)
    h = ops.relu(ops.convolution(h, w2, [2, 2], [1, 1], [1, 1], [1, 1]))
    h = ops.reduce_mean(h, ops.constant(np.array([2, 3], np.int64)), keep_dims=False)
    w3 = ops.constant(rng.standard_normal((16, classes)).astype(et))
    y = ops.matmul(h, w3, False, False)
    y.output(0).get_tensor().set_names({"logits"})
    return ov.Model([y], [x], "convnet")


def save(model: ov.Model, path: Path, compress_to_fp16: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(path), compress_to_fp16=compress_to_fp16)
    return path


@pytest.fixture
def model_xml(tmp_path) -> Path:
    return save(conv_net(), tmp_path / "model" / "model.xml")


def copy_example(folder: Path) -> Path:
    """A private copy of the shipped example with a short speed measurement; returns the spec."""
    dest = folder / "digits"
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("calibrated", "*.py", "requirements*"))
    spec = dest / "digits.calibration.toml"
    spec.write_text(spec.read_text().replace("duration = 3.0", "duration = 0.3"))
    return spec


@pytest.fixture
def example(tmp_path) -> Path:
    return copy_example(tmp_path)


def wait_until(pred, timeout: float = 30.0, what: str = "condition"):
    """Polls `pred` until it is truthy (returned) or `timeout` seconds pass (AssertionError)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def tree(folder: Path) -> dict[str, int]:
    """Every file below `folder` with its size, to prove nothing was written or changed."""
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(autouse=True)
def private_trust_list(tmp_path_factory, monkeypatch):
    """Every test (and every process it starts) reads and writes its own list of trusted folders,
    never the user's, and starts with none trusted."""
    monkeypatch.setenv("INT8WB_TRUST_FILE", str(tmp_path_factory.mktemp("trust") / "trusted-folders.json"))
    monkeypatch.delenv("INT8WB_TRUST", raising=False)
