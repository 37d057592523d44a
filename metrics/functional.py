"""Statistics every metric builds on, guarded so that a degenerate input gives a defined answer
(AUROC 0.5 for a constant score, NaN for an undefined correlation) instead of a warning or a crash."""
from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn.metrics import roc_auc_score


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of `scores` for the boolean `labels`; NaN if a class is empty.
    Ties count one half, so a constant score gives exactly 0.5."""
    labels = np.asarray(labels, bool)
    if labels.all() or not labels.any():
        return float("nan")
    return float(roc_auc_score(labels, np.asarray(scores, np.float64)))


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson r; NaN when either side is constant or has fewer than 2 values."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(stats.pearsonr(x, y).statistic)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rho; NaN when either side is constant or has fewer than 2 values."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(stats.spearmanr(x, y).statistic)


def affine_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares (slope, intercept) of y on x; slope 0 when x is constant."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if np.ptp(x) == 0:
        return 0.0, float(y.mean())
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(intercept)


def keyed_choice(eligible_I: np.ndarray, n: int, seed: int) -> np.ndarray:
    """The `n` of the pool indices `eligible_I` whose keys (`image_keys`) are lowest, lowest first.

    A random draw that one changed label cannot redraw: an image's key depends on its index and the
    seed alone, so an image that joins or leaves `eligible_I` changes at most the images at the cut,
    where `rng.choice` over the new set would have drawn a different sample altogether."""
    eligible_I = np.asarray(eligible_I)
    order = np.argsort(image_keys(eligible_I, seed), kind="stable")
    return eligible_I[order[:n]]


def image_keys(index_I: np.ndarray, seed: int) -> np.ndarray:
    """(I,) uint64 pseudo-random keys of pool indices under `seed`: splitmix64 of the seed's own
    splitmix64 plus the index (a bijection of 64-bit integers with good mixing)."""
    with np.errstate(over="ignore"):
        base = _splitmix64(np.array([seed], np.uint64))
        return _splitmix64(base + np.asarray(index_I).astype(np.uint64))


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks; NaN when both are empty."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else float("nan")
