"""Statistics collected with requests in flight give the INT8 model NNCF's own loop gives, bit for
bit; when NNCF's internals do not match, NNCF's own loop runs and the model is the same."""
from __future__ import annotations

import numpy as np
import openvino as ov
import pytest

from int8wb.calibration import inspect_model, load_spec
from int8wb.calibration.datasets import open_dataset
from int8wb.calibration.methods import statistics
from int8wb.calibration.methods.default import quantize_default


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    from conftest import copy_example

    spec = load_spec(copy_example(tmp_path_factory.mktemp("stats")))
    dataset = open_dataset(spec, inspect_model(spec.model_path))
    return spec, dataset, dataset.subset_indices()[:120]


def constants(model: ov.Model) -> list[np.ndarray]:
    """Every constant in graph order (generated names differ between runs; the graph does not)."""
    return [op.get_data().copy() for op in model.get_ordered_ops() if op.get_type_name() == "Constant"]


def quantized(spec, dataset, indices) -> ov.Model:
    return quantize_default(ov.Core().read_model(str(spec.model_path)), spec, dataset, indices)


def test_in_flight_and_nncf_loop_give_bit_identical_models(digits, monkeypatch):
    calls = []
    real = statistics._collect

    def spy(self, model, graph, fallback):
        calls.append(model.get_friendly_name())
        return real(self, model, graph, fallback)

    monkeypatch.setattr(statistics, "_collect", spy)
    assert statistics.unsupported() is None
    fast = quantized(*digits)
    assert calls, "the in-flight loop did not run"
    monkeypatch.setattr(statistics, "unsupported", lambda cls=None: "forced: NNCF's own loop")
    calls.clear()
    own = quantized(*digits)
    assert calls == []
    a, b = constants(fast), constants(own)
    assert len(a) == len(b) and sum(op.get_type_name() == "FakeQuantize" for op in fast.get_ops()) > 0
    assert all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(a, b))
    assert statistics.aggregator().collect_statistics is not spy  # the swap ends with its block


def test_the_guard_names_what_does_not_match():
    class Renamed:  # an NNCF whose aggregator changed under us
        def _get_merged_statistic_points(self, statistic_points, model, graph): ...
        def _get_transformation_layout_extra_outputs(self, statistic_points): ...
        def _process_outputs(self, outputs): ...
        def _get_iterations_number(self): ...

    assert statistics.unsupported(Renamed) == "NNCF's statistics aggregator has no _register_statistics()"
    Renamed._register_statistics = lambda self, outputs, points: None
    assert statistics.unsupported(Renamed) == ("NNCF's _register_statistics() takes (outputs, points), "
                                               "not (outputs, statistic_points)")
    Renamed._register_statistics = lambda self, outputs, statistic_points: None
    assert statistics.unsupported(Renamed) is None


def test_the_swap_lasts_as_long_as_its_block(monkeypatch):
    own = statistics.aggregator().collect_statistics
    with statistics.in_flight() as used:
        assert used is True and statistics.aggregator().collect_statistics is not own
    assert statistics.aggregator().collect_statistics is own
    monkeypatch.setattr(statistics, "unsupported", lambda cls=None: "forced")
    with statistics.in_flight() as used:
        assert used is False and statistics.aggregator().collect_statistics is own
