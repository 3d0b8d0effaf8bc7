"""How sure a figure is: confidence intervals for accuracy drops and speed ratios, and verdicts.

A drop is a mean of per-sample differences between two models on the same samples, so its interval
comes from a paired bootstrap over the samples (identical predictions give [0, 0]); a corpus
statistic given as (numerator, denominator) pairs per sample (a character error rate, an F1) is
recomputed as a ratio of sums on each resample, for both models on the same resample; a statistic no
per-sample figure adds up to (a mean average precision) is recomputed by the metric itself on each
resample (`Resampled`), again for both models on the same resampled samples. A speed-up is
measured in rounds that run every variant under the same machine conditions (A B C, C B A, ...), so
its interval is a Student-t interval over rounds of the mean log ratio (a geometric mean). The
bootstrap's resamples are seeded: the same figures always give the same interval.
"""
from __future__ import annotations

import math
from statistics import NormalDist
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import numpy as np

# numpy and scipy are imported where the figures are computed: the language server imports this
# module for its verdicts alone and stays small (scipy.stats alone is 70 MB).

CONFIDENCE = 0.95
RESAMPLES = 2000
_CHUNK = 1 << 22  # index draws per bootstrap step: bounded memory for large validation sets


class Resampled:
    """Per-sample scores of a metric that no per-sample figure adds up to: `of(rows)` recomputes the
    metric on each row of sample indices [resamples, n] (a bootstrap resample, repeats included)."""

    def __init__(self, size: int, of: Callable[["np.ndarray"], "np.ndarray"]):
        self.size, self.of = size, of
        self.drawn: dict[tuple[int, int], "np.ndarray"] = {}

    @classmethod
    def weighted(cls, size: int, of: Callable[["np.ndarray"], "np.ndarray"]) -> "Resampled":
        """The metric recomputed from how many times each sample is taken: `of(counts)` gets
        [resamples, n] float counts (whole numbers), the form a metric summing per-sample tables
        (matched boxes, pixel counts) weighs them with."""
        return cls(size, lambda rows: of(taken(rows, size)))

    def __len__(self) -> int:
        return self.size

    def on_draws(self, resamples: int, seed: int) -> "np.ndarray":
        """The statistic on each of the bootstrap's seeded resamples, kept: the FP32 side of a drop
        is the same for every candidate AccuracyAware compares with it."""
        import numpy as np

        if (resamples, seed) not in self.drawn:
            self.drawn[resamples, seed] = np.concatenate([self.of(idx) for idx in _draws(self.size, resamples, seed)])
        return self.drawn[resamples, seed]


def taken(rows: "np.ndarray", n: int) -> "np.ndarray":
    """How many times each of n samples is in each row of indices: [rows, n] float counts."""
    import numpy as np

    offsets = (np.arange(len(rows))[:, None] * n + rows).ravel()
    return np.bincount(offsets, minlength=len(rows) * n).reshape(len(rows), n).astype(np.float64)


def _draws(n: int, resamples: int, seed: int):
    """The bootstrap's resamples of n indices, in chunks of rows (the same draws for any statistic)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = max(1, min(resamples, _CHUNK // max(n, 1)))
    for start in range(0, resamples, rows):
        yield rng.integers(0, n, size=(min(rows, resamples - start), n))


def _bootstrap_means(values: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    import numpy as np

    return np.concatenate([values[idx].mean(axis=1) for idx in _draws(len(values), resamples, seed)])


def _ratios(pairs: np.ndarray, idx: np.ndarray) -> np.ndarray:
    import numpy as np

    with np.errstate(divide="ignore", invalid="ignore"):  # a resample with no denominator: NaN, left out
        return pairs[:, 0][idx].sum(axis=1) / pairs[:, 1][idx].sum(axis=1)


def statistic(scores: np.ndarray) -> float:
    """What per-sample scores add up to: their mean, or for (numerator, denominator) pairs the
    ratio of sums (a corpus error rate, 2TP / (2TP + FP + FN))."""
    import numpy as np

    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim == 2:
        total = scores[:, 1].sum()
        return float(scores[:, 0].sum() / total) if total else float("nan")
    return float(scores.mean()) if scores.size else float("nan")


def _bounds(draws: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central `confidence` interval of the draws; a resample with no statistic (NaN) is left out."""
    import numpy as np

    draws = draws[~np.isnan(draws)]
    if not draws.size:
        return float("nan"), float("nan")
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return float(low), float(high)


