"""Shared fixtures: real IR models built with OpenVINO's opset API and the shipped example."""
from __future__ import annotations

import shutil
import warnings
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


OUTLIER = 400.0  # one feature scaled up: per-tensor INT8 steps then erase all the others


def outlier_mlp(folder: Path, twice: bool = False) -> Path:
    """An MLP trained on scikit-learn's digits, rewritten so that FP32 is unchanged but the
    input of its second MatMul holds one outlier feature: a real case where Default fails.
    `twice`: the hidden layer holds an outlier unit too, so the logits MatMul fails as well."""
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlp = MLPClassifier(hidden_layer_sizes=(32,), max_iter=300, random_state=0).fit(x[:1000], y[:1000])
    w1, b1 = mlp.coefs_[0].astype(np.float32), mlp.intercepts_[0].astype(np.float32)
    w2, b2 = mlp.coefs_[1].astype(np.float32), mlp.intercepts_[1].astype(np.float32)
    scale = np.ones(64, np.float32)
    scale[np.argmax(x[:1000].mean(axis=0))] = OUTLIER
    inp = ops.parameter([-1, 64], np.float32, name="x")
    spread = ops.matmul(inp, ops.constant(np.diag(scale)), False, False)             # FP32: exact rescale
    spread.set_friendly_name("spread")
    first = ops.matmul(spread, ops.constant(w1 / scale[:, None]), False, False)      # the outlier is its input
    first.set_friendly_name("hidden_matmul")
    hidden = ops.relu(ops.add(first, ops.constant(b1)))
    if twice:  # the busiest hidden unit scaled up, the logits' weights scaled down: FP32 unchanged
        scale2 = np.ones(len(b1), np.float32)
        scale2[int(np.argmax(np.abs(w2).sum(axis=1)))] = OUTLIER
        hidden = ops.matmul(hidden, ops.constant(np.diag(scale2)), False, False)
        hidden.set_friendly_name("spread_hidden")
        w2 = w2 / scale2[:, None]
    second = ops.matmul(hidden, ops.constant(w2), False, False)
    second.set_friendly_name("logits_matmul")
    logits = ops.add(second, ops.constant(b2))
    logits.output(0).get_tensor().set_names({"logits"})
    ov.save_model(ov.Model([logits], [inp], "mlp"), str(folder / "mlp.xml"), compress_to_fp16=False)
    np.savez(folder / "calibration.npz", x=x[1000:1300], labels=y[1000:1300])
    np.savez(folder / "validation.npz", x=x[1300:1550], labels=y[1300:1550])
    np.savez(folder / "heldout.npz", x=x[1550:], labels=y[1550:])
    return folder


def onnx_net(path):
    """conv-relu-conv-relu-global pool-gemm, as an exporter writes it."""
    import onnx  # only the tests that build ONNX models need it
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array((rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32), "w1"),
             numpy_helper.from_array((rng.standard_normal((16, 8, 3, 3)) * 0.3).astype(np.float32), "w2"),
             numpy_helper.from_array(rng.standard_normal((16, 4)).astype(np.float32), "w3")]
    nodes = [helper.make_node("Conv", ["image", "w1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("GlobalAveragePool", ["r2"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("MatMul", ["f", "w3"], ["logits"])]
    graph = helper.make_graph(nodes, "net", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


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


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray cluster of 2 CPUs for the Ray back end's tests, one per test process (it takes
    seconds to start); skipped without ray installed."""
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'int8-workbench[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    from ray._private import worker  # where this cluster keeps its logs and sockets

    session = worker._global_node.get_session_dir_path()
    yield ray
    ray.shutdown()
    shutil.rmtree(session, ignore_errors=True)  # Ray keeps every session's folder under /tmp/ray: not ours to leave


def example_result(example: Path, spec_name: str, output: Path, trust: bool = False, **calibration) -> dict:
    """A shipped example's spec calibrated into `output` (outside the example's folder, so trusted
    there), after its prepare.py; `calibration`: [calibration] keys to override."""
    import subprocess
    import sys

    from int8wb.calibration import load_spec
    from int8wb.calibration.trust import set_trusted
    from int8wb.calibration.workflow import calibrate

    subprocess.run([sys.executable, str(example / "prepare.py")], check=True)
    spec = load_spec(example / spec_name)
    spec.output.dir = str(output)
    set_trusted(output)
    spec.inference.duration = 0.5
    for key, value in calibration.items():
        setattr(spec.calibration, key, value)
    return calibrate(spec, trust_custom_metrics=trust)
