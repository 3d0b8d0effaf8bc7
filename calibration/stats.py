"""How sure a figure is: confidence intervals for accuracy drops and speed ratios, and verdicts.

A drop is a mean of per-sample differences between two models on the same samples, so its interval
comes from a paired bootstrap over the samples (identical predictions give [0, 0]). A speed-up is
measured in rounds that run every variant under the same machine conditions (A B C, C B A, ...), so
its interval is a Student-t interval over rounds of the mean log ratio (a geometric mean). The
bootstrap's resamples are seeded: the same figures always give the same interval.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# numpy and scipy are imported where the figures are computed: the language server imports this
# module for its verdicts alone and stays small (scipy.stats alone is 70 MB).

CONFIDENCE = 0.95
RESAMPLES = 2000
_CHUNK = 1 << 22  # index draws per bootstrap step: bounded memory for large validation sets


def _bootstrap_means(values: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    import numpy as np

    rng = np.random.default_rng(seed)
    n = len(values)
    rows = max(1, min(resamples, _CHUNK // max(n, 1)))
    out = []
    for start in range(0, resamples, rows):
        idx = rng.integers(0, n, size=(min(rows, resamples - start), n))
        out.append(values[idx].mean(axis=1))
    return np.concatenate(out)


def _bounds(draws: np.ndarray, confidence: float) -> tuple[float, float]:
    import numpy as np

    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return float(low), float(high)


def paired_drop_ci(fp32: np.ndarray, int8: np.ndarray, higher_is_better: bool = True,
                   confidence: float = CONFIDENCE, resamples: int = RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """Two-sided interval of the mean drop (positive: INT8 worse) over paired per-sample scores."""
    import numpy as np

    fp32, int8 = np.asarray(fp32, dtype=np.float64), np.asarray(int8, dtype=np.float64)
    if fp32.shape != int8.shape or fp32.size == 0:
        raise ValueError("paired scores must have the same, non-zero length")
    diff = fp32 - int8 if higher_is_better else int8 - fp32
    if not diff.any():
        return 0.0, 0.0
    return _bounds(_bootstrap_means(diff, resamples, seed), confidence)


def drop_upper_bound(fp32: np.ndarray, int8: np.ndarray, higher_is_better: bool = True,
                     confidence: float = CONFIDENCE, seed: int = 0) -> float:
    """One-sided upper bound of the drop at `confidence` (the drop is at most this, that sure)."""
    return paired_drop_ci(fp32, int8, higher_is_better, 2 * confidence - 1, seed=seed)[1]


def ratio_ci(numerator: list[float], denominator: list[float],
             confidence: float = CONFIDENCE) -> tuple[float, tuple[float, float]]:
    """Geometric mean of per-round ratios, and its Student-t interval over rounds. With a handful
    of rounds a bootstrap's interval is too narrow (it sees only the spread the few rounds show);
    t's wider tails give intervals that overlap from one run to the next, as they should."""
    import numpy as np
    from scipy.stats import t as student_t

    a, b = np.asarray(numerator, dtype=np.float64), np.asarray(denominator, dtype=np.float64)
    if a.shape != b.shape or a.size == 0 or (a <= 0).any() or (b <= 0).any():
        raise ValueError("rounds must pair up and be positive")
    logs = np.log(a / b)
    mean = float(logs.mean())
    if len(logs) < 2:
        return math.exp(mean), (math.exp(mean), math.exp(mean))
    half = float(student_t.ppf(0.5 + confidence / 2, len(logs) - 1)) * float(logs.std(ddof=1)) / math.sqrt(len(logs))
    return math.exp(mean), (math.exp(mean - half), math.exp(mean + half))


def speed_verdict(ci: tuple[float, float] | list[float]) -> str:
    """"faster" or "slower" only when the interval excludes 1."""
    low, high = ci
    return "faster" if low > 1 else "slower" if high < 1 else "no measurable difference"


def budget_verdict(ci: tuple[float, float] | list[float], max_drop: float, tolerance: float = 1e-9) -> str:
    """"met" when the whole interval is within the budget, "exceeded" when all of it is over,
    "undecided" in between: the data cannot tell."""
    low, high = ci
    if high <= max_drop + tolerance:
        return "met"
    if low > max_drop + tolerance:
        return "exceeded"
    return "undecided"


def resolvable_drop(samples: int, confidence: float = CONFIDENCE) -> float:
    """The smallest budget `samples` paired samples can vouch for: with no sample changed at all,
    the rate of changed samples is still only known to be below -ln(1 - confidence) / n (the "rule
    of three" at 95 %). A budget below that cannot be shown to hold, whatever the model does."""
    return -math.log(1.0 - confidence) / max(samples, 1)


def samples_needed(max_drop: float, confidence: float = CONFIDENCE) -> int:
    return math.ceil(-math.log(1.0 - confidence) / max_drop) if max_drop > 0 else 0
