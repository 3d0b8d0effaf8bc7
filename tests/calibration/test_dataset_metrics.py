"""Dataset-level custom metrics: their kind read from the code, one thread in dataset order with
outputs they may keep, what their samples carry, per_sample() against compute(), and no interval
without per_sample()."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import openvino as ov
import pytest
from PIL import Image

from int8wb.calibration import CalibrationError, inspect_model, load_spec
from int8wb.calibration.custom_metrics import Custom, DatasetMetric
from int8wb.calibration.datasets import open_dataset
from int8wb.calibration.evaluation import evaluate
from int8wb.calibration.metrics import TopK, make_metric
from conftest import copy_example

METRICS = '''import threading, time
import numpy as np

made = []

class Recorder:
    """Top-1 over the dataset, keeping everything it is given."""
    def __init__(self):
        self.samples, self.outputs, self.threads, self.right = [], [], set(), []
        made.append(self)
    def update(self, output, sample):
        time.sleep(0.001)  # slower than inference: the reorder buffer fills up to its bound
        self.threads.add(threading.get_ident())
        self.samples.append((sample.index, sample.path, sample.label, sample.split, sample.original_size))
        self.outputs.append(output)
        self.right.append(float(int(np.argmax(output)) == sample.label))
    def compute(self):
        return sum(self.right) / len(self.right)
    def per_sample(self):
        return self.right

def make_counter():
    class Counter:
        n = 0
        def update(self, output, sample):
            self.n += 1
        def compute(self):
            return float(self.n)
    return Counter()

def top1(output, label):
    return float(int(np.argmax(output)) == label)

def not_a_factory():
    return 0.5

class Skewed(Recorder):
    def per_sample(self):  # a mean that is not what compute() gives
        return [0.0] * len(self.right)

class Silent(Recorder):
    per_sample = None

class Misshapen(Recorder):
    def per_sample(self):
        return [(1.0, 2.0, 3.0)] * len(self.right)

class Raising(Recorder):
    def update(self, output, sample):
        if len(self.right) == 7:
            raise KeyError("no such word")
        super().update(output, sample)

class Failing(Recorder):
    def compute(self):
        raise ZeroDivisionError("empty corpus")
'''


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    spec_path = copy_example(tmp_path_factory.mktemp("metrics"))
    (spec_path.parent / "metrics.py").write_text(METRICS)
    spec = load_spec(spec_path)
    validation = open_dataset(spec, inspect_model(spec.model_path), "validation")
    compiled = ov.Core().compile_model(str(spec.model_path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return spec_path, validation, compiled


def metric(spec_path, name: str, **accuracy):
    spec = load_spec(spec_path)
    spec.accuracy.metric, spec.accuracy.custom = "custom", f"metrics.py:{name}"
    for key, value in accuracy.items():
        setattr(spec.accuracy, key, value)
    return make_metric(spec, trusted=True)


def test_the_kind_is_read_from_the_code(setup):
    spec_path = setup[0]
    assert isinstance(metric(spec_path, "Recorder"), DatasetMetric)      # a class
    assert isinstance(metric(spec_path, "make_counter"), DatasetMetric)  # a function of no arguments
    assert isinstance(metric(spec_path, "top1"), Custom) and not isinstance(metric(spec_path, "top1"), DatasetMetric)
    with pytest.raises(CalibrationError) as err:
        metric(spec_path, "not_a_factory")
    (p,) = err.value.problems
    assert (p.rule, p.key, p.path) == ("metric-kind", "accuracy.custom", str(spec_path))
    assert "update() and compute()" in p.message and "(float)" in p.message


def test_one_thread_dataset_order_outputs_of_their_own(setup):
    spec_path, validation, compiled = setup
    indices = list(range(0, len(validation), 3))
    recorder = metric(spec_path, "Recorder")
    ev = evaluate(compiled, validation, indices, recorder)
    (state,) = recorder.factory.__init__.__globals__["made"][-1:]
    assert state.threads == {threading.get_ident()}
    assert [s[0] for s in state.samples] == indices
    request = compiled.create_infer_request()
    for i, kept in zip(indices, state.outputs):  # each kept output is still its own sample's
        assert np.array_equal(kept, request.infer(validation.load(i), share_inputs=False)[0])
    # the same figures as the built-in top-1, and per_sample() gives its scores
    top1 = evaluate(compiled, validation, indices, TopK(1))
    assert ev.accuracy == pytest.approx(top1.accuracy) and np.array_equal(ev.scores, top1.scores)
    assert ev.warnings == []


def test_a_sample_carries_where_it_comes_from(setup):
    spec_path, validation, compiled = setup
    recorder = metric(spec_path, "Recorder")
    evaluate(compiled, validation, [5, 2], recorder)
    state = recorder.factory.__init__.__globals__["made"][-1]
    for (index, path, label, split, size), i in zip(state.samples, [5, 2]):
        entry = validation.entries[i]
        width, height = Image.open(entry.source).size
        assert (index, path, label, split, size) == (i, entry.source, entry.label, "validation", (height, width))


def test_a_fresh_object_for_every_pass(setup):
    spec_path, validation, compiled = setup
    counter = metric(spec_path, "make_counter")
    assert [evaluate(compiled, validation, list(range(n)), counter).accuracy for n in (4, 6)] == [4.0, 6.0]


def test_per_sample_that_does_not_add_up_to_compute_is_a_located_warning(setup):
    spec_path, validation, compiled = setup
    ev = evaluate(compiled, validation, list(range(30)), metric(spec_path, "Skewed"))
    (w,) = ev.warnings
    assert (w.rule, w.severity, w.key, w.path) == ("metric-per-sample", "warning", "accuracy.custom", str(spec_path))
    assert "describe per_sample()'s statistic" in w.message and "30 validation samples" in w.message
    assert ev.accuracy > 0.5 and np.array_equal(ev.scores, np.zeros(30))


def test_without_per_sample_there_are_no_scores(setup):
    spec_path, validation, compiled = setup
    ev = evaluate(compiled, validation, list(range(10)), metric(spec_path, "Silent"))
    assert ev.scores is None and ev.warnings == [] and 0 < ev.accuracy <= 1


def test_per_sample_of_the_wrong_shape_is_a_located_error(setup):
    spec_path, validation, compiled = setup
    with pytest.raises(CalibrationError) as err:
        evaluate(compiled, validation, list(range(10)), metric(spec_path, "Misshapen"))
    (p,) = err.value.problems
    assert (p.rule, p.key) == ("metric-error", "accuracy.custom") and "shape [10, 3]" in p.message


@pytest.mark.parametrize("name,raising,where", [("Raising", "raise KeyError", "on sample "),
                                                 ("Failing", "raise ZeroDivisionError", "in compute() after 12 ")])
def test_update_or_compute_that_raises_is_located_at_its_line(setup, name, raising, where):
    spec_path, validation, compiled = setup
    line = next(n for n, text in enumerate(METRICS.splitlines(), 1) if raising in text)
    with pytest.raises(CalibrationError) as err:
        evaluate(compiled, validation, list(range(12)), metric(spec_path, name))
    (p,) = err.value.problems
    assert (p.rule, p.path, p.line) == ("metric-error", str(spec_path.parent / "metrics.py"), line)
    assert where in p.message and p.message.startswith(f"metric {name!r} raised ")


def test_without_per_sample_the_run_says_there_is_no_interval(tmp_path):
    """AccuracyAware accepts on the measured drop and says so; the terminal and the report say why
    the drop has no interval."""
    spec_path = copy_example(tmp_path)
    (spec_path.parent / "metrics.py").write_text(METRICS)
    text = spec_path.read_text().replace('metric = "top1"', 'metric = "custom"\ncustom = "metrics.py:Silent"')
    spec_path.write_text(text.replace('method = "default"', 'method = "accuracy_aware"\nmax_drop = 0.05'))
    run = subprocess.run([sys.executable, "-m", "int8wb.editor_client.cli", "calibrate", str(spec_path), "--trust"],
                         capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "200"})
    assert run.returncode == 0, run.stderr[-3000:]
    assert "(no interval: the metric gives no per_sample())" in run.stdout
    result = json.loads(next((spec_path.parent / "calibrated").glob("*.json")).read_text())
    assert result["drop_ci"] is None and result["no_interval"] == "the metric gives no per_sample()"
    (w,) = result["warnings"]
    assert (w["rule"], w["severity"], w["key"], w["path"]) == ("metric-no-interval", "warning", "accuracy.custom",
                                                               str(spec_path))
    assert "accepted on the measured drop" in w["message"] and any(w["message"] in n for n in result["notes"])
    assert result["budget"]["bound"] == pytest.approx(result["budget"]["measured"], abs=1e-6)
    assert "as measured" in result["budget"]["guarantee"]
    report = Path(result["output"]["report"]).read_text()
    assert "no interval: the metric gives no per_sample()" in report
