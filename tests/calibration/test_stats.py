"""Confidence intervals on known cases: identical predictions, planted drops, speed rounds."""
from __future__ import annotations

import numpy as np
import pytest

from int8wb.calibration import stats


def test_identical_predictions_give_zero_width():
    s = np.array([1, 0, 1, 1, 0] * 60, dtype=float)
    assert stats.paired_drop_ci(s, s) == (0.0, 0.0)
    assert stats.drop_upper_bound(s, s) == 0.0


@pytest.mark.parametrize("k,n", [(3, 300), (15, 300), (30, 1000)])
def test_a_planted_drop_of_k_samples_in_n_is_inside_its_interval(k, n):
    fp32 = np.ones(n)
    int8 = fp32.copy()
    int8[:k] = 0  # INT8 gets k samples wrong that FP32 got right
    low, high = stats.paired_drop_ci(fp32, int8)
    assert 0 <= low < k / n < high <= 1
    # binomial standard error of k/n: the 95 % interval spans about ±2 of them
    se = np.sqrt(k / n * (1 - k / n) / n)
    assert high - low == pytest.approx(4 * se, rel=0.35)
    assert stats.drop_upper_bound(fp32, int8) < high  # one-sided 95 % sits inside the two-sided one


def test_the_direction_of_the_metric_sets_the_sign():
    fp32, int8 = np.zeros(100), np.zeros(100)
    int8[:10] = 1.0  # an error metric (lower is better): INT8 got worse on 10 samples
    low, high = stats.paired_drop_ci(fp32, int8, higher_is_better=False)
    assert low > 0 and high > low
    low_up, _ = stats.paired_drop_ci(fp32, int8, higher_is_better=True)
    assert low_up < 0


def test_changes_both_ways_cancel_in_the_point_but_not_in_the_interval():
    fp32, int8 = np.ones(200), np.ones(200)
    int8[:10] = 0
    fp32[10:20] = 0  # INT8 fixes 10, breaks 10: drop 0, but not known to be 0
    low, high = stats.paired_drop_ci(fp32, int8)
    assert low < 0 < high and high > 0.02


def test_intervals_are_reproducible_and_memory_bounded():
    rng = np.random.default_rng(1)
    fp32, int8 = rng.random(50_000), rng.random(50_000)
    assert stats.paired_drop_ci(fp32, int8) == stats.paired_drop_ci(fp32, int8)


def test_speed_ratio_and_verdicts():
    int8 = [200, 210, 190, 205, 198]
    fp32 = [100, 104, 97, 101, 99]
    value, (low, high) = stats.ratio_ci(int8, fp32)
    assert 1.9 < low <= value <= high < 2.2 and stats.speed_verdict((low, high)) == "faster"
    assert stats.speed_verdict(stats.ratio_ci(fp32, int8)[1]) == "slower"
    noisy = stats.ratio_ci([100, 150, 80, 120, 70], [110, 90, 130, 100, 95])[1]
    assert noisy[0] < 1 < noisy[1] and stats.speed_verdict(noisy) == "no measurable difference"
    assert stats.ratio_ci([3.0], [1.5]) == (2.0, (2.0, 2.0))


def test_budget_verdicts():
    assert stats.budget_verdict((0.0, 0.004), 0.005) == "met"
    assert stats.budget_verdict((0.006, 0.02), 0.005) == "exceeded"
    assert stats.budget_verdict((0.001, 0.009), 0.005) == "undecided"


def test_what_a_validation_set_can_resolve():
    assert stats.resolvable_drop(300) == pytest.approx(0.00999, abs=1e-4)  # about 3 / n
    assert stats.resolvable_drop(300) > 0.005 and stats.resolvable_drop(1000) < 0.005
    assert stats.samples_needed(0.005) == 600 and stats.resolvable_drop(600) <= 0.005


