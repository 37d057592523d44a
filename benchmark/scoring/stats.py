"""Statistics over per-feature scores: bootstrap confidence intervals of a mean, one-sided
Mann–Whitney U tests between methods (the paper's), one-sided Wilcoxon signed-rank tests on the
per-feature differences (the same features under both methods: a paired test), and Holm's
correction across a table's comparisons (scipy), seeded so that tables regenerate byte for byte."""
from __future__ import annotations

import numpy as np
from scipy import stats

RESAMPLES = 1000
SEED = 0
ALPHA = 0.05


def mean_ci(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the mean of the non-NaN values with a percentile-bootstrap interval over
    features; the interval is NaN with fewer than two values."""
    values = np.asarray(values, np.float64)
    values = values[~np.isnan(values)]
    m = float(values.mean()) if len(values) else float("nan")
    if len(values) < 2:
        return m, float("nan"), float("nan")
    if np.ptp(values) == 0:  # every resample has the same mean
        return m, m, m
    result = stats.bootstrap((values,), np.mean, n_resamples=RESAMPLES, confidence_level=confidence,
                             method="percentile", rng=np.random.default_rng(SEED))
    return m, float(result.confidence_interval.low), float(result.confidence_interval.high)


def greater(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(U, p) of the one-sided Mann–Whitney U test that `a` tends to exceed `b` (NaNs dropped);
    NaN when either side is empty."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if len(a) == 0 or len(b) == 0:
        return float("nan"), float("nan")
    result = stats.mannwhitneyu(a, b, alternative="greater")
    return float(result.statistic), float(result.pvalue)


def paired_greater(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(W, p) of the one-sided Wilcoxon signed-rank test that `a - b` tends to be positive, over the
    positions where both are finite (feature f of one method against feature f of the other); zero
    differences are dropped (scipy's `wilcox`). NaN when no difference is left."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    both = np.isfinite(a) & np.isfinite(b)
    differences = a[both] - b[both]
    if not differences.any():
        return float("nan"), float("nan")
    result = stats.wilcoxon(differences, alternative="greater")
    return float(result.statistic), float(result.pvalue)


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values of one family of tests (NaN stays NaN and is not counted)."""
    p = np.asarray(p_values, np.float64)
    out = np.full_like(p, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m = len(order)
    out[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return out


def pooled_ci(samples: list, statistic, confidence: float = 0.95) -> tuple[float, float, float]:
    """(value, low, high): `statistic` of every feature's samples pooled (the seed paper's one AUROC
    over all latents), with a percentile-bootstrap interval over features (features resampled with
    replacement, each bringing all its samples); NaN without samples, the interval NaN with one feature."""
    if not samples:
        return float("nan"), float("nan"), float("nan")
    value = float(statistic(samples))
    if len(samples) < 2:
        return value, float("nan"), float("nan")
    rng = np.random.default_rng(SEED)
    draws = [statistic([samples[i] for i in rng.integers(0, len(samples), len(samples))]) for _ in range(RESAMPLES)]
    low, high = np.nanpercentile(draws, [50 * (1 - confidence), 100 - 50 * (1 - confidence)])
    return value, float(low), float(high)


def paired_difference(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """(mean, low, high) of `a - b` over the positions where both are finite (the same features under
    both methods), with `mean_ci`'s bootstrap interval: the difference a verdict rests on, and how far
    resampling the features moves it."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    both = np.isfinite(a) & np.isfinite(b)
    return mean_ci(a[both] - b[both])


def reseed_spread(differences_SP: np.ndarray) -> float:
    """The typical spread of a method pair's difference across world seeds: per pair (column), the range
    (max - min) of its difference of means over the seeds (rows) where it is known, then the median over
    the pairs known on at least two seeds. Range, because with three seeds it is the whole observed
    disagreement; median over pairs, because one pair's large swing (a control whose mean moves with the
    world) should not silence every other comparison. NaN when no pair is known on two seeds."""
    d = np.asarray(differences_SP, np.float64).reshape(len(differences_SP), -1)
    known = np.isfinite(d).sum(axis=0) >= 2
    if not known.any():
        return float("nan")
    d = d[:, known]
    return float(np.median(np.nanmax(d, axis=0) - np.nanmin(d, axis=0)))


def min_reliable_difference(spread: float, half_widths: np.ndarray) -> float:
    """The smallest difference of method means that exceeds both the reseed spread and the bootstrap
    CI of a difference (the median half-width over the method pairs): below it a difference can come
    from the world's seed or from the features sampled alone. Without seeds (`spread` NaN) it is the CI
    part alone; NaN when neither is known."""
    half = np.asarray(half_widths, np.float64)
    parts = [spread, float(np.median(half[np.isfinite(half)])) if np.isfinite(half).any() else float("nan")]
    return float(np.nanmax(parts)) if np.isfinite(parts).any() else float("nan")