def per_sample_drops(fp32: np.ndarray | None, int8: np.ndarray | None, higher_is_better: bool = True):
    """How much worse INT8 does on each sample (a pair's share: numerator / denominator, 0 without
    one); None without per-sample scores."""
    import numpy as np

    if fp32 is None or int8 is None or isinstance(fp32, Resampled) or isinstance(int8, Resampled):
        return None

    def values(scores: np.ndarray) -> np.ndarray:
        if scores.ndim == 1:
            return scores
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(scores[:, 1] != 0, scores[:, 0] / scores[:, 1], 0.0)

    diff = values(np.asarray(fp32, dtype=np.float64)) - values(np.asarray(int8, dtype=np.float64))
    return diff if higher_is_better else -diff


def paired_drop_ci(fp32: np.ndarray, int8: np.ndarray, higher_is_better: bool = True,
                   confidence: float = CONFIDENCE, resamples: int = RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """Two-sided interval of the drop (positive: INT8 worse) over paired per-sample scores: a score
    per sample (the drop of the mean), a (numerator, denominator) pair per sample, shape (n, 2)
    (the drop of the ratio of sums, recomputed for both models on each same resample), or Resampled
    (the metric recomputed for both models on each same resample)."""
    import numpy as np

    sign = 1.0 if higher_is_better else -1.0
    if isinstance(fp32, Resampled) or isinstance(int8, Resampled):
        if not (isinstance(fp32, Resampled) and isinstance(int8, Resampled) and len(fp32) == len(int8) > 0):
            raise ValueError("paired resampled statistics must both be resampled, over the same samples")
        return _bounds(sign * (fp32.on_draws(resamples, seed) - int8.on_draws(resamples, seed)), confidence)
    fp32, int8 = np.asarray(fp32, dtype=np.float64), np.asarray(int8, dtype=np.float64)
    if fp32.shape != int8.shape or fp32.size == 0 or fp32.ndim > 2 or (fp32.ndim == 2 and fp32.shape[1] != 2):
        raise ValueError("paired scores must have the same, non-zero length (and be pairs, if not single scores)")
    if np.array_equal(fp32, int8):
        return 0.0, 0.0
    if fp32.ndim == 1:
        return _bounds(_bootstrap_means(sign * (fp32 - int8), resamples, seed), confidence)
    return _bounds(np.concatenate([sign * (_ratios(fp32, idx) - _ratios(int8, idx))
                                   for idx in _draws(len(fp32), resamples, seed)]), confidence)


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


def _loss_bound(lost: int, samples: int, confidence: float) -> float:
    """The one-sided bound of the drop of a model that loses `lost` of `samples` 0/1 scores and gains
    none: the `confidence` quantile of Binomial(samples, lost / samples) / samples, the distribution
    the bootstrap draws from (a shade above its interpolated percentile: these checks err towards
    warning)."""
    n, p = samples, lost / samples
    if p <= 0:
        return 0.0
    if n * p > 500 or p >= 1:  # the normal law is close here (and the pmf below would underflow)
        return p + NormalDist().inv_cdf(confidence) * math.sqrt(p * (1 - p) / n)
    pmf = math.exp(n * math.log1p(-p))
    cdf, q = pmf, 0
    while cdf < confidence and q < n:
        pmf *= (n - q) / (q + 1) * p / (1 - p)
        q += 1
        cdf += pmf
    return q / n


def losses_accepted(samples: int, max_drop: float, confidence: float = CONFIDENCE) -> int:
    """How many of `samples` a model may lose (gaining none) and still be shown within max_drop at
    `confidence`, the acceptance rule of AccuracyAware."""
    k = 0
    while k < samples and _loss_bound(k + 1, samples, confidence) <= max_drop + 1e-12:
        k += 1
    return k


def samples_with_room(max_drop: float, confidence: float = CONFIDENCE) -> int:
    """Samples at which a model losing half the budget is still shown within it (about 2 z^2 / max_drop,
    z the normal quantile at `confidence`). With fewer, an accepted model may change only a sample or
    two, and INT8's noise on a few fragile samples decides which layers go back to float."""
    if max_drop <= 0:
        return 0
    z = NormalDist().inv_cdf(confidence)
    n = max(1, math.floor(2 * z * z / max_drop))
    while _loss_bound(math.ceil(n * max_drop / 2), n, confidence) > max_drop + 1e-12:
        n += max(1, n // 1000)  # exact to the sample below a thousand, within 0.1 % above
    return n
