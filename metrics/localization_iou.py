"""Localization IoU (the seed paper's segmentation IoU): does the explanation point at *where* the
feature fires?

On each of the feature's top `localization_images` scoring-pool images, the feature's binarised
activation map (patches with activation > 0) is compared with the source's segmenter's mask of what
the explanation names (`benchmark.sources.capabilities.Segmenter`: in the paper a text-grounded
segmenter, in the world its exact object masks). The score is the mean IoU over those images; an
explanation naming nothing has an empty mask and scores 0. A source without a segmenter is refused
before anything is computed.
"""
from __future__ import annotations

import numpy as np

from benchmark.scoring import ScoringContext, metric
from metrics.functional import iou


def localization_iou(active_IP: np.ndarray, named_IP: np.ndarray) -> float:
    """Mean over images of IoU(active patches, named patches); images where both are empty are skipped."""
    values = [iou(a, n) for a, n in zip(active_IP, named_IP)]
    values = [v for v in values if not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


@metric("localization-iou", columns=("localization_iou",), needs=("segmenter",),
        records=lambda config: config.localization_images)
def score_localization(ctx: ScoringContext, features: list[int], texts: list[str]) -> dict[str, np.ndarray]:
    acts_NPB = ctx.acts_NPB(features)
    k = min(ctx.config.localization_images, acts_NPB.shape[0])
    out = np.full(len(features), np.nan)
    for i, text in enumerate(texts):
        top = acts_NPB[:, :, i].mean(1).topk(k).indices.numpy()
        out[i] = localization_iou((acts_NPB[top, :, i] > 0).numpy(), ctx.segment(text, top))
    return {"localization_iou": out}