def lost(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.ones(n), np.r_[np.zeros(k), np.ones(n - k)]


@pytest.mark.parametrize("n, budget", [(300, 0.01), (540, 0.01), (600, 0.01), (1200, 0.01), (1200, 0.005)])
def test_how_many_lost_samples_a_budget_accepts_is_the_acceptance_rule_s(n, budget):
    """The count the `budget-tight` warning names is where the bootstrap bound crosses the budget."""
    k = stats.losses_accepted(n, budget)
    assert stats.drop_upper_bound(*lost(n, k)) <= budget + 1e-12 < stats.drop_upper_bound(*lost(n, k + 1))


def test_samples_with_room_let_a_model_lose_half_the_budget():
    for budget in (0.02, 0.01, 0.005):
        n = stats.samples_with_room(budget)
        assert stats.drop_upper_bound(*lost(n, int(np.ceil(n * budget / 2)))) <= budget + 1e-12
        assert stats.drop_upper_bound(*lost(n - 1, int(np.ceil((n - 1) * budget / 2)))) > budget
    assert stats.samples_with_room(0.01) == 600 and stats.losses_accepted(300, 0.01) == 1


def test_speed_intervals_cover_the_true_ratio_as_often_as_they_claim():
    """Five rounds on a noisy machine (each round ±30 %, shared by both variants of a round less
    so): the 95 % interval must hold the true ratio about 95 % of the time, not 80 %."""
    rng = np.random.default_rng(7)
    true, hits, trials = 1.5, 0, 600
    for _ in range(trials):
        machine = rng.lognormal(0, 0.3, 5)  # a busy spell slows both variants of a round
        int8 = true * 100 * machine * rng.lognormal(0, 0.15, 5)
        fp32 = 100 * machine * rng.lognormal(0, 0.15, 5)
        low, high = stats.ratio_ci(int8, fp32)[1]
        hits += low <= true <= high
    assert 0.92 <= hits / trials <= 0.98


# -- a ratio of sums: (numerator, denominator) pairs per sample -----------------------------------

def pairs(numerators, denominators) -> np.ndarray:
    return np.stack([np.asarray(numerators, dtype=float), np.asarray(denominators, dtype=float)], axis=1)


def test_identical_pairs_give_zero_width():
    rng = np.random.default_rng(3)
    p = pairs(rng.integers(0, 3, 200), rng.integers(1, 12, 200))
    assert stats.paired_drop_ci(p, p.copy(), higher_is_better=False) == (0.0, 0.0)


@pytest.mark.parametrize("k,n", [(5, 100), (20, 400)])
def test_a_planted_ratio_drop_of_k_samples_in_n_is_inside_its_interval(k, n):
    # A corpus error rate over words of 4..11 characters: INT8 makes one more edit on k words.
    lengths = 4 + np.arange(n) % 8
    fp32 = pairs(np.zeros(n), lengths)
    int8 = fp32.copy()
    int8[:k, 0] = 1
    planted = k / lengths.sum()
    assert stats.statistic(int8) - stats.statistic(fp32) == pytest.approx(planted)
    low, high = stats.paired_drop_ci(fp32, int8, higher_is_better=False)
    assert 0 < low < planted < high < 3 * planted
    # lower is better: the same pairs read as a higher-is-better ratio give the mirrored interval
    assert stats.paired_drop_ci(fp32, int8, higher_is_better=True) == pytest.approx((-high, -low))


def test_with_equal_denominators_the_ratio_is_the_mean_and_so_is_its_interval():
    rng = np.random.default_rng(5)
    a, b = rng.integers(0, 2, 300).astype(float), rng.integers(0, 2, 300).astype(float)
    ratio = stats.paired_drop_ci(pairs(a, np.full(300, 4.0)), pairs(b, np.full(300, 4.0)))
    assert ratio == pytest.approx(stats.paired_drop_ci(a / 4, b / 4))


def test_the_statistic_of_pairs_is_a_ratio_of_sums_not_a_mean_of_ratios():
    p = pairs([1, 0, 0], [1, 9, 10])  # one error in a 1-character word, none in 19 characters
    assert stats.statistic(p) == pytest.approx(1 / 20)
    assert stats.statistic(np.array([0.5, 1.0])) == 0.75
    with pytest.raises(ValueError):
        stats.paired_drop_ci(np.ones((4, 3)), np.ones((4, 3)))
