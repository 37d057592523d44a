"""Simulation: can the explanation predict how strongly the feature fires?

Predicted activation = the scorer CLIP's cosine similarity of the explanation and an image. Records
are the feature's top `simulation_records` scoring-pool images by mean activation over patches and
as many random images from the rest (1:1, as OpenAI's automated-interpretability). Records alternate
between two halves: the prediction is affine-calibrated on the first (least squares) and compared
with the true activation on the second. `simulation_r` is Pearson r over the held-out records all
concatenated (OpenAI's ev_correlation: one correlation, not a mean of per-record ones);
`simulation_spearman` the rank correlation. The calibration's slope is held at zero or above: a
similarity that falls as the feature rises predicts nothing about it, so it is replaced by the
mean activation and scores 0 (an unconstrained fit would flip its sign and reward it).

`simulation_patch_r` is the same at patch level: each patch's projected CLIP token against the
text (`Scorer.encode_patches`) predicts that patch's activation, over every patch of the records.
The scorer's patch grid is resampled onto the tower's by area (`benchmark.activations.grids`), so the two may
differ (16 x 16 for ViT-L/14 against 24 x 24 for LLaVA's CLIP-L/336).
"""
from __future__ import annotations

import numpy as np

from benchmark.scoring.context import ScoringContext, metric
from metrics.functional import affine_fit, keyed_choice, pearson, spearman


def calibrated_correlation(predicted: np.ndarray, actual: np.ndarray, fit: np.ndarray) -> tuple[float, float]:
    """(Pearson r, Spearman rho) on the records outside `fit` of the prediction affinely calibrated on
    the records in `fit` (slope >= 0). A constant prediction gives NaN; one whose fitted slope is not
    positive gives 0 (the calibrated prediction is the constant mean, which explains nothing)."""
    predicted, actual = np.asarray(predicted, np.float64), np.asarray(actual, np.float64)
    if len(predicted) == 0 or np.ptp(predicted) == 0:
        return float("nan"), float("nan")
    slope, intercept = affine_fit(predicted[fit], actual[fit])
    if slope <= 0:
        return 0.0, 0.0
    calibrated = slope * predicted[~fit] + intercept
    return pearson(calibrated, actual[~fit]), spearman(calibrated, actual[~fit])


def simulation_records(mean_N: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of the `n` top images by activation and `n` random others (drawn by per-image keys,
    `keyed_choice`), interleaved (top, random, ...); a pool of fewer than 2n images gives half of it
    to each side."""
    n = min(n, len(mean_N) // 2)
    order = np.argsort(-mean_N, kind="stable")
    top, rest = order[:n], order[n:]
    random = keyed_choice(rest, min(n, len(rest)), seed)
    m = min(len(top), len(random))
    return np.stack([top[:m], random[:m]], 1).reshape(-1)


@metric("simulation", columns=("simulation_r", "simulation_spearman", "simulation_patch_r"),
        min_images=8,  # two (top, random) pairs in each half: a correlation of at least two records
        records=lambda config: 2 * config.simulation_records)
def score_simulation(ctx: ScoringContext, features: list[int], texts: list[str]) -> dict[str, np.ndarray]:
    text_BD = ctx.text_emb(texts)
    mean_NB = ctx.image_means(features).numpy()
    out = np.full((len(features), 3), np.nan)
    for i, f in enumerate(features):
        records = simulation_records(mean_NB[:, i], ctx.config.simulation_records, ctx.config.seed + f)
        fit = np.arange(len(records)) % 4 < 2  # each (top, random) pair stays in one half
        acts_RP = ctx.patch_acts(f, records).numpy()
        similarity = (ctx.image_emb_ND[records] @ text_BD[i]).numpy()
        out[i, :2] = calibrated_correlation(similarity, acts_RP.mean(1), fit)
        patch_similarity_RP = ctx.patch_similarity(text_BD[i], records).numpy()
        patch_fit = np.repeat(fit[:, None], patch_similarity_RP.shape[1], 1).reshape(-1)
        out[i, 2] = calibrated_correlation(patch_similarity_RP.reshape(-1), acts_RP.reshape(-1), patch_fit)[0]
    return {"simulation_r": out[:, 0], "simulation_spearman": out[:, 1], "simulation_patch_r": out[:, 2]}
