"""A validation ends as soon as its candidate can no longer pass: the search decides exactly as with
full validations, on fewer samples (calibration/methods/rejection.py)."""
import json
from pathlib import Path

import numpy as np
import pytest

from int8wb.calibration.evaluation import Evaluation
from int8wb.calibration.methods import accuracy_aware
from int8wb.calibration.methods.rejection import Rejection
from int8wb.calibration.metrics import TopK
from int8wb.calibration.workflow import calibrate
from conftest import outlier_mlp
from test_accuracy_aware import write_spec


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """AccuracyAware on an MLP with two damaging layers, with and without early rejection."""
    folder = outlier_mlp(tmp_path_factory.mktemp("twice"), twice=True)
    results = {}
    for early in (True, False):
        accuracy_aware.EARLY_REJECTION = early
        try:
            results[early] = calibrate(write_spec(folder, f"early-{early}".lower(),
                                                  'method = "accuracy_aware"\nmax_drop = 0.005'))
        finally:
            accuracy_aware.EARLY_REJECTION = True
    return results


def test_the_search_decides_the_same_on_fewer_samples(both):
    early, full = both[True], both[False]
    decisions = lambda r: [(p["groups"], p["ok"]) for p in r["accuracy_aware"]["probes"]]  # noqa: E731
    assert decisions(early) == decisions(full) and len(decisions(full)) >= 3
    assert [f["name"] for f in early["fp32_layers"]] == [f["name"] for f in full["fp32_layers"]]
    assert Path(early["output"]["weights"]).read_bytes() == Path(full["output"]["weights"]).read_bytes()
    assert early["int8"]["accuracy"] == full["int8"]["accuracy"]
    assert full["search"]["stopped_early"] == 0 and early["search"]["stopped_early"] >= 1
    assert early["search"]["samples_run"] < full["search"]["samples_run"]
    for row, whole in zip(early["accuracy_aware"]["probes"], full["accuracy_aware"]["probes"]):
        if row.get("stopped_after"):  # its best case already failed, and the whole validation agrees
            assert not whole["ok"] and row["drop_bound"] > 0.005 and row["accuracy"] >= whole["accuracy"]
        else:
            assert row["accuracy"] == whole["accuracy"]


def test_the_result_says_which_validations_ended_early(both):
    rows = both[True]["accuracy_aware"]["probes"]
    stopped = [r for r in rows if r.get("stopped_after")]
    assert stopped and all(0 < r["stopped_after"] < 250 for r in stopped)
    schema = json.loads((Path(accuracy_aware.__file__).parents[1] / "schema/result.schema.json").read_text())
    assert "stopped_after" in json.dumps(schema) and "samples_run" in json.dumps(schema)


def test_samples_that_can_decide_come_first():
    base = Evaluation(4 / 6, np.array([1, 1, 0, 1, 1, 1.0]))
    first = Evaluation(2 / 6, np.array([1, 0, 0, 1, 0, 1.0]))
    rejection = Rejection(TopK(1), base, first, lambda ev: (False, 1.0))
    # FP32's miss (the candidate might gain there), then INT8's damage, then the rest
    assert rejection.order == [2, 1, 4, 0, 3, 5]


def test_a_candidate_is_hopeless_once_its_best_case_fails():
    base = Evaluation(1.0, np.ones(10))
    judged = []

    def judge(ev):  # at most one sample worse than FP32
        judged.append(ev.accuracy)
        return ev.accuracy >= 0.9, 1.0 - ev.accuracy

    rejection = Rejection(TopK(1), base, Evaluation(0.7, np.array([0, 0, 0, 1, 1, 1, 1, 1, 1, 1.0])), judge)
    scores, seen = np.zeros(10), np.zeros(10, dtype=bool)
    for slot, score, verdict in ((0, 1.0, False), (1, 0.0, False), (2, 0.0, True)):
        scores[slot], seen[slot] = score, True
        assert rejection.hopeless(scores, seen, slot) is verdict
    assert judged == [0.9, 0.8]  # judged only when a sample fell short of the best
    assert rejection.condemned == (0.8, pytest.approx(0.2))


def test_no_rejection_without_a_best_score():
    class NoBest(TopK):
        best = None

    base = Evaluation(1.0, np.ones(4))
    assert Rejection(NoBest(1), base, Evaluation(0.5, np.array([1, 0, 1, 0.0])), lambda ev: (True, 0.0)).order is None


def test_a_custom_metric_may_declare_its_best_score():
    from int8wb.calibration.custom_metrics import Custom

    def exact(output, label):
        return 1.0

    assert Custom(exact, "exact", True, True).best is None
    exact.best = 1
    assert Custom(exact, "exact", True, True).best == 1.0
    exact.best = "high"
    assert Custom(exact, "exact", True, True).best is None


def test_samples_earlier_candidates_lost_come_next():
    """A candidate at the budget's edge fails on a fragile sample all-INT8 never lost: once any
    candidate has lost it, the next ones run it right after FP32's own misses."""
    base = Evaluation(4 / 6, np.array([1, 1, 0, 1, 1, 1.0]))
    first = Evaluation(2 / 6, np.array([1, 0, 0, 1, 0, 1.0]))
    rejection = Rejection(TopK(1), base, first, lambda ev: (True, 0.0))
    assert rejection.order == [2, 1, 4, 0, 3, 5]
    scores, seen = np.array([1, 1, 0, 1, 1, 0.0]), np.ones(6, dtype=bool)
    rejection.hopeless(scores, seen, 2)  # missed as FP32 misses it: no loss
    assert rejection.order == [2, 1, 4, 0, 3, 5]
    rejection.hopeless(scores, seen, 5)  # lost: all-INT8 kept it
    assert rejection.order == [2, 5, 1, 4, 0, 3]
    scores[4] = 0.0
    for _ in range(2):
        rejection.hopeless(scores, seen, 4)  # lost twice: the most fragile first
    assert rejection.order == [2, 4, 5, 1, 0, 3]
