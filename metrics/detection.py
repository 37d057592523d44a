"""Detection: can the explanation pick out the images where the feature fires?

The scorer CLIP ranks the held-out scoring pool by cosine similarity to the explanation. Positives
are the images where the feature is active on at least one patch (activation > 0; a TopK SAE is
exactly sparse); negatives are as many inactive images, drawn at random (seeded per feature) by
per-image keys (`metrics.functional.keyed_choice`), so an image that changes side moves the sample
by the images at the cut, not wholesale.
Reported: AUROC of similarity for positive vs negative; balanced accuracy on one half of those
images at the threshold that maximises it on the other half; precision@k of retrieval over the
whole pool, k = min(detection_k, number of positives), so a perfect ranking scores 1.
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_curve

from benchmark.scoring.context import ScoringContext, metric
from metrics.functional import auroc, image_keys, keyed_choice


def detection(similarity_N: np.ndarray, active_N: np.ndarray, k: int, seed: int) -> tuple[float, float, float]:
    """(AUROC, held-out balanced accuracy, precision@k) of `similarity_N` for the boolean `active_N`."""
    positives = np.flatnonzero(active_N)
    inactive = np.flatnonzero(~active_N)
    if len(positives) == 0 or len(inactive) == 0:
        return float("nan"), float("nan"), float("nan")
    negatives = keyed_choice(inactive, min(len(positives), len(inactive)), seed)
    index = np.concatenate([positives, negatives])
    labels = np.concatenate([np.ones(len(positives), bool), np.zeros(len(negatives), bool)])
    area = auroc(similarity_N[index], labels)
    half = np.zeros(len(index), bool)
    for cls in (True, False):  # split each class in two, so both halves hold both classes
        members = np.flatnonzero(labels == cls)
        half[members[np.argsort(image_keys(index[members], seed + 1), kind="stable")[: len(members) // 2]]] = True
    accuracy = _held_out_balanced_accuracy(similarity_N[index], labels, half)
    return area, accuracy, precision_at_k(similarity_N, active_N, min(k, len(positives)))


def precision_at_k(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of positives among the k highest scores; ties at the cut count at their positive rate,
    so a constant score gets the base rate, not whatever order the ties happen to be in."""
    cut = np.sort(scores)[-k]
    above, tied = scores > cut, scores == cut
    return float((labels[above].sum() + (k - above.sum()) * labels[tied].mean()) / k)


def balanced_accuracy(scores: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    predicted = scores >= threshold
    return float((predicted[labels].mean() + (~predicted[~labels]).mean()) / 2)


def _held_out_balanced_accuracy(scores: np.ndarray, labels: np.ndarray, fit: np.ndarray) -> float:
    """Threshold chosen on `fit`, balanced accuracy measured on the rest; NaN if a half lacks a class."""
    test = ~fit
    if not (labels[fit].any() and (~labels[fit]).any() and labels[test].any() and (~labels[test]).any()):
        return float("nan")
    fpr, tpr, thresholds = roc_curve(labels[fit], scores[fit])
    best = thresholds[np.argmax(tpr - fpr)]  # balanced accuracy = (tpr + 1 - fpr) / 2
    return balanced_accuracy(scores[test], labels[test], best)


@metric("detection", columns=("detection_auroc", "detection_balanced_accuracy", "detection_precision_at_k"),
        min_images=4)  # both classes in both halves of the balanced-accuracy split
def score_detection(ctx: ScoringContext, features: list[int], texts: list[str]) -> dict[str, np.ndarray]:
    similarity_BN = (ctx.text_emb(texts) @ ctx.image_emb_ND.T).numpy()
    active_NB = (ctx.image_means(features) > 0).numpy()
    out = np.array([detection(similarity_BN[i], active_NB[:, i], ctx.config.detection_k, ctx.config.seed + f)
                    for i, f in enumerate(features)])
    return {"detection_auroc": out[:, 0], "detection_balanced_accuracy": out[:, 1],
            "detection_precision_at_k": out[:, 2]}
